// Waiting for `narhub serve` to say where it listens: shared by the tests' and the benchmarks'
// server starters.
import type { ChildProcess } from 'node:child_process';

export interface ListeningOptions {
  timeoutMs: number;
  /** Hears every stdout chunk, before and after the `listening` record. */
  onOutput?: (chunk: string) => void;
  /** The error to reject with, given why (`exited …`, `printed no "listening" line …`). */
  failure: (why: string) => Error;
}

/**
 * The URL from the server's `{"msg":"listening","url":…}` log record on stdout (trailing
 * slashes trimmed). Rejects if the process cannot be spawned, exits first, or says nothing
 * within `timeoutMs`. Keeps reading stdout afterwards (for `onOutput`).
 */
export function listeningUrl(child: ChildProcess, opts: ListeningOptions): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let buffered = '';
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(opts.failure(why));
    };
    const timer = setTimeout(() => fail(`printed no "listening" line within ${opts.timeoutMs} ms`), opts.timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      opts.onOutput?.(d);
      if (settled) return;
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        let rec: { msg?: unknown; url?: unknown };
        try {
          rec = JSON.parse(line) as { msg?: unknown; url?: unknown };
        } catch {
          continue; // not a log record
        }
        if (rec.msg === 'listening' && typeof rec.url === 'string') {
          settled = true;
          clearTimeout(timer);
          resolve(rec.url.replace(/\/+$/, ''));
          return;
        }
      }
    });
    child.once('error', (e) => fail(`could not be spawned: ${e.message}`));
    child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal}) before listening`));
  });
}
