// The current Nix clients against narhub: Debian trixie's nix-bin (Nix 2.26) and sid's (2.34 and
// later), unpacked by scripts/setup-modern-nix.sh, each with a store of its own. Every other e2e
// test drives Debian 12's Nix 2.8. One narhub serves the whole file; each client gets its own
// caches on it. A test that depends on one version's behaviour says so in its title.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync, existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startCacheProxy } from '../helpers/cache-proxy.js';
import { getNarinfo, verifyNarinfoSig } from '../helpers/http.js';
import { atLeast, modernNix, type ModernSuite, type NixClient } from '../helpers/modern-nix.js';
import {
  buildBigPath,
  buildClosure,
  createNixEnv,
  generateKey,
  hashPart,
  type Closure,
  type NixEnv,
  type SigningKey,
} from '../helpers/nix.js';
import { lines, literal } from '../helpers/scenario.js';
import { cacheInfo, createToken, runCliOk, startServer, type RunningServer } from '../helpers/server.js';
import { makeTempDir, type Cleanup } from '../helpers/tmp.js';
import { serveCacheDirectory } from '../helpers/upstream-server.js';

const HOST = '127.0.0.1';
const cleanups: (() => unknown)[] = [];
const file: Cleanup = { after: (fn) => void cleanups.push(fn as () => unknown) };

let server: RunningServer;

before(async () => {
  server = await startServer(file);
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const NAR_MAGIC = Buffer.concat([Buffer.from([13, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('nix-archive-1')]);
const MAGIC: Record<'none' | 'zstd' | 'xz', { ext: string; magic: Buffer }> = {
  none: { ext: '.nar', magic: NAR_MAGIC },
  zstd: { ext: '.nar.zst', magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) },
  xz: { ext: '.nar.xz', magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
};

/** A cache on the shared server, with its public key. */
async function newCache(name: string, flags: string[] = []): Promise<{ url: string; key: string }> {
  await runCliOk(['cache', 'create', name, ...flags], { dataDir: server.dataDir });
  const key = (await cacheInfo(server.dataDir, name)).publicKeys[0];
  assert.ok(key, `cache ${name} has no key`);
  return { url: `${server.url}/${name}`, key };
}

const EXPECTED: Record<ModernSuite, { title: string; check: (c: NixClient) => boolean; acceptEncoding: string }> = {
  // 2.14 to 2.33 send a fixed list.
  trixie: {
    title: 'Nix 2.26 (Debian 13, trixie)',
    check: (c) => c.version.startsWith('2.26.'),
    acceptEncoding: 'zstd, br, gzip, deflate, bzip2, xz',
  },
  // 2.34 and later let libcurl name what it decodes itself.
  sid: {
    title: 'Nix 2.34 or newer (Debian unstable, sid)',
    check: (c) => atLeast(c, '2.34'),
    acceptEncoding: 'deflate, gzip, br, zstd',
  },
};

for (const suite of ['trixie', 'sid'] as const) {
  describe(`current Nix from Debian ${suite}`, () => {
    let client: NixClient;
    /** Builds and uploads, with the admin token in netrc (netrc cannot tell caches on one host apart). */
    let writer: NixEnv;
    let uploaderKey: SigningKey;
    let closure: Closure;
    /** The closure, uploaded with Nix's default compression and the uploader's signature. */
    let signed: { url: string; key: string };

    const env = (opts: Parameters<typeof createNixEnv>[1] = {}) => createNixEnv(file, { ...opts, client });

    before(async () => {
      client = modernNix(suite);
      writer = await env({ netrc: [{ host: HOST, password: server.adminToken }] });
      uploaderKey = await generateKey(writer, `uploader-${suite}-1`);
      closure = await buildClosure(writer, `modern-${suite}`);
      signed = await newCache(`${suite}-signed`);
    });

    test(`is ${EXPECTED[suite].title}`, () => {
      assert.ok(EXPECTED[suite].check(client), `${suite}'s client is Nix ${client.version} (${client.debVersion})`);
    });

    test('nix store info --store narhub reads nix-cache-info, and an unknown cache is not a binary cache', async () => {
      const reader = await env();
      const res = await reader.run('nix', ['store', 'info', '--store', `${server.url}/main`]);
      assert.match(res.stdout + res.stderr, new RegExp(`Store URL: ${literal(server.url)}/main`));
      const ping = await reader.run('nix', ['store', 'ping', '--store', `${server.url}/main`]);
      assert.match(ping.stdout + ping.stderr, /Store URL:/);
      const none = await reader.tryRun('nix', ['store', 'info', '--store', `${server.url}/no-such-cache`]);
      assert.notEqual(none.code, 0, `an unknown cache must not pass for a binary cache:\n${none.stderr}`);
    });

    test("nix copy --to, default compression (xz), ?secret-key=: narhub's and the uploader's signatures", async () => {
      await writer.run('nix', ['copy', '--to', `${signed.url}?secret-key=${uploaderKey.secretKeyFile}`, closure.top]);
      const local = (await writer.run('nix', ['path-info', '-r', closure.top])).stdout;
      assert.deepEqual(lines(local), [...closure.paths].sort());
      for (const p of closure.paths) {
        const got = await getNarinfo(signed.url, p);
        assert.equal(got.status, 200, `${p}: ${got.body}`);
        const ni = got.narinfo!;
        assert.equal(ni.get('StorePath'), p);
        assert.equal(ni.get('Compression'), 'xz', got.body);
        assert.deepEqual(
          ni
            .all('Sig')
            .map((s) => s.split(':')[0])
            .sort(),
          [`${suite}-signed-1`, uploaderKey.name].sort(),
        );
        assert.ok(verifyNarinfoSig(ni, signed.key), `narhub's signature does not verify:\n${got.body}`);
        assert.ok(
          verifyNarinfoSig(ni, uploaderKey.publicKey),
          `the uploader's signature does not verify:\n${got.body}`,
        );
        await assertNar(signed.url, ni.get('URL'), 'xz');
      }
    });

    const accepts = EXPECTED[suite].acceptEncoding;
    test(`nix copy --to wire: HEAD, PUT a NAR, its narinfo, refs first; Accept-Encoding: ${accepts}`, async () => {
      const cache = await newCache(`${suite}-wire`);
      const proxy = await startCacheProxy(file, server.url);
      const viaProxy = `${proxy.url}/${suite}-wire`;
      await writer.run('nix', ['copy', '--to', `${viaProxy}?compression=zstd`, closure.top]);
      const seen = proxy.requests().map((r) => ({ ...r, url: r.url.slice(`/${suite}-wire/`.length) }));
      const at = (method: string, url: string) => seen.findIndex((r) => r.method === method && r.url === url);
      for (const p of closure.paths) {
        const narinfo = `${hashPart(p)}.narinfo`;
        const nar = (await getNarinfo(cache.url, p)).narinfo?.get('URL');
        assert.ok(nar, `${p} was not committed`);
        const [head, put, commit] = [at('HEAD', nar), at('PUT', nar), at('PUT', narinfo)];
        assert.ok(head >= 0 && head < put && put < commit, `${p}: HEAD ${head}, PUT ${put}, narinfo ${commit}`);
      }
      const commits = closure.paths.map((p) => at('PUT', `${hashPart(p)}.narinfo`));
      assert.deepEqual(
        commits,
        [...commits].sort((a, b) => a - b),
        'leaf, mid, top: references first',
      );
      const gets = seen.filter((r) => r.method === 'GET');
      assert.ok(gets.length > 0);
      for (const r of gets) assert.equal(r.headers['accept-encoding'], EXPECTED[suite].acceptEncoding, r.url);
      assert.ok(!seen.some((r) => r.headers['if-none-match'] !== undefined), 'no conditional requests');
    });

    test('an 8 MiB NAR goes up (curl 8 sends Expect: 100-continue past 1 MiB) and comes back intact', async () => {
      const big = await buildBigPath(writer, `modern-big-${suite}`, 8 * 1024 * 1024);
      const cache = await newCache(`${suite}-big`);
      const proxy = await startCacheProxy(file, server.url);
      await writer.run('nix', ['copy', '--to', `${proxy.url}/${suite}-big?compression=zstd`, big]);
      const narPut = proxy.requests().find((r) => r.method === 'PUT' && r.url.includes('/nar/'));
      assert.equal(narPut?.headers.expect, '100-continue', JSON.stringify(narPut?.headers));

      const reader = await env({ trustedPublicKeys: [cache.key] });
      const store = reader.freshPath('client-store');
      await reader.run('nix', ['copy', '--from', cache.url, '--to', store, big]);
      await reader.run('nix-store', ['--store', store, '--verify-path', big]);
      const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
      assert.equal(sha(join(store, big, 'blob')), sha(join(writer.dir, 'store', big, 'blob')));
    });

    for (const compression of ['zstd', 'none'] as const) {
      test(`nix copy --to ?compression=${compression} uploads the closure, compressed as asked`, async () => {
        const cache = await newCache(`${suite}-${compression}`);
        await writer.run('nix', ['copy', '--to', `${cache.url}?compression=${compression}`, closure.top]);
        for (const p of closure.paths) {
          const got = await getNarinfo(cache.url, p);
          assert.equal(got.status, 200, `${p}: ${got.body}`);
          assert.equal(got.narinfo!.get('Compression'), compression, got.body);
          assert.ok(verifyNarinfoSig(got.narinfo!, cache.key), got.body);
          await assertNar(cache.url, got.narinfo!.get('URL'), compression);
        }
        // A second copy finds everything there and changes nothing.
        const before = await Promise.all(closure.paths.map(async (p) => (await getNarinfo(cache.url, p)).body));
        await writer.run('nix', ['copy', '--to', `${cache.url}?compression=${compression}`, closure.top]);
        const again = await Promise.all(closure.paths.map(async (p) => (await getNarinfo(cache.url, p)).body));
        assert.deepEqual(again, before);
      });
    }

    test("an upload with a read token fails, the client shows narhub's one-line reason, nothing lands", async () => {
      const { token } = await createToken(server.dataDir, `${suite}-signed`, 'read');
      const reader = await env({ netrc: [{ host: HOST, password: token }] });
      const fileToAdd = join(reader.workDir, 'refused.txt');
      await writeFile(fileToAdd, `refused by ${suite}\n`);
      const path = (await reader.run('nix', ['store', 'add-file', fileToAdd])).stdout.trim();
      const res = await reader.tryRun('nix', ['copy', '--to', signed.url, path]);
      assert.notEqual(res.code, 0, res.stderr);
      assert.match(res.stderr, /HTTP error 403[\s\S]*FORBIDDEN: the token has no write rights on cache/);
      assert.equal((await getNarinfo(signed.url, path)).status, 404);
    });

    test("nix copy --from narhub into a fresh store checks narhub's signature, refuses an unknown key", async () => {
      const reader = await env({ trustedPublicKeys: [signed.key] });
      const store = reader.freshPath('client-store');
      await reader.run('nix', ['copy', '--from', signed.url, '--to', store, closure.top]);
      assertClosureIn(store, closure);
      for (const p of closure.paths) await reader.run('nix-store', ['--store', store, '--verify-path', p]);

      const other = await generateKey(reader, `other-${suite}-1`);
      const distrustful = await env({ trustedPublicKeys: [other.publicKey] });
      const store2 = distrustful.freshPath('client-store');
      const res = await distrustful.tryRun('nix', ['copy', '--from', signed.url, '--to', store2, closure.top]);
      assert.notEqual(res.code, 0, `a copy trusting only ${other.name} must fail:\n${res.stderr}`);
      // 2.8 said "lacks a valid signature"; these say "lacks a signature by a trusted key".
      assert.match(res.stderr, /lacks a (valid )?signature|not signed by any of the keys/);
      assert.equal(existsSync(join(store2, closure.top)), false);
    });

    test('nix-store -r substitutes the closure into a fresh store with narhub as its only substituter', async () => {
      const reader = await env({ trustedPublicKeys: [signed.key], substituters: [signed.url] });
      const store = reader.freshPath('client-store');
      const res = await reader.run('nix-store', ['--store', store, '-r', closure.top]);
      assert.match(res.stdout, new RegExp(literal(closure.top)));
      assertClosureIn(store, closure);
      const listed = await reader.run('nix-store', ['--store', store, '-qR', closure.top]);
      assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
    });

    test('nix path-info --store narhub lists the closure, with sizes and signatures in --json', async () => {
      const reader = await env();
      const listed = await reader.run('nix', ['path-info', '--store', signed.url, '-r', closure.top]);
      assert.deepEqual(lines(listed.stdout), [...closure.paths].sort());
      const json = JSON.parse(
        (await reader.run('nix', ['path-info', '--json', '--store', signed.url, closure.top])).stdout,
      ) as unknown;
      // 2.19 made --json an object keyed by path (2.8 printed a list).
      const info = (json as Record<string, { narSize: number; signatures: string[] }>)[closure.top];
      assert.ok(info, `no ${closure.top} in ${JSON.stringify(json)}`);
      assert.ok(info.narSize > 0);
      assert.ok(
        info.signatures.some((s) => s.startsWith(`${suite}-signed-1:`)),
        JSON.stringify(info),
      );
      const missing = await reader.tryRun('nix', [
        'path-info',
        '--store',
        signed.url,
        `/nix/store/${'0'.repeat(32)}-x`,
      ]);
      assert.notEqual(missing.code, 0, 'a path narhub does not have is not valid there');
    });

    test('nix store sign --store narhub adds a signature narhub keeps; nix store verify --store checks', async () => {
      const signer = await env({ netrc: [{ host: HOST, password: server.adminToken }] });
      const key = await generateKey(signer, `signer-${suite}-1`);
      await signer.run('nix', ['store', 'sign', '-k', key.secretKeyFile, '--store', signed.url, '-r', closure.top]);
      for (const p of closure.paths) {
        const got = await getNarinfo(signed.url, p);
        assert.ok(verifyNarinfoSig(got.narinfo!, key.publicKey), `no valid ${key.name} signature:\n${got.body}`);
        assert.ok(verifyNarinfoSig(got.narinfo!, signed.key), `narhub's own signature is gone:\n${got.body}`);
      }
      // A client that did not upload (its narinfo cache would hold its own unsigned copy).
      for (const trusted of [key.publicKey, signed.key]) {
        const verifier = await env();
        const args = ['store', 'verify', '--store', signed.url, '-r', closure.top, '--trusted-public-keys', trusted];
        await verifier.run('nix', args);
      }
      const other = await generateKey(signer, `other-${suite}-2`);
      const untrusted = await (await env()).tryRun('nix', [
        'store',
        'verify',
        '--store',
        signed.url,
        closure.top,
        '--trusted-public-keys',
        other.publicKey,
      ]);
      assert.notEqual(untrusted.code, 0);
      assert.match(untrusted.stderr, /is untrusted/);
    });

    test('nix store copy-log --to narhub, then nix log --store narhub prints the build log', async () => {
      const reader = await env();
      const before = await reader.tryRun('nix', ['log', '--store', signed.url, closure.top]);
      assert.notEqual(before.code, 0, `no log yet:\n${before.stdout}`);
      await writer.run('nix', ['store', 'copy-log', '--to', signed.url, closure.drvs[2]!]);
      const log = await (await env()).run('nix', ['log', '--store', signed.url, closure.top]);
      assert.match(log.stdout, new RegExp(literal(closure.logLines[2]!)));
    });

    test('a private cache: no token is refused, with the reason, and nothing lands; a read token works', async () => {
      const priv = await newCache(`${suite}-priv`, ['--private']);
      await writer.run('nix', ['copy', '--to', `${priv.url}?compression=zstd`, closure.top]);

      const anon = await env({ trustedPublicKeys: [priv.key] });
      const anonStore = anon.freshPath('client-store');
      const refused = await anon.tryRun('nix', ['copy', '--from', priv.url, '--to', anonStore, closure.top]);
      assert.notEqual(refused.code, 0, `an anonymous copy from a private cache must fail:\n${refused.stderr}`);
      assert.equal(existsSync(join(anonStore, closure.top)), false);
      // Unlike 2.8 (a 401 is a miss there, then "does not appear to be a binary cache"), these
      // fail on the 401 for nix-cache-info and print narhub's one-line reason.
      assert.match(refused.stderr, /nix-cache-info': HTTP error 401/);
      assert.match(refused.stderr, new RegExp(`UNAUTHORIZED: cache ${suite}-priv does not exist or needs a token`));

      const { token } = await createToken(server.dataDir, `${suite}-priv`, 'read');
      const reader = await env({ trustedPublicKeys: [priv.key], netrc: [{ host: HOST, password: token }] });
      const store = reader.freshPath('client-store');
      await reader.run('nix', ['copy', '--from', priv.url, '--to', store, closure.top]);
      assertClosureIn(store, closure);
      const info = await reader.run('nix', ['store', 'info', '--store', priv.url]);
      assert.match(info.stdout + info.stderr, /Store URL:/);
    });

    test('CA derivations: nix copy of the installable uploads realisations, and -j0 gets the outputs', async () => {
      const ca = { extraConf: ['extra-experimental-features = ca-derivations'] };
      const builder = await env({ ...ca, netrc: [{ host: HOST, password: server.adminToken }] });
      const cache = await newCache(`${suite}-ca`);
      const expr = join(builder.workDir, 'ca.nix');
      const mk = (name: string, script: string, deps = '') =>
        `derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; ${deps}
          __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256";
          args = [ "-c" "export PATH=/usr/bin:/bin; ${script}" ]; }`;
      await writeFile(
        expr,
        `let dep = ${mk(`ca-dep-${suite}`, 'echo dep > $out')};
         in ${mk(`ca-top-${suite}`, 'mkdir $out; ln -s $dep $out/dep', 'inherit dep;')}\n`,
      );
      const out = (await builder.run('nix-build', ['--no-out-link', expr])).stdout.trim();
      const realise = async () => {
        const reader = await env({ ...ca, trustedPublicKeys: [cache.key], substituters: [cache.url] });
        const store = reader.freshPath('client-store');
        const res = await reader.tryRun('nix', ['build', '--store', store, '-j0', '--no-link', '-f', expr]);
        return { res, store };
      };

      // The output paths alone: a client cannot know a CA derivation's output without its realisation.
      await builder.run('nix', ['copy', '--to', cache.url, out]);
      const without = await realise();
      assert.notEqual(without.res.code, 0, `no realisation uploaded yet:\n${without.res.stderr}`);
      // `nix copy` of the installable PUTs realisations/<id>.doi beside the paths.
      await builder.run('nix', ['copy', '--to', cache.url, '-f', expr]);
      const { res, store } = await realise();
      assert.equal(res.code, 0, res.stderr);
      assert.match(readlinkSync(join(store, out, 'dep')), /^\/nix\/store\/[0-9a-z]{32}-ca-dep-/);
    });

    test('pull-through: the client substitutes through narhub a closure it wrote to a file:// upstream', async () => {
      const upstreamWriter = await env();
      const upKey = await generateKey(upstreamWriter, `upstream-${suite}-1`);
      const fresh = await buildClosure(upstreamWriter, `modern-up-${suite}`);
      const dir = await makeTempDir(file, 'narhub-file-cache-');
      await writeFile(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\n');
      await upstreamWriter.run('nix', [
        'copy',
        '--to',
        `file://${dir}?compression=zstd&secret-key=${upKey.secretKeyFile}`,
        fresh.top,
      ]);
      const upstream = await serveCacheDirectory(file, dir);
      const front = await newCache(`${suite}-front`);
      await runCliOk(['upstream', 'add', `${suite}-front`, upstream.url, '--public-key', upKey.publicKey], {
        dataDir: server.dataDir,
      });

      const reader = await env({ trustedPublicKeys: [front.key], substituters: [front.url] });
      const store = reader.freshPath('client-store');
      await reader.run('nix-store', ['--store', store, '-r', fresh.top]);
      assertClosureIn(store, fresh);
      for (const p of fresh.paths) assert.equal(upstream.count(`/${hashPart(p)}.narinfo`) >= 1, true, p);
    });
  });
}

/** The file at a narinfo's URL is served, and starts with the magic of `compression`. */
async function assertNar(cacheUrl: string, url: string | undefined, compression: keyof typeof MAGIC): Promise<void> {
  const { ext, magic } = MAGIC[compression];
  assert.ok(url?.startsWith('nar/') && url.endsWith(ext), `URL ${url} should end in ${ext}`);
  const res = await fetch(`${cacheUrl}/${url}`);
  assert.equal(res.status, 200, `GET ${url}`);
  const body = Buffer.from(await res.arrayBuffer());
  assert.ok(body.subarray(0, magic.length).equals(magic), `${url} does not start with the ${compression} magic`);
}

/** The closure's files, as built, are in the chroot store `store`. */
function assertClosureIn(store: string, c: Closure): void {
  const [leaf, mid, top] = c.paths as [string, string, string];
  assert.equal(readFileSync(join(store, top, 'data'), 'utf8'), `top-${c.nonce}\n`);
  assert.equal(readlinkSync(join(store, top, 'mid')), mid);
  assert.equal(readFileSync(join(store, mid, 'leaf-path'), 'utf8'), `${leaf}\n`);
  assert.equal(readFileSync(join(store, leaf), 'utf8'), `leaf-${c.nonce}\n`);
}

test('Nix 2.34 uploads with write-nar-listing, narinfo-/ls-compression=xz (HTTP 2.32+); 2.8 substitutes', async () => {
  const sid = modernNix('sid');
  const writer = await createNixEnv(file, { client: sid, netrc: [{ host: HOST, password: server.adminToken }] });
  const built = await buildClosure(writer, 'modern-meta-compression');
  const cache = await newCache('meta-xz');
  const proxy = await startCacheProxy(file, server.url);
  await writer.run('nix', [
    'copy',
    '--to',
    `${proxy.url}/meta-xz?compression=zstd&write-nar-listing=1&narinfo-compression=xz&ls-compression=xz`,
    built.top,
  ]);
  // The client did send them xz-encoded (narhub decodes them: a narinfo it could not read is refused).
  const puts = proxy.requests().filter((r) => r.method === 'PUT' && /\.(narinfo|ls)$/.test(r.url));
  assert.equal(puts.length, 2 * built.paths.length, puts.map((r) => r.url).join('\n'));
  for (const r of puts) assert.equal(r.headers['content-encoding'], 'xz', r.url);
  for (const p of built.paths) {
    const got = await getNarinfo(cache.url, p);
    assert.equal(got.status, 200, got.body);
    assert.equal(got.headers.get('content-encoding'), null, "narinfos are narhub's own text, never encoded");
    assert.ok(verifyNarinfoSig(got.narinfo!, cache.key), got.body);
  }
  const reader = await createNixEnv(file, { trustedPublicKeys: [cache.key] });
  const store = reader.freshPath('client-store');
  await reader.run('nix', ['copy', '--from', cache.url, '--to', store, built.top]);
  assertClosureIn(store, built);
});

// log-compression on HTTP caches is Nix 2.32+; 2.34+ decode only the codings libcurl knows.
test('a log Nix 2.34 uploads with ?log-compression=xz or br is read by nix log of 2.34, 2.26, 2.8', async () => {
  const sid = modernNix('sid');
  const writer = await createNixEnv(file, { client: sid, netrc: [{ host: HOST, password: server.adminToken }] });
  const built = await buildClosure(writer, 'modern-log-compression');
  const readers = [
    { name: 'sid', env: await createNixEnv(file, { client: sid }) },
    { name: 'trixie', env: await createNixEnv(file, { client: modernNix('trixie') }) },
    { name: '2.8', env: await createNixEnv(file) },
  ];
  for (const compression of ['xz', 'br'] as const) {
    const cache = await newCache(`logs-${compression}`);
    await writer.run('nix', ['copy', '--to', `${cache.url}?compression=zstd`, built.top]);
    await writer.run('nix', [
      'store',
      'copy-log',
      '--to',
      `${cache.url}?log-compression=${compression}`,
      built.drvs[2]!,
    ]);
    // Stored as the client sent it: asked for in that coding, it comes back in it.
    const stored = await fetch(`${cache.url}/log/${built.drvs[2]!.slice('/nix/store/'.length)}`, {
      headers: { 'accept-encoding': compression },
    });
    assert.equal(stored.headers.get('content-encoding'), compression);
    for (const reader of readers) {
      const res = await reader.env.tryRun('nix', ['log', '--store', cache.url, built.top]);
      assert.equal(res.code, 0, `${reader.name} reading a ${compression} log:\n${res.stderr}`);
      assert.match(res.stdout, new RegExp(literal(built.logLines[2]!)), `${reader.name}, ${compression}`);
    }
  }
});
