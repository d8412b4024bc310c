// Temporary files of uploads (issue 18, bug 8): what a killed process left is removed at the next
// start, however fresh, and what a live process is writing is never touched. Real processes:
// a put held open in a child, killed with SIGKILL or let finish.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { repoRoot } from '../../helpers/repo.js';
import { tempFiles } from '../../helpers/temp-files.js';
import { makeTempDir } from '../../helpers/tmp.js';

/** A child process with a 4 MiB put under way on the store at `root`. */
async function holdPut(root: string): Promise<ChildProcessWithoutNullStreams> {
  const storeModule = join(repoRoot(), 'dist/src/storage/local-blob-store.js');
  const child = spawn(process.execPath, [join(repoRoot(), 'test/fixtures/storage/hold-put.mjs'), storeModule, root]);
  const lines = createInterface({ input: child.stdout });
  const [line] = (await once(lines, 'line')) as [string];
  assert.equal(line, 'writing');
  return child;
}

test('the temporary file of a put killed mid-way is removed at the next start, however fresh', async (t) => {
  const root = await makeTempDir(t);
  const child = await holdPut(root);
  const left = tempFiles(root);
  assert.ok(
    left.some((f) => f.size >= 1024 * 1024),
    'the put is writing its temporary file',
  );
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.deepEqual(tempFiles(root), left, 'the kill left it behind');

  const store = createLocalBlobStore({ root });
  t.after(() => store.close());
  assert.deepEqual(tempFiles(root), [], 'nothing of the dead put is left');
  assert.equal(await store.get('main/held'), null);
});

test("a start spares the temporary file of another live process's put, which then completes", async (t) => {
  const root = await makeTempDir(t);
  const child = await holdPut(root);
  t.after(() => child.kill('SIGKILL'));
  const before = tempFiles(root);

  const store = createLocalBlobStore({ root });
  t.after(() => store.close());
  assert.deepEqual(tempFiles(root), before);

  child.stdin.end('go on\n');
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 0);
  const held = await readFile(join(root, 'main/held'));
  assert.equal(held.length, 4 * 1024 * 1024 + 3);
  assert.deepEqual(tempFiles(root), [], 'a closed store leaves nothing behind');
});
