// The on-disk push queue and its lock, on a real file system, with real queue-push processes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  appendToQueue,
  listEntries,
  moveToFailed,
  readEntry,
  removeEntries,
  removeStaleTemps,
} from '../../../src/push/push-queue.js';
import { lockQueue } from '../../../src/push/queue-lock.js';
import { CLI_PATH, runCli } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

const path = (i: number, name = 'p') => `/nix/store/${String(i).padStart(32, '0')}-${name}`;

test('16 queue-push processes at once leave 16 whole entries, oldest first, each path once, no temp', async (t) => {
  const queue = join(await makeTempDir(t, 'narhub-queue-'), 'queue');
  const runs = await Promise.all(
    Array.from({ length: 16 }, (_, i) => runCli(['queue-push', '--queue', queue, path(i), path(i, 'q'), path(i)])),
  );
  for (const r of runs) {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^queued 2 paths in /, 'the path given twice counts once');
  }
  const names = await listEntries(queue);
  assert.equal(names.length, 16);
  assert.deepEqual(names, [...names].sort());
  const entries = await Promise.all(names.map((n) => readEntry(queue, n)));
  const got = entries.map((e) => e!.entry.paths).sort((a, b) => a[0]!.localeCompare(b[0]!));
  const want = Array.from({ length: 16 }, (_, i) => [path(i), path(i, 'q')]).sort((a, b) => a[0]!.localeCompare(b[0]!));
  assert.deepEqual(got, want);
  assert.deepEqual(
    (await readdir(queue)).filter((n) => !n.endsWith('.paths')),
    [],
    'nothing but entries in the queue',
  );
});

test("queue-push under umask 077 (a root hook) writes entries 0644, readable by another user's daemon", async (t) => {
  const queue = join(await makeTempDir(t, 'narhub-queue-umask-'), 'queue');
  const res = spawnSync(
    'sh',
    ['-c', `umask 077; exec "$0" "$1" queue-push --queue "$2" "$3"`, process.execPath, CLI_PATH, queue, path(1)],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(res.status, 0, res.stderr);
  const [name] = await listEntries(queue);
  assert.equal((await stat(join(queue, name!))).mode & 0o777, 0o644);
});

test('queue entries: comments skipped, bad lines reported; temp files go in an hour; failed/ keeps why', async (t) => {
  const queue = join(await makeTempDir(t, 'narhub-queue-'), 'queue');
  const name = appendToQueue(queue, [path(1), path(2)]);
  assert.throws(() => appendToQueue(queue, [path(3), 'not/a/store/path']), /invalid store path/);
  assert.deepEqual(await listEntries(queue), [name], 'a refused append writes nothing');

  await writeFile(join(queue, name), `# by hand\n${path(1)}\n\nnot-a-path\n${path(2)}\n${path(1)}\n`);
  assert.deepEqual(await readEntry(queue, name), { entry: { name, paths: [path(1), path(2)] }, bad: ['not-a-path'] });
  assert.equal(await readEntry(queue, 'gone.paths'), undefined);

  // What a queue-push that died mid-write leaves behind.
  const temp = join(queue, '.000000000000001-1-00000000.paths.tmp');
  await writeFile(temp, `${path(9)}\n/nix/st`);
  assert.deepEqual(await listEntries(queue), [name]);
  assert.equal(await removeStaleTemps(queue), 0, 'a fresh one may still be written');
  const old = new Date(Date.now() - 2 * 3_600_000);
  await utimes(temp, old, old);
  assert.equal(await removeStaleTemps(queue), 1);
  assert.ok(!(await readdir(queue)).some((n) => n.endsWith('.tmp')));

  const second = appendToQueue(queue, [path(4)]);
  const moved = await moveToFailed(queue, name, [`${path(1)}: HTTP 413 BODY_TOO_LARGE: too big`]);
  assert.equal(moved, join(queue, 'failed', name));
  assert.match(await readFile(moved, 'utf8'), new RegExp(path(2)));
  assert.equal(await readFile(`${moved}.why`, 'utf8'), `${path(1)}: HTTP 413 BODY_TOO_LARGE: too big\n`);
  assert.deepEqual(await listEntries(queue), [second]);
  await removeEntries(queue, [second]);
  assert.deepEqual(await listEntries(queue), []);
});

test('the queue lock refuses a second daemon while the first lives, and is taken over once it died', async (t) => {
  const queue = await makeTempDir(t, 'narhub-queue-lock-');
  // A process whose command line says push-daemon, as a running daemon's does.
  const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'push-daemon'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  await writeFile(join(queue, 'daemon.pid'), `${other.pid}\n`);
  assert.throws(() => lockQueue(queue), new RegExp(`already drained by process ${other.pid}`));

  other.kill('SIGKILL');
  await new Promise((resolve) => other.once('exit', resolve));
  const release = lockQueue(queue);
  assert.equal((await readFile(join(queue, 'daemon.pid'), 'utf8')).trim(), String(process.pid));
  release();
  assert.deepEqual(await readdir(queue), []);

  // A live process that is no narhub daemon (a reused pid) does not hold the lock either.
  await writeFile(join(queue, 'daemon.pid'), '1\n');
  lockQueue(queue)();
});

test('8 daemons locking one queue at once: exactly one gets it, the others are refused naming it', async (t) => {
  const queue = await makeTempDir(t, 'narhub-queue-race-');
  const lockModule = new URL('../../../src/push/queue-lock.js', import.meta.url).href;
  const at = Date.now() + 1500;
  // Each waits for the same instant, locks, and holds the lock until told to stop; its command
  // line ends in push-daemon, as a running daemon's does.
  const script = `
    const { lockQueue } = await import(${JSON.stringify(lockModule)});
    while (Date.now() < ${at}) {}
    try { lockQueue(${JSON.stringify(queue)}); console.log('locked'); }
    catch (e) { console.log('refused: ' + e.message); }
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`;
  const children = Array.from({ length: 8 }, () =>
    spawn(process.execPath, ['--input-type=module', '-e', script, 'push-daemon'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  t.after(() => {
    for (const c of children) c.kill('SIGKILL');
  });
  const answers = await Promise.all(
    children.map(
      (c) =>
        new Promise<string>((resolve) => {
          let out = '';
          c.stdout!.setEncoding('utf8').on('data', (d: string) => {
            out += d;
            if (out.includes('\n')) resolve(out.trim());
          });
        }),
    ),
  );
  const holder = children[answers.indexOf('locked')];
  assert.equal(answers.filter((a) => a === 'locked').length, 1, answers.join('\n'));
  for (const a of answers.filter((x) => x !== 'locked'))
    assert.equal(a, `refused: the push queue ${queue} is already drained by process ${holder!.pid}`);
  assert.equal((await readFile(join(queue, 'daemon.pid'), 'utf8')).trim(), String(holder!.pid));
  for (const c of children) c.stdin!.end();
});
