// The CLI loads what a command needs and nothing more: `narhub push` and the admin commands never
// load Fastify, the AWS SDK or BullMQ/ioredis, and `serve` loads the S3 store and the hub only
// when they are configured. Checked on the real CLI with a preload that logs every module loaded.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { buildClosure, createNixEnv } from '../../helpers/nix.js';
import { createToken, runCli, startServer } from '../../helpers/server.js';
import { makeTempDir, type Cleanup } from '../../helpers/tmp.js';

const HOOK = fileURLToPath(new URL('../../helpers/module-log.js', import.meta.url));
const HEAVY = ['@aws-sdk', 'fastify', 'bullmq', 'ioredis'] as const;

/** An environment that makes a narhub process log its modules, and a reader of that log. */
async function moduleLog(t: Cleanup, name: string) {
  const file = join(await makeTempDir(t, 'narhub-modules-'), name);
  return {
    env: { NODE_OPTIONS: `--import ${HOOK}`, NARHUB_MODULE_LOG: file },
    async loaded(): Promise<{ all: string[]; packages: Set<string> }> {
      const all = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
      const packages = new Set(
        all.flatMap((l) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(l)?.[1] ?? []).map((p) => p.split('/')[0]!),
      );
      return { all, packages };
    },
  };
}

test('narhub push --help and a real push load neither Fastify, the AWS SDK nor BullMQ/ioredis', async (t) => {
  const help = await moduleLog(t, 'help');
  const res = await runCli(['push', '--help'], { env: help.env });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /^usage: narhub push CACHE_URL PATH…/m);
  const helpLoaded = await help.loaded();
  assert.ok(
    helpLoaded.all.some((l) => l.endsWith('/src/cli/usage.js')),
    'the log works: it has the CLI modules',
  );
  for (const p of [...HEAVY, '@sinclair']) assert.ok(!helpLoaded.packages.has(p), `push --help loaded ${p}`);

  // The server (local storage, no hub) logs its modules too.
  const served = await moduleLog(t, 'serve');
  const server = await startServer(t, { env: served.env });
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t);
  const closure = await buildClosure(nix, 'lazy');
  const pushed = await moduleLog(t, 'push');
  const run = await runCli(['push', `${server.url}/main`, closure.top, '--token', token], {
    env: { ...nix.env, ...pushed.env },
    timeoutMs: 120_000,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /pushed 3 paths/);
  const pushLoaded = await pushed.loaded();
  assert.ok(
    pushLoaded.all.some((l) => l.endsWith('/src/push/api-client.js')),
    'the log has the push client',
  );
  for (const p of HEAVY) assert.ok(!pushLoaded.packages.has(p), `push loaded ${p}`);

  await server.stop();
  const serveLoaded = await served.loaded();
  assert.ok(serveLoaded.packages.has('fastify'), 'serve loads Fastify (and the log shows packages)');
  for (const p of ['@aws-sdk', 'bullmq', 'ioredis'])
    assert.ok(!serveLoaded.packages.has(p), `serve with local storage and no hub loaded ${p}`);
});

test('token and cache commands load neither Fastify, the AWS SDK nor BullMQ/ioredis', async (t) => {
  const dataDir = await makeTempDir(t);
  for (const args of [
    ['cache', 'create', 'lazy'],
    ['token', 'create', '--cache', 'lazy', '--perm', 'read'],
    ['token', 'list'],
  ]) {
    const log = await moduleLog(t, args.join('-'));
    const res = await runCli(args, { dataDir, env: log.env });
    assert.equal(res.code, 0, `${args.join(' ')}: ${res.stderr}`);
    const { all, packages } = await log.loaded();
    assert.ok(
      all.some((l) => l.endsWith('/src/cli/runtime.js')),
      `${args.join(' ')}: the log has the runtime`,
    );
    assert.ok(packages.has('better-sqlite3'), `${args.join(' ')}: the log shows the packages it needs`);
    for (const p of HEAVY) assert.ok(!packages.has(p), `${args.join(' ')} loaded ${p}`);
  }
});

test('queue-push, the post-build-hook, loads no HTTP client and no package: it cannot upload', async (t) => {
  const log = await moduleLog(t, 'queue-push');
  const queue = join(await makeTempDir(t, 'narhub-queue-'), 'queue');
  const res = await runCli(['queue-push', '--queue', queue, '/nix/store/00000000000000000000000000000000-x'], {
    env: log.env,
  });
  assert.equal(res.code, 0, res.stderr);
  const { all, packages } = await log.loaded();
  assert.ok(
    all.some((l) => l.endsWith('/src/cli/commands/queue-push.js')),
    'the log has the command',
  );
  for (const module of ['/src/push/api-client.js', '/src/push/push.js', 'node:http', 'node:https'])
    assert.ok(!all.some((l) => l.endsWith(module)), `queue-push loaded ${module}`);
  assert.deepEqual([...packages], [], 'queue-push loads no package');
});
