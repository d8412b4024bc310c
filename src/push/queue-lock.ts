import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NarhubError } from '../errors.js';

const LOCK_FILE = 'daemon.pid';

/** True when `pid` is a live process whose command line is a narhub daemon's. */
function liveDaemon(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, but someone else's; the command line below decides.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /\0(push-daemon|watch-store)(\0|$)/.test(cmdline);
  } catch {
    // No /proc (or it went away meanwhile): trust the signal check.
    return true;
  }
}

function lockHolder(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/**
 * Makes this process the only one draining `dir`: two daemons on one queue would upload every
 * path twice. The lock is a pid file, created with link(), which fails when it exists, so of
 * daemons starting at the same moment one wins. A daemon killed with SIGKILL leaves its file
 * behind; the next start removes it once that pid is no longer a narhub daemon (unless it changed
 * meanwhile) and tries again. Returns the release function.
 */
export function lockQueue(dir: string): () => void {
  const file = join(dir, LOCK_FILE);
  const temp = join(dir, `.${LOCK_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, `${process.pid}\n`, { mode: 0o644 });
  try {
    for (;;) {
      try {
        linkSync(temp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = lockHolder(file);
      if (holder !== undefined && liveDaemon(holder))
        throw new NarhubError('UNAVAILABLE', `the push queue ${dir} is already drained by process ${holder}`);
      if (lockHolder(file) === holder) rmSync(file, { force: true });
    }
  } finally {
    rmSync(temp, { force: true });
  }
  return () => {
    if (lockHolder(file) === process.pid) rmSync(file, { force: true });
  };
}
