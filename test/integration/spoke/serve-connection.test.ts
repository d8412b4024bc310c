/**
 * The spoke's `nix-store --serve` client against the real Nix 2.8 in chroot stores: builds and
 * their statuses, logs on stderr, limits, path metadata, NAR dumps, adding paths, and killing a
 * build. The first test runs with the current clients too (Debian trixie's 2.26, sid's 2.34:
 * test/helpers/modern-nix.ts). Fails (never skips) without Nix.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { parseDerivation } from '../../../src/nix/derivation.js';
import { BuildStatus } from '../../../src/nix/serve-protocol.js';
import { ServeConnection, ServeConnectionError } from '../../../src/spoke/serve-connection.js';
import { modernNix, type NixClient } from '../../helpers/modern-nix.js';
import { createNixEnv, type NixEnv } from '../../helpers/nix.js';

const SANDBOX = ['--option', 'sandbox-paths', '/bin /lib /lib64 /usr'];
const noLimits = { maxSilentTime: 0, buildTimeout: 0, maxLogSize: 0 };

async function setup(t: TestContext, client?: NixClient) {
  const nix = await createNixEnv(t, client === undefined ? {} : { client });
  // A current client writes its .drv files into a store of its own (createNixEnv).
  const storeRoot = client === undefined ? '/' : join(nix.dir, 'store');
  const nonce = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  // A sleep no other test runs, so the process list shows whether this one's builder is gone.
  const sleep = `sleep 60.${Math.floor(Math.random() * 1e6)}`;
  await writeFile(
    join(nix.workDir, 'graph.nix'),
    `let
  mk = name: script: extra: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "export PATH=/bin:/usr/bin; \${script}" ];
    nonce = "${nonce}";
  } // extra);
  dep = mk "dep" ("echo building-dep-log-line; mkdir -p $out/sub; echo dep > $out/sub/file; "
    + "ln -s file $out/sub/link") { };
in {
  inherit dep;
  top = mk "top" "cat \${dep}/sub/file > $out" { inherit dep; };
  fails = mk "fails" "echo about-to-fail; exit 3" { };
  slow = mk "slow" "${sleep}; touch $out" { };
  big = mk "big" "head -c 16000000 /dev/zero > $out" { };
}
`,
  );
  const drvs: Record<string, string> = {};
  for (const attr of ['dep', 'top', 'fails', 'slow', 'big']) {
    drvs[attr] = (await nix.run('nix-instantiate', [join(nix.workDir, 'graph.nix'), '-A', attr])).stdout.trim();
  }
  const drv = (attr: string) => parseDerivation(readFileSync(join(storeRoot, drvs[attr]!), 'utf8'));
  const conns: ServeConnection[] = [];
  t.after(async () => {
    for (const c of conns) c.kill();
    await Promise.all(conns.map((c) => c.exited));
  });
  const open = async (store: string) => {
    const c = await ServeConnection.open({ store, args: SANDBOX, env: nix.env });
    conns.push(c);
    return c;
  };
  return { nix, drvs, drv, open, sleep };
}

const dumpPath = (nix: NixEnv, store: string, path: string) =>
  execFileSync('nix', ['--extra-experimental-features', 'nix-command', 'store', 'dump-path', '--store', store, path], {
    env: nix.env,
    maxBuffer: 1 << 26,
  });

describe('ServeConnection (nix-store --serve)', () => {
  for (const suite of [undefined, 'trixie', 'sid'] as const) {
    const which = suite === undefined ? '' : ` (Nix from Debian ${suite})`;
    it(`builds, reports metadata and NARs as Nix stores them, adds paths to another store${which}`, async (t) => {
      await buildsAndCopies(t, suite === undefined ? undefined : modernNix(suite));
    });
  }

  it('reports a failing builder as PermanentFailure and a limit as TimedOut, and stays usable', async (t) => {
    const { nix, drvs, drv, open } = await setup(t);
    const c = await open(nix.freshPath('s'));
    let log = '';
    c.onStderr((text) => (log += text));
    const failed = await c.buildDerivation(drvs.fails!, drv('fails'), [], noLimits);
    assert.equal(failed.status, BuildStatus.PermanentFailure);
    assert.match(
      failed.errorMsg.replace(/\u001b\[[0-9;]*m/g, ''),
      /builder for '.*-fails\.drv' failed with exit code 3/,
    );
    assert.match(log, /about-to-fail/);
    const slow = await c.buildDerivation(drvs.slow!, drv('slow'), [], {
      maxSilentTime: 0,
      buildTimeout: 1,
      maxLogSize: 0,
    });
    assert.equal(slow.status, BuildStatus.TimedOut, slow.errorMsg);
    const dep = await c.buildDerivation(drvs.dep!, drv('dep'), [], noLimits);
    assert.equal(dep.status, BuildStatus.Built);
  });

  it('refuses a NAR that does not match its hash, saying why, and a build whose inputs are missing', async (t) => {
    const { nix, drvs, drv, open } = await setup(t);
    const storeA = nix.freshPath('a');
    const a = await open(storeA);
    await a.buildDerivation(drvs.dep!, drv('dep'), [], noLimits);
    const depOut = drv('dep').outputs.out!.path;
    const [info] = await a.queryPathInfos([depOut]);
    const nar = dumpPath(nix, storeA, depOut);
    // Same shape, one byte of the file changed: only the hash can tell.
    const at = nar.indexOf('dep\n');
    assert.ok(at > 0);
    nar[at + 1] = 'i'.charCodeAt(0);
    const b = await open(nix.freshPath('b'));
    await assert.rejects(
      b.addToStoreNar(info!, Readable.from([nar])),
      (err: Error) => err instanceof ServeConnectionError && /hash mismatch/i.test(err.message),
    );
    assert.equal(b.alive, false);

    const c = await open(nix.freshPath('c'));
    const res = await c.buildDerivation(drvs.top!, drv('top'), [depOut], noLimits).catch((err: Error) => err);
    // Nix refuses either with a status or by failing the command; never a success.
    assert.ok(res instanceof Error || res.status !== BuildStatus.Built, JSON.stringify(res));
  });

  it('kill() ends a running build with its process tree', async (t) => {
    const { nix, drvs, drv, open, sleep } = await setup(t);
    const c = await open(nix.freshPath('s'));
    const building = c.buildDerivation(drvs.slow!, drv('slow'), [], noLimits);
    await new Promise((r) => setTimeout(r, 1500));
    const pid = c.pid!;
    c.kill();
    await assert.rejects(building, ServeConnectionError);
    await c.exited;
    const sleeping = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(sleep) && !l.includes('ps -eo'));
    assert.deepEqual(sleeping, [], 'the builder is gone too');
    assert.throws(() => process.kill(pid, 0));
  });
});

describe('ServeConnection dumps read only in part', () => {
  it('retire the connection rather than leave it out of step (a NAR read whole leaves it usable)', {
    timeout: 120_000,
  }, async (t) => {
    const { nix, drvs, drv, open } = await setup(t);
    const c = await open(nix.freshPath('s'));
    assert.equal((await c.buildDerivation(drvs.big!, drv('big'), [], noLimits)).status, BuildStatus.Built);
    const [info] = await c.queryPathInfos([drv('big').outputs.out!.path]);
    const dump = c.dumpStorePath(info!.path, info!.narSize);
    await new Promise((resolve) => dump.once('readable', resolve));
    dump.destroy();
    await c.exited;
    assert.equal(c.alive, false);

    const d = await open(nix.freshPath('d'));
    await d.buildDerivation(drvs.dep!, drv('dep'), [], noLimits);
    const [small] = await d.queryPathInfos([drv('dep').outputs.out!.path]);
    for await (const chunk of d.dumpStorePath(small!.path, small!.narSize)) assert.ok(chunk.length > 0);
    assert.equal((await d.queryValidPaths([small!.path], { lock: false })).size, 1);
    assert.equal(d.alive, true);
  });
});

async function buildsAndCopies(t: TestContext, client?: NixClient): Promise<void> {
  const { nix, drvs, drv, open } = await setup(t, client);

  const storeA = nix.freshPath('a');
  const a = await open(storeA);
  let log = '';
  a.onStderr((text) => (log += text));
  const dep = drv('dep');
  const depOut = dep.outputs.out!.path;

  assert.deepEqual([...(await a.queryValidPaths([depOut], { lock: true }))], []);
  const built = await a.buildDerivation(drvs.dep!, dep, [], noLimits);
  assert.equal(built.status, BuildStatus.Built, built.errorMsg);
  assert.match(log, /building-dep-log-line/);
  assert.deepEqual([...(await a.queryValidPaths([depOut], { lock: false }))], [depOut]);

  const again = await a.buildDerivation(drvs.dep!, dep, [], noLimits);
  assert.equal(again.status, BuildStatus.AlreadyValid);

  const [info] = await a.queryPathInfos([depOut, '/nix/store/00000000000000000000000000000000-absent']);
  const pathInfo = JSON.parse(
    execFileSync(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'path-info', '--json', '--store', storeA, depOut],
      { env: nix.env, encoding: 'utf8' },
    ),
  ) as unknown;
  // 2.8 prints a list; 2.19 and later an object keyed by path.
  const want = (Array.isArray(pathInfo) ? pathInfo[0] : (pathInfo as Record<string, unknown>)[depOut]) as {
    narSize: number;
  };
  assert.equal(info!.path, depOut);
  assert.equal(info!.narSize, want.narSize);
  assert.equal(info!.deriver, drvs.dep);
  assert.deepEqual(info!.references, []);

  const chunks: Buffer[] = [];
  for await (const c of a.dumpStorePath(depOut, info!.narSize)) chunks.push(c as Buffer);
  assert.deepEqual(Buffer.concat(chunks), dumpPath(nix, storeA, depOut));
  // The connection is back in step after the dump.
  assert.equal((await a.queryValidPaths([depOut], { lock: false })).size, 1);

  // A second store gets dep from the first one's NAR, then builds top on it.
  const storeB = nix.freshPath('b');
  const b = await open(storeB);
  const nar = Buffer.concat(chunks);
  await b.addToStoreNar(info!, Readable.from([nar.subarray(0, 100), nar.subarray(100)]));
  assert.equal((await b.queryValidPaths([depOut], { lock: true })).size, 1);
  const top = drv('top');
  const topBuilt = await b.buildDerivation(drvs.top!, top, [depOut], noLimits);
  assert.equal(topBuilt.status, BuildStatus.Built, topBuilt.errorMsg);
  const [topInfo] = await b.queryPathInfos([top.outputs.out!.path]);
  assert.deepEqual(topInfo!.references, [], 'top copies the file, it does not refer to dep');
}
