// The pure parts of the automatic push: path filters, "built here", the post-build-hook's environment.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pathsFromHookEnvironment } from '../../../src/push/hook-paths.js';
import { builtHere, createPathFilter, globToRegExp } from '../../../src/push/path-filter.js';
import type { PathInfo } from '../../../src/nix/path-info.js';
import type { ApiClient } from '../../../src/push/api-client.js';
import type { Progress } from '../../../src/push/progress.js';
import { pushClosure } from '../../../src/push/push.js';

const path = (name: string) => `/nix/store/0c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-${name}`;

test('globs match whole names: * any run, ? one character, [..] and [!..] classes, the rest literally', () => {
  assert.ok(globToRegExp('hello-*').test('hello-2.12.1'));
  assert.ok(!globToRegExp('hello-*').test('xhello-2'));
  assert.ok(globToRegExp('*.drv').test('foo.drv'));
  assert.ok(!globToRegExp('*.drv').test('foo-drv'), 'the dot is literal');
  assert.ok(globToRegExp('?-x').test('a-x'));
  assert.ok(!globToRegExp('?-x').test('ab-x'));
  assert.ok(globToRegExp('v[0-9]*').test('v3.1'));
  assert.ok(!globToRegExp('v[!0-9]*').test('v3.1'));
  assert.ok(globToRegExp('v[!0-9]*').test('vx'));
  assert.ok(globToRegExp('a[b').test('a[b'), 'an unclosed [ is literal');
  assert.ok(globToRegExp('a+b(c)').test('a+b(c)'));
});

test('a path passes when it matches an --include (or none is given) and no --exclude; patterns are names', () => {
  const none = createPathFilter();
  assert.equal(none.nameRejects(path('anything.drv')), undefined);
  assert.equal(none.needsInfo, false);

  const filter = createPathFilter({ include: ['hello-*', '*-source'], exclude: ['*.drv', '*-doc'] });
  assert.equal(filter.nameRejects(path('hello-2.12.1')), undefined);
  assert.equal(filter.nameRejects(path('nixpkgs-source')), undefined);
  assert.equal(filter.nameRejects(path('bash-5.2')), 'matches no --include pattern');
  assert.equal(filter.nameRejects(path('hello-2.12.1.drv')), 'matches --exclude "*.drv"');
  assert.equal(filter.nameRejects(path('hello-2.12.1-doc')), 'matches --exclude "*-doc"');
  assert.equal(filter.included(path('hello-2.12.1-doc')), true);
  assert.equal(filter.included(path('bash-5.2')), false);

  assert.throws(() => createPathFilter({ include: ['/nix/store/*'] }), /matches a store path's name/);
  assert.throws(() => createPathFilter({ exclude: [''] }), /--exclude ""/);
});

test('"built here" is what Nix marks ultimate: not substituted, copied or added paths, signed or not', () => {
  // The rows Nix 2.8 records, as `nix path-info --json` reports them.
  const built = { ultimate: true, ca: undefined, signatures: [] };
  const builtAndSigned = { ultimate: true, ca: undefined, signatures: ['here-1:sig'] };
  const added = {
    ultimate: false,
    ca: 'fixed:r:sha256:18pb41p22v9d4dpmq7yz5mgv0822mdv3gz1fw10pf13s60isgrji',
    signatures: [],
  };
  const drvFile = {
    ultimate: false,
    ca: 'text:sha256:13d0jr62d3hiv64dapckl6jy88fnp1w3x1wn7hqvibhngz23w5d6',
    signatures: [],
  };
  const substituted = { ultimate: false, ca: undefined, signatures: ['cache.nixos.org-1:sig'] };
  // Nix 2.8 keeps no signature of a content-addressed path it substitutes.
  const substitutedSource = { ultimate: false, ca: 'fixed:r:sha256:abc', signatures: [] };
  const imported = { ultimate: false, ca: undefined, signatures: [] };
  assert.deepEqual([built, builtAndSigned, added, drvFile, substituted, substitutedSource, imported].map(builtHere), [
    true,
    true,
    false,
    false,
    false,
    false,
    false,
  ]);

  const filter = createPathFilter({ onlyBuiltHere: true });
  assert.equal(filter.needsInfo, true);
  const info = (rest: Partial<PathInfo>): PathInfo => ({
    path: path('x'),
    narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s',
    narSize: 1,
    references: [],
    signatures: [],
    ...rest,
  });
  assert.equal(filter.infoRejects(info({ ultimate: true })), undefined);
  assert.match(filter.infoRejects(info({ signatures: ['c-1:s'] })) ?? '', /^not built here/);
  assert.equal(createPathFilter().infoRejects(info({ signatures: ['c-1:s'] })), undefined);
});

test('post-build-hook environment: $OUT_PATHS, else the outputs $DRV_PATH fixes (Nix 2.8.0 leaves it empty)', () => {
  const out = path('hello');
  const dev = '/nix/store/1c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-hello-dev';
  const drvPath = '/nix/store/2c5q4bqbzvmh3h69b2xs8lqbrhqf4zyv-hello.drv';
  const drv = `Derive([("dev","${dev}","",""),("out","${out}","","")],[],[],"x86_64-linux","/bin/sh",[],[])`;
  const floating = 'Derive([("out","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",[],[])';
  const files: Record<string, string> = { [drvPath]: drv, '/nix/store/floating.drv': floating };
  const read = (p: string) => {
    const text = files[p];
    if (text === undefined) throw new Error('ENOENT');
    return text;
  };

  assert.deepEqual(pathsFromHookEnvironment({ OUT_PATHS: `${out} ${dev}`, DRV_PATH: drvPath }, read), {
    paths: [out, dev],
    skipped: [],
  });
  assert.deepEqual(pathsFromHookEnvironment({ OUT_PATHS: '', DRV_PATH: drvPath }, read), {
    paths: [dev, out],
    skipped: [],
  });
  assert.deepEqual(pathsFromHookEnvironment({ OUT_PATHS: '', DRV_PATH: '/nix/store/floating.drv' }, read), {
    paths: [],
    skipped: ['out'],
  });
  assert.deepEqual(pathsFromHookEnvironment({}, read), { paths: [], skipped: [] });
  assert.throws(() => pathsFromHookEnvironment({ DRV_PATH: '/nix/store/missing.drv' }, read), /cannot be read: ENOENT/);
});

test('--max-size: a NAR over it is refused for upload, one at or under it is not; no limit refuses none', () => {
  const filter = createPathFilter({ maxNarSize: 1024 * 1024 });
  assert.equal(filter.uploadRejects({ narSize: 1024 * 1024 }), undefined);
  assert.equal(filter.uploadRejects({ narSize: 1024 * 1024 + 1 }), 'its NAR is 1.0 MiB, over --max-size 1M');
  assert.equal(filter.uploadRejects({ narSize: 3 * 1024 ** 3 }), 'its NAR is 3.0 GiB, over --max-size 1M');
  assert.equal(createPathFilter().uploadRejects({ narSize: Number.MAX_SAFE_INTEGER }), undefined);
});

/** A cache nobody reaches: the fake clients below answer for it. */
const LOCATION = { base: 'http://127.0.0.1:1', cache: 'main', host: '127.0.0.1' };

/** A fake client's upload: records the path and answers that it was created. */
const recordUpload = (uploaded: string[]) => async (i: PathInfo) => {
  uploaded.push(i.path);
  return { created: true, stored: true, fileSize: i.narSize, narSize: i.narSize };
};

/** Progress that says nothing. */
const SILENT: Progress = {
  start: () => undefined,
  bytes: () => undefined,
  pushed: () => undefined,
  retrying: () => undefined,
  failed: () => undefined,
  finish: () => undefined,
};

test('pushClosure leaveOut holds back a path and what the cache lacks needing it; present ones hold none', async () => {
  const info = (name: string, narSize: number, refs: string[] = []): PathInfo => ({
    path: path(name),
    narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s',
    narSize,
    references: [path(name), ...refs.map(path)],
    signatures: [],
  });
  const closure = [
    info('big', 5000),
    info('needs-big', 10, ['big']),
    info('needs-needs-big', 10, ['needs-big']),
    info('small', 10),
    info('big-present', 9000),
    info('needs-big-present', 10, ['big-present']),
  ];
  const uploaded: string[] = [];
  const client = {
    missingPaths: async (paths: string[]) => ({
      missing: paths.filter((p) => p !== path('big-present')),
      upstreamKeyNames: [],
    }),
    uploadPath: recordUpload(uploaded),
  } as unknown as ApiClient;
  const report = await pushClosure(closure, client, {
    location: LOCATION,
    retry: { retries: 0 },
    progress: SILENT,
    leaveOut: (i) => (i.narSize > 1000 ? 'too big' : undefined),
  });
  assert.deepEqual(uploaded.sort(), [path('needs-big-present'), path('small')]);
  assert.deepEqual(report.leftOut, [
    { path: path('big'), reason: 'too big' },
    { path: path('needs-big'), reason: `needs ${path('big')}, which is left out` },
    { path: path('needs-needs-big'), reason: `needs ${path('needs-big')}, which is left out` },
  ]);
  assert.deepEqual(report.failed, []);
  assert.equal(report.present, 1);
  assert.equal(report.closure, 6);
});

test('pushClosure skips what an upstream key signs and the server says an upstream has; the rest uploads', async () => {
  const info = (name: string, sigs: string[], refs: string[] = []): PathInfo => ({
    path: path(name),
    narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s',
    narSize: 10,
    references: [path(name), ...refs.map(path)],
    signatures: sigs,
  });
  const closure = [
    info('libc', ['cache.example.org-1:c2lnbmF0dXJl']),
    // Signed by the upstream's key, but the upstream no longer has it: uploaded after all.
    info('gone-upstream', ['cache.example.org-1:c2lnbmF0dXJl']),
    info('own', ['builder-1:c2lnbmF0dXJl'], ['libc', 'gone-upstream']),
    info('unsigned', [], ['own']),
  ];
  const run = async (uploadUpstreamPaths: boolean) => {
    const uploaded: string[] = [];
    const asked: string[][] = [];
    const client = {
      missingPaths: async (paths: string[]) => ({ missing: paths, upstreamKeyNames: ['cache.example.org-1'] }),
      upstreamPaths: async (paths: string[]) => {
        asked.push(paths);
        return paths.filter((p) => p === path('libc'));
      },
      uploadPath: recordUpload(uploaded),
    } as unknown as ApiClient;
    const report = await pushClosure(closure, client, {
      location: LOCATION,
      retry: { retries: 0 },
      progress: SILENT,
      uploadUpstreamPaths,
    });
    return { uploaded: uploaded.sort(), asked, report };
  };
  const skipping = await run(false);
  // Only the paths an upstream key signs are asked about.
  assert.deepEqual(skipping.asked, [[path('libc'), path('gone-upstream')]]);
  assert.deepEqual(skipping.uploaded, [path('gone-upstream'), path('own'), path('unsigned')].sort());
  assert.deepEqual(skipping.report.fromUpstreams, [path('libc')]);
  assert.deepEqual(skipping.report.failed, []);
  // --upload-upstream-paths: nothing is asked, everything is uploaded.
  const all = await run(true);
  assert.deepEqual(all.asked, []);
  assert.deepEqual(all.uploaded, closure.map((i) => i.path).sort());
  assert.deepEqual(all.report.fromUpstreams, []);
});
