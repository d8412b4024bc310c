/** Where a push reports what it does: a redrawn bar on a terminal, plain lines otherwise. */
export interface Progress {
  start(paths: number, bytes: number): void;
  bytes(n: number): void;
  pushed(path: string, stats: { narSize: number; fileSize: number; seconds: number; stored: boolean }): void;
  retrying(path: string, info: { attempt: number; of: number; delayMs: number; reason: string }): void;
  failed(path: string, reason: string): void;
  finish(): void;
}

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean | undefined;
  columns?: number | undefined;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

const rate = (bytes: number, seconds: number) => `${formatBytes(seconds > 0 ? bytes / seconds : bytes)}/s`;

/** One line per event: what CI logs and pipes want. */
export function lineProgress(out: ProgressStream): Progress {
  return {
    start: () => undefined,
    bytes: () => undefined,
    pushed(path, s) {
      const stored = s.stored ? `, ${formatBytes(s.fileSize)} stored` : ', already stored';
      out.write(
        `pushed ${path} (${formatBytes(s.narSize)}${stored}, ` +
          `${s.seconds.toFixed(1)} s, ${rate(s.narSize, s.seconds)})\n`,
      );
    },
    retrying(path, r) {
      out.write(
        `retrying ${path} in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt + 1} of ${r.of}): ${r.reason}\n`,
      );
    },
    failed(path, reason) {
      out.write(`failed ${path}: ${reason}\n`);
    },
    finish: () => undefined,
  };
}

/** A bar redrawn in place on stderr, with events printed above it. */
export function ttyProgress(out: ProgressStream, now: () => number = () => performance.now()): Progress {
  let totalPaths = 0;
  let totalBytes = 0;
  let donePaths = 0;
  let sentBytes = 0;
  let failures = 0;
  let started = now();
  let timer: NodeJS.Timeout | undefined;

  const draw = () => {
    const width = Math.max(10, Math.min(40, (out.columns ?? 80) - 60));
    const fraction = totalBytes > 0 ? Math.min(1, sentBytes / totalBytes) : totalPaths > 0 ? donePaths / totalPaths : 1;
    const filled = Math.round(fraction * width);
    const seconds = (now() - started) / 1000;
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const failed = failures > 0 ? `, ${failures} failed` : '';
    out.write(
      `\r\x1b[K${bar} ${donePaths}/${totalPaths} paths, ` +
        `${formatBytes(sentBytes)} of ${formatBytes(totalBytes)}, ${rate(sentBytes, seconds)}${failed}`,
    );
  };
  const above = (line: string) => {
    out.write(`\r\x1b[K${line}\n`);
    draw();
  };

  return {
    start(paths, bytes) {
      totalPaths = paths;
      totalBytes = bytes;
      started = now();
      draw();
      timer = setInterval(draw, 200);
      timer.unref();
    },
    bytes(n) {
      sentBytes += n;
    },
    pushed() {
      donePaths++;
      draw();
    },
    retrying(path, r) {
      above(
        `retrying ${path} in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt + 1} of ${r.of}): ${r.reason}`,
      );
    },
    failed(path, reason) {
      failures++;
      above(`failed ${path}: ${reason}`);
    },
    finish() {
      if (timer) clearInterval(timer);
      draw();
      out.write('\n');
    },
  };
}
