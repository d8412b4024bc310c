// Who owns a local store's temporary files. Every store a process opens writes its puts' temporary
// files into a directory of its own, named after the process (boot, pid, start time), so a start
// can tell what a dead process left (removed at once, however fresh) from what a live one is
// still writing (the server and the admin CLI may open the same root at the same time).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const OWNER_DIR = /^([0-9a-f]{8})-(\d+)-(\d+|x)-[0-9a-f]{8}$/;

/** The boot this is (Linux), so a pid and start time from an earlier boot are never taken as live. */
function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/-/g, '').slice(0, 8);
  } catch {
    return '00000000';
  }
}

/** A process's start time in clock ticks since boot (Linux), which tells it from a later one with its pid. */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** A fresh name for the temporary directory of a store this process opens. */
export function ownTempDirName(): string {
  return `${bootId()}-${process.pid}-${startTicks(process.pid) ?? 'x'}-${randomBytes(4).toString('hex')}`;
}

/**
 * Whether the process that named the temp directory entry `name` (ownTempDirName) still runs;
 * undefined for an entry no store named so. A process that cannot be asked (another user's
 * under a hidden /proc) counts as alive.
 */
export function ownerState(name: string): 'alive' | 'dead' | undefined {
  const m = OWNER_DIR.exec(name);
  if (!m) return undefined;
  const [, boot, pidText, ticks] = m as unknown as [string, string, string, string];
  if (boot !== bootId()) return 'dead';
  const pid = Number(pidText);
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 'dead';
  }
  const now = startTicks(pid);
  // The pid now belongs to a process started after the owner: the owner is gone.
  return ticks === 'x' || now === undefined || now === ticks ? 'alive' : 'dead';
}
