// The hub's fan-outs are bounded: an evaluation whose `.drv` closure is several times larger than
// the server's file descriptor limit runs to the end under that limit. (The hub once read every
// `.drv` of a closure's frontier at once: EMFILE at 30,000 derivations under no limit at all.)
// Real redis-server, real Nix, real `narhub serve` started under `ulimit -n`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { hubApi, waitFor } from '../helpers/hub.js';
import { layeredFlakeNix, layeredGraphNix } from '../helpers/layered-graph.js';
import { createNixEnv } from '../helpers/nix.js';
import { startRedis } from '../helpers/redis.js';
import { runCliOk, startServer } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';

const FD_LIMIT = 256;
const WIDTH = 600;
const LAYERS = 2;

interface EvalView {
  status: string;
  error: string | null;
  builds: Record<string, number>;
  jobs: { drvPath: string | null }[];
}

const TITLE =
  `under ulimit -n ${FD_LIMIT}, an evaluation of ${WIDTH * LAYERS} derivations (${WIDTH} roots) is uploaded, ` +
  `planned and its ${WIDTH} runnable builds queued`;

test(TITLE, {
  timeout: 600_000,
}, async (t) => {
  const redis = await startRedis(t);
  const nix = await createNixEnv(t);
  const server = await startServer(t, { args: ['--redis-url', redis.url], env: nix.env, fdLimit: FD_LIMIT });
  const api = hubApi(() => server.url, server.adminToken);

  const flakeDir = await makeTempDir(t, 'narhub-bounded-flake-');
  await writeFile(join(flakeDir, 'graph.nix'), layeredGraphNix(WIDTH, LAYERS));
  await writeFile(join(flakeDir, 'flake.nix'), layeredFlakeNix(randomBytes(6).toString('hex')));
  await runCliOk([
    'project',
    'create',
    'bounded',
    '--flake',
    `path:${flakeDir}`,
    '--server',
    server.url,
    '--token',
    server.adminToken,
  ]);

  const { id } = await api.post<{ id: number }>('/projects/bounded/evaluations');
  const ev = await waitFor(
    `evaluation ${id} to be evaluated`,
    async () => {
      const e = await api.get<EvalView>(`/evaluations/${id}`);
      return e.status !== 'pending' && e.status !== 'evaluating' ? e : undefined;
    },
    480_000,
    500,
  );
  const log = server.stdout() + server.stderr();
  assert.equal(ev.status, 'building', `${ev.error}\n${log.slice(-4000)}`);
  assert.deepEqual(ev.builds, { queued: WIDTH * LAYERS });
  assert.doesNotMatch(log, /EMFILE|too many open files/i);

  // Every .drv of the closure is in the cache, as Nix has the closure.
  const roots = ev.jobs.map((j) => j.drvPath!);
  assert.equal(roots.length, WIDTH);
  const closure = (await nix.run('nix-store', ['-qR', ...roots])).stdout.trim();
  const storePaths = closure.split('\n');
  assert.equal(storePaths.length, WIDTH * LAYERS);
  const res = await fetch(`${server.url}/api/v1/caches/main/missing-paths`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ storePaths }),
  });
  assert.deepEqual((await res.json()).missing, []);

  // The bottom layer is runnable: one job each, waiting for a spoke.
  const queue = await waitFor(
    `the ${WIDTH} runnable builds to be queued`,
    async () => {
      const { queues } = await api.get<{ queues: { name: string; waiting: number }[] }>('/queues');
      const q = queues.find((x) => x.name === 'build-x86_64-linux');
      return q && q.waiting === WIDTH ? q : undefined;
    },
    60_000,
  );
  assert.equal(queue.waiting, WIDTH);
});
