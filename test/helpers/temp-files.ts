// The temporary files of a local blob store: every file under its `.tmp~`, whichever process's
// put made it (each store writes into a directory of its own there).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The store's temporary directory, under its root; `~` keeps it out of the key alphabet. */
export const TEMP_DIR = '.tmp~';

/** Every file under `<storeRoot>/.tmp~` (paths relative to it), with its size; none if it is absent. */
export function tempFiles(storeRoot: string): { path: string; size: number }[] {
  const top = join(storeRoot, TEMP_DIR);
  const out: { path: string; size: number }[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push({ path: relative(top, path), size: statSync(path).size });
    }
  };
  if (existsSync(top)) walk(top);
  return out;
}
