import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * Makes this process the only one draining `dir`: two daemons on one queue would upload every
 * path twice. The lock is a pid file; a daemon killed with SIGKILL leaves one behind, which the
 * next start takes over once that pid is no longer a narhub daemon. Returns the release function.
 */
export function lockQueue(dir: string): () => void {
  const file = join(dir, LOCK_FILE);
  let holder: number | undefined;
  try {
    holder = Number(readFileSync(file, 'utf8').trim());
  } catch {
    // no lock yet
  }
  if (holder !== undefined && liveDaemon(holder))
    throw new NarhubError('UNAVAILABLE', `the push queue ${dir} is already drained by process ${holder}`);
  const temp = join(dir, `.${LOCK_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, `${process.pid}\n`, { mode: 0o644 });
  renameSync(temp, file);
  return () => {
    try {
      if (Number(readFileSync(file, 'utf8').trim()) === process.pid) rmSync(file, { force: true });
    } catch {
      // already gone
    }
  };
}
