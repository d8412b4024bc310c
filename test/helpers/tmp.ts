// Temporary directories that are removed when the test that made them ends.
import { chmod, mkdtemp, readdir, rm, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** The part of a test context the helpers need: somewhere to register cleanup. */
export type Cleanup = Pick<TestContext, 'after'>;

/** Set NARHUB_KEEP_TMP=1 to keep temp dirs for post-mortem debugging. */
const keep = process.env.NARHUB_KEEP_TMP === '1';

/**
 * Creates a fresh directory under the OS temp dir and removes it (recursively) in `t.after`.
 * Nix makes store paths in chroot stores read-only, so removal first restores write permission
 * on directories if a plain rm fails.
 */
export async function makeTempDir(t: Cleanup, prefix = 'narhub-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => {
    if (keep) return;
    await removeTree(dir);
  });
  return dir;
}

export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    await makeWritable(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  await chmod(path, 0o755).catch(() => undefined);
  for (const entry of await readdir(path).catch(() => [] as string[])) {
    await makeWritable(join(path, entry));
  }
}
