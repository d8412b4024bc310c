// `node dist/bench/auto-push.bench.js [--reps N] [--sizes 1000,100000,1000000]`: what the
// automatic push costs the machine it runs on (issue 13). Three measurements:
//   1. the post-build-hook: `nix-build` of a fresh one-line derivation with
//      `post-build-hook = narhub queue-push` against the same build without a hook, alternately
//      (Nix waits for the hook before it goes on), and `narhub queue-push` alone against a bare
//      `node -e ''`, Node's own start, alternately;
//   2. watch-store's look at Nix's database: `readNewPaths` (the 100 newest paths after a cursor)
//      on databases of Nix's schema holding N paths, to show it does not grow with the store;
//   3. how soon watch-store notices a path: from `nix store add-path` returning to the path
//      being queued, on the machine's real store (inotify on Nix's database directory).
// Never part of `npm test`. Prints a table and one JSON line.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Sqlite from 'better-sqlite3';
import { nixDatabasePath, readNewPaths } from '../src/push/nix-store-db.js';
import { startStoreWatcher } from '../src/push/store-watcher.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string' },
    sizes: { type: 'string' },
  },
});
const reps = Number(values.reps ?? 9);
const sizes = (values.sizes ?? '1000,100000,1000000').split(',').map(Number);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`))));
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function nixEnv(dir: string, hook?: string): Promise<NodeJS.ProcessEnv> {
  const conf = join(dir, hook ? 'conf-hook' : 'conf-plain');
  await mkdir(conf, { recursive: true });
  const lines = ['experimental-features = nix-command', 'sandbox = false', 'build-users-group =', 'substituters ='];
  if (hook) lines.push(`post-build-hook = ${hook}`);
  await writeFile(join(conf, 'nix.conf'), `${lines.join('\n')}\n`);
  return { ...process.env, NIX_CONF_DIR: conf, XDG_CACHE_HOME: join(dir, 'xdg') };
}

async function buildFresh(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const file = join(dir, `d-${randomBytes(6).toString('hex')}.nix`);
  await writeFile(
    file,
    `derivation { name = "auto-push-bench-${randomBytes(6).toString('hex')}"; system = builtins.currentSystem; ` +
      `builder = "/bin/sh"; args = [ "-c" "echo x > $out" ]; }`,
  );
  await run('nix-build', ['--no-out-link', file], env);
}

/** Measurement 1: medians of alternating runs, in ms. */
async function hookCost(dir: string) {
  const queue = join(dir, 'queue');
  const hook = join(dir, 'hook.sh');
  await writeFile(hook, `#!/bin/sh\nexec ${process.execPath} ${CLI} queue-push --queue ${queue}\n`, { mode: 0o755 });
  const withHook = await nixEnv(dir, hook);
  const plain = await nixEnv(dir);
  const path = `/nix/store/${'0'.repeat(32)}-bench`;
  const samples = {
    buildHook: [] as number[],
    buildPlain: [] as number[],
    queuePush: [] as number[],
    node: [] as number[],
  };
  // Warm-up of each.
  await buildFresh(dir, withHook);
  await buildFresh(dir, plain);
  for (let i = 0; i < reps; i++) {
    const order = i % 2 === 0 ? ['hook', 'plain'] : ['plain', 'hook'];
    for (const which of order) {
      if (which === 'hook') samples.buildHook.push(await timed(() => buildFresh(dir, withHook)));
      else samples.buildPlain.push(await timed(() => buildFresh(dir, plain)));
    }
    const pair = [
      async () =>
        samples.queuePush.push(await timed(() => run(process.execPath, [CLI, 'queue-push', '--queue', queue, path]))),
      async () => samples.node.push(await timed(() => run(process.execPath, ['-e', '']))),
    ];
    for (const f of i % 2 === 0 ? pair : pair.reverse()) await f();
  }
  return samples;
}

const SCHEMA = `CREATE TABLE ValidPaths (id integer primary key autoincrement not null, path text unique not null,
  hash text not null, registrationTime integer not null, deriver text, narSize integer, ultimate integer, sigs text,
  ca text);`;

/** Measurement 2: ms per readNewPaths of the 100 newest paths, by store size. */
async function databaseLook(dir: string) {
  const rows: { paths: number; medianMs: number; samples: number[] }[] = [];
  for (const n of sizes) {
    const file = join(dir, `db-${n}.sqlite`);
    const db = new Sqlite(file);
    db.pragma('journal_mode = wal');
    db.exec(SCHEMA);
    const insert = db.prepare(
      "INSERT INTO ValidPaths (path, hash, registrationTime, narSize) VALUES (?, 'sha256:x', 1, 1)",
    );
    db.transaction(() => {
      for (let i = 1; i <= n; i++) insert.run(`/nix/store/${String(i).padStart(32, '0')}-p`);
    })();
    db.close();
    readNewPaths(file, n - 100, 1000);
    const samples: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      const { paths } = readNewPaths(file, n - 100, 1000);
      samples.push(performance.now() - t0);
      if (paths.length !== 100) throw new Error(`expected 100 paths, got ${paths.length}`);
    }
    rows.push({ paths: n, medianMs: median(samples), samples });
    await rm(file, { force: true });
  }
  return rows;
}

/** Measurement 3: ms from `nix store add-path` returning to the path being queued. */
async function noticeLatency(dir: string) {
  const env = await nixEnv(dir);
  const queued = new Map<string, number>();
  const watcher = await startStoreWatcher({
    database: nixDatabasePath(),
    stateDir: join(dir, 'watch-state'),
    queueDir: join(dir, 'watch-queue'),
    intervalMs: 60_000,
    log: () => undefined,
    onQueued: (paths) => {
      for (const p of paths) queued.set(p, performance.now());
    },
  });
  const samples: number[] = [];
  try {
    for (let i = 0; i < reps; i++) {
      const content = join(dir, `content-${i}`);
      await mkdir(content);
      await writeFile(join(content, 'f'), randomBytes(16));
      const path = (await run('nix', ['store', 'add-path', content, '--name', `auto-push-bench-${i}`], env)).trim();
      const added = performance.now();
      while (!queued.has(path)) await new Promise((r) => setTimeout(r, 5));
      samples.push(queued.get(path)! - added);
    }
  } finally {
    watcher.close();
  }
  return samples;
}

const dir = await mkdtemp(join(tmpdir(), 'narhub-auto-push-bench-'));
try {
  await mkdir(join(dir, 'watch-state'));
  const hook = await hookCost(dir);
  const look = await databaseLook(dir);
  const notice = await noticeLatency(dir);
  const f = (x: number) => x.toFixed(1);
  console.log(
    `reps ${reps}, load average ${(await import('node:os'))
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  console.log(
    `1. nix-build with post-build-hook = queue-push: ${f(median(hook.buildHook))} ms; without a hook: ` +
      `${f(median(hook.buildPlain))} ms; difference ${f(median(hook.buildHook) - median(hook.buildPlain))} ms`,
  );
  console.log(
    `   queue-push alone: ${f(median(hook.queuePush))} ms; node -e '': ${f(median(hook.node))} ms; ratio ` +
      `${(median(hook.queuePush) / median(hook.node)).toFixed(2)}`,
  );
  for (const r of look)
    console.log(`2. readNewPaths (100 newest) in a store of ${r.paths} paths: ${r.medianMs.toFixed(2)} ms`);
  console.log(
    `3. add-path returned → queued by watch-store: median ${f(median(notice))} ms, max ${f(Math.max(...notice))} ms`,
  );
  console.log(JSON.stringify({ reps, hook, look, notice }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
