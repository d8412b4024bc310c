import { readdirSync, readFileSync } from 'node:fs';

/**
 * Kills a process and everything it started. Killing the process group is not enough for Nix:
 * the builder runs in a session (and process group) of its own, and once `nix-store` dies the
 * builder is re-parented to init and keeps running. So on Linux the tree is read from /proc
 * (parent links), frozen with SIGSTOP until no new process appears, then every member and its
 * process group gets SIGKILL. Elsewhere only the root's process group is killed.
 */
export function killProcessTree(rootPid: number): void {
  const members = new Map<number, ProcInfo>();
  if (process.platform === 'linux') {
    // Freeze top-down until stable, so nothing forks or re-parents between reading and killing.
    for (let round = 0; round < 10; round++) {
      const found = descendants(rootPid);
      let added = 0;
      for (const info of found) {
        if (members.has(info.pid)) continue;
        members.set(info.pid, info);
        signal(info.pid, 'SIGSTOP');
        added++;
      }
      if (added === 0) break;
    }
  }
  signal(-rootPid, 'SIGKILL');
  signal(rootPid, 'SIGKILL');
  for (const info of members.values()) {
    // Only a process that is still the one we froze (same start time): pids are reused.
    const now = readProc(info.pid);
    if (!now || now.start !== info.start) continue;
    if (now.pgid === info.pid) signal(-info.pid, 'SIGKILL');
    signal(info.pid, 'SIGKILL');
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** Start time in clock ticks since boot: with the pid, identifies the process. */
  start: string;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function readProc(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // `pid (comm) state ppid pgrp session …`; comm may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const pgid = Number(fields[2]);
  const start = fields[19] ?? '';
  if (!Number.isInteger(ppid) || !Number.isInteger(pgid)) return undefined;
  return { pid, ppid, pgid, start };
}

/** The root and all its living descendants, parents before children. */
function descendants(rootPid: number): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  let root: ProcInfo | undefined;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readProc(Number(entry));
    if (!info) continue;
    if (info.pid === rootPid) root = info;
    const list = children.get(info.ppid);
    if (list) list.push(info);
    else children.set(info.ppid, [info]);
  }
  const out: ProcInfo[] = root ? [root] : [];
  const queue = [rootPid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}
