// A model-based test of the upload state machine: random sequences of NAR PUTs, narinfo PUTs,
// HEADs, aborted uploads and restarts of the whole service, against the real app on a real data
// directory. After every step, every visible narinfo must have its NAR (with the NarHash and NarSize
// it states) and every reference visible; a path once visible stays, unchanged; a narinfo PUT is
// accepted only when its NAR was uploaded and its references are committed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { Database } from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { decompress as zstdDecompress } from 'zstd-napi';
import { createCacheService } from '../../../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/open.js';
import { buildApp } from '../../../src/http/app.js';
import { parseNarInfo } from '../../../src/nix/narinfo.js';
import { encodeNix32 } from '../../../src/nix/nix32.js';
import type { BlobStore } from '../../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../../src/storage/local-blob-store.js';
import { basic, makePath, randomHashPart, type TestPath } from '../../helpers/build-app.js';
import { fuzzRuns } from '../../helpers/fuzz.js';

interface Service {
  app: FastifyInstance;
  db: Database;
  store: BlobStore;
}

/** narhub on `dataDir`, as a start would open it. */
async function open(dataDir: string): Promise<Service> {
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const app = await buildApp({ service, maxNarSize: 1 << 20, maxSmallFileSize: 1 << 20 });
  await app.ready();
  return { app, db, store };
}

async function close(s: Service): Promise<void> {
  await s.app.close();
  await s.store.close();
  s.db.close();
}

/** Four paths, each in two variants (same store path, different contents): p1 → p0, p2 → p0 p1, p3 → p1 p3. */
function universe(): TestPath[][] {
  const hashes = [0, 1, 2, 3].map(() => randomHashPart());
  const base = (i: number) => `${hashes[i]}-p${i}`;
  const refs = [[], [base(0)], [base(0), base(1)], [base(1), base(3)]];
  return hashes.map((hashPart, i) =>
    [0, 1].map((v) =>
      makePath({
        hashPart,
        name: `p${i}`,
        references: refs[i],
        compression: v === 0 ? 'none' : 'zstd',
        tree: { type: 'regular', contents: Buffer.from(`path ${i} variant ${v} ${hashPart}\n`) },
      }),
    ),
  );
}

interface Model {
  paths: TestPath[][];
  /** Variant committed for each path. */
  committed: Map<number, number>;
  /** NAR files uploaded whole. */
  nars: Set<string>;
}

interface Real {
  dataDir: string;
  s: Service;
  auth: Record<string, string>;
}

const sha256 = (b: Uint8Array) => `sha256:${encodeNix32(createHash('sha256').update(b).digest())}`;

/** What every client sees must hold together, whatever happened before. */
async function checkInvariants(m: Model, r: Real): Promise<void> {
  for (const [i, variants] of m.paths.entries()) {
    const url = `/main/${variants[0]!.hashPart}.narinfo`;
    const get = await r.s.app.inject({ method: 'GET', url });
    const head = await r.s.app.inject({ method: 'HEAD', url });
    assert.equal(head.statusCode, get.statusCode, `HEAD and GET of ${url} agree`);
    if (m.committed.has(i)) assert.equal(get.statusCode, 200, `committed path p${i} stays visible`);
    if (get.statusCode !== 200) {
      assert.equal(get.statusCode, 404, `${url}: ${get.body}`);
      continue;
    }
    const info = parseNarInfo(get.body);
    const v = variants.findIndex((p) => p.info().narHash === info.narHash);
    assert.ok(v >= 0, `p${i}'s narinfo states a NarHash no upload had`);
    assert.equal(m.committed.get(i), v, `p${i} shows the variant that was committed first`);
    const nar = await r.s.app.inject({ method: 'GET', url: `/main/${info.url}` });
    assert.equal(nar.statusCode, 200, `the NAR of p${i} is there`);
    const bytes = info.compression === 'zstd' ? zstdDecompress(nar.rawPayload) : nar.rawPayload;
    assert.equal(sha256(bytes), info.narHash, `the NAR of p${i} has the stated hash`);
    assert.equal(bytes.length, info.narSize);
    for (const ref of info.references) {
      const refGet = await r.s.app.inject({ method: 'GET', url: `/main/${ref.slice(0, 32)}.narinfo` });
      assert.equal(refGet.statusCode, 200, `p${i}'s reference ${ref} is visible`);
    }
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;

class PutNar implements Cmd {
  constructor(
    readonly i: number,
    readonly v: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const p = m.paths[this.i]![this.v]!;
    const res = await r.s.app.inject({ method: 'PUT', url: `/main/${p.narUrl}`, payload: p.file, headers: r.auth });
    assert.ok(res.statusCode < 300, `NAR PUT of a valid NAR: ${res.statusCode} ${res.body}`);
    m.nars.add(p.fileName);
    await checkInvariants(m, r);
  }
  toString = () => `PutNar(p${this.i}, v${this.v})`;
}

class PutNarinfo implements Cmd {
  constructor(
    readonly i: number,
    readonly v: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const p = m.paths[this.i]![this.v]!;
    const res = await r.s.app.inject({
      method: 'PUT',
      url: `/main/${p.hashPart}.narinfo`,
      payload: p.narinfo(),
      headers: { ...r.auth, 'content-type': 'text/x-nix-narinfo' },
    });
    const refsCommitted = p.references.every((ref) => {
      const j = m.paths.findIndex((vs) => vs[0]!.basename === ref);
      return j === this.i || m.committed.has(j);
    });
    const previous = m.committed.get(this.i);
    if (res.statusCode < 300) {
      assert.ok(m.nars.has(p.fileName), 'a narinfo is accepted only once its NAR was uploaded');
      assert.ok(refsCommitted, 'a narinfo is accepted only once its references are committed');
      assert.ok(previous === undefined || previous === this.v, 'a committed path is never replaced by other content');
      m.committed.set(this.i, this.v);
    } else {
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode} ${res.body}`);
      if (previous !== undefined && previous !== this.v) assert.equal(res.statusCode, 409);
    }
    await checkInvariants(m, r);
  }
  toString = () => `PutNarinfo(p${this.i}, v${this.v})`;
}

class Head implements Cmd {
  constructor(readonly i: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    for (const p of m.paths[this.i]!) {
      const res = await r.s.app.inject({ method: 'HEAD', url: `/main/${p.narUrl}` });
      // HEAD of a NAR is 200 only once a committed narinfo uses it, so Nix never skips an unverified upload.
      const used =
        m.committed.get(this.i) !== undefined && m.paths[this.i]![m.committed.get(this.i)!]!.fileName === p.fileName;
      if (!used) assert.notEqual(res.statusCode, 200, `HEAD ${p.narUrl} before any narinfo committed it`);
    }
    await checkInvariants(m, r);
  }
  toString = () => `Head(p${this.i})`;
}

class AbortedNar implements Cmd {
  constructor(
    readonly i: number,
    readonly v: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const p = m.paths[this.i]![this.v]!;
    const half = p.file.subarray(0, p.file.length >> 1);
    const body = new Readable({
      read() {
        this.push(half);
        this.destroy(new Error('client went away'));
      },
    });
    await r.s.app
      .inject({
        method: 'PUT',
        url: `/main/${p.narUrl}`,
        payload: body,
        headers: { ...r.auth, 'content-length': String(p.file.length) },
      })
      .catch(() => undefined);
    await checkInvariants(m, r);
  }
  toString = () => `AbortedNar(p${this.i}, v${this.v})`;
}

class Restart implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    await close(r.s);
    r.s = await open(r.dataDir);
    await checkInvariants(m, r);
  }
  toString = () => 'Restart';
}

test('no run of uploads, aborts and restarts shows a narinfo with a missing or wrong NAR or reference', async () => {
  const index = fc.integer({ min: 0, max: 3 });
  const variant = fc.integer({ min: 0, max: 1 });
  const commands = [
    fc.tuple(index, variant).map(([i, v]) => new PutNar(i, v)),
    fc.tuple(index, variant).map(([i, v]) => new PutNarinfo(i, v)),
    index.map((i) => new Head(i)),
    fc.tuple(index, variant).map(([i, v]) => new AbortedNar(i, v)),
    fc.constant(new Restart()),
  ];
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 25 }), async (cmds) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'narhub-model-'));
      let s = await open(dataDir);
      try {
        const service = createCacheService({ db: s.db, store: s.store, keysDir: join(dataDir, 'keys') });
        await service.registry.create('main', { private: false, priority: 40 });
        const token = service.tokens.create({ cachePattern: 'main', permission: 'write' }).token;
        await close(s);
        s = await open(dataDir);
        const real: Real = { dataDir, s, auth: basic(token) };
        await fc.asyncModelRun(
          () => ({ model: { paths: universe(), committed: new Map(), nars: new Set<string>() }, real }),
          cmds,
        );
        s = real.s;
      } finally {
        await close(s).catch(() => undefined);
        rmSync(dataDir, { recursive: true, force: true });
      }
    }),
    fuzzRuns(25, 'NARHUB_FUZZ_MODEL_RUNS'),
  );
});
