// An in-process narhub for HTTP tests: real SQLite file, real migrations, real local blob store,
// the real Fastify app driven with `app.inject` (no sockets). Plus builders for valid uploads.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { Database } from 'better-sqlite3';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { compress as zstdCompress } from 'zstd-napi';
import { createCacheService, type CacheService } from '../../src/cache/cache-service.js';
import type { Permission } from '../../src/cache/tokens.js';
import type { UpstreamSettings } from '../../src/cache/upstream/pull-through.js';
import type { CacheRow } from '../../src/db/caches-repo.js';
import { defaultMigrationsDir, migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/open.js';
import { buildApp } from '../../src/http/app.js';
import { COMPRESSION_EXTENSION, type Compression } from '../../src/io/compression.js';
import { formatHash, sha256Of } from '../../src/nix/hash.js';
import { narFromTree, type NarTree } from '../../src/nix/nar/nar-writer.js';
import { formatNarInfo, type NarInfo } from '../../src/nix/narinfo.js';
import { encodeNix32 } from '../../src/nix/nix32.js';
import { parsePublicKey, type PublicKey } from '../../src/nix/signing.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { createLocalBlobStore } from '../../src/storage/local-blob-store.js';

export type { NarTree, Compression };

export interface TestCacheSpec {
  name: string;
  private?: boolean;
  priority?: number;
}

export interface TestAppOptions {
  /** Defaults to 64 MiB. */
  maxNarSize?: number;
  /** Defaults to 1 MiB. */
  maxSmallFileSize?: number;
  /** Caches besides `main` (public, priority 40), created before the app is built. */
  caches?: TestCacheSpec[];
  /** Priority of `main`. */
  mainPriority?: number;
  /** Pull-through settings (timeouts, TTLs). */
  upstream?: Partial<UpstreamSettings>;
}

/** A token secret per permission, each scoped to exactly one cache. */
export type TokenSet = Record<Permission, string>;

export interface TestApp {
  app: FastifyInstance;
  service: CacheService;
  db: Database;
  store: BlobStore;
  dataDir: string;
  /** Root of the local blob store; key `a/b` is the file `<storeRoot>/a/b`. */
  storeRoot: string;
  main: CacheRow;
  /** Tokens scoped to `main`. */
  tokens: TokenSet;
  /** Tokens scoped to each cache by name (including `main`). */
  tokensFor: Record<string, TokenSet>;
  cache(name: string): CacheRow;
  /** Creates another token; an `expiresAt` already past gives a token whose expiry has lapsed. */
  token(cachePattern: string, permission: Permission, opts?: { expiresAt?: number }): { token: string; id: string };
  /** The cache's public keys, as `cache info` shows them. */
  publicKeys(cache?: string): PublicKey[];
  /** `app.inject` with the common shape. */
  request(
    method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE',
    url: string,
    opts?: { body?: Buffer | string; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
}

const PERMISSIONS: Permission[] = ['read', 'write', 'admin'];

export async function buildTestApp(t: Pick<TestContext, 'after'>, opts: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-http-'));
  const storeRoot = join(dataDir, 'store');
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  let store: BlobStore | undefined;
  let app: FastifyInstance | undefined;
  let service: CacheService | undefined;
  t.after(async () => {
    await app?.close();
    await service?.pullThrough.close();
    await store?.close();
    db.close();
    if (process.env.NARHUB_KEEP_TMP !== '1') rmSync(dataDir, { recursive: true, force: true });
  });

  migrate(db, defaultMigrationsDir());
  store = createLocalBlobStore({ root: storeRoot, fsync: false });
  service = createCacheService({
    db,
    store,
    keysDir: join(dataDir, 'keys'),
    upstream: opts.upstream,
    spoolDir: join(dataDir, 'upstream-spool'),
  });

  const specs: TestCacheSpec[] = [
    { name: 'main', private: false, priority: opts.mainPriority ?? 40 },
    ...(opts.caches ?? []),
  ];
  const tokensFor: Record<string, TokenSet> = {};
  for (const spec of specs) {
    await service.registry.create(spec.name, { private: spec.private ?? false, priority: spec.priority ?? 40 });
    const set = {} as TokenSet;
    for (const permission of PERMISSIONS) {
      set[permission] = service.tokens.create({
        cachePattern: spec.name,
        permission,
        name: `${spec.name}-${permission}`,
      }).token;
    }
    tokensFor[spec.name] = set;
  }

  app = await buildApp({
    service,
    maxNarSize: opts.maxNarSize ?? 64 * 1024 * 1024,
    maxSmallFileSize: opts.maxSmallFileSize ?? 1024 * 1024,
  });
  await app.ready();
  const built = app;

  return {
    app: built,
    service,
    db,
    store,
    dataDir,
    storeRoot,
    main: service.registry.require('main'),
    tokens: tokensFor.main!,
    tokensFor,
    cache: (name) => service.registry.require(name),
    token(cachePattern, permission, tokenOpts = {}) {
      const { expiresAt } = tokenOpts;
      const lapsed = expiresAt !== undefined && expiresAt <= Date.now();
      const { token, row } = service.tokens.create({
        cachePattern,
        permission,
        expiresAt: lapsed ? undefined : expiresAt,
      });
      // No token can be created already expired, so a lapsed one is written as it stands once its time has passed.
      if (lapsed) db.prepare('UPDATE tokens SET expires_at = ? WHERE id = ?').run(expiresAt, row.id);
      return { token, id: row.id };
    },
    publicKeys: (cache = 'main') => service.registry.info(cache).publicKeys.map((k) => parsePublicKey(k)),
    request(method, url, reqOpts = {}) {
      return built.inject({
        method,
        url,
        headers: reqOpts.headers ?? {},
        ...(reqOpts.body !== undefined ? { payload: reqOpts.body } : {}),
      });
    },
  };
}

// Auth headers ---------------------------------------------------------------------------------

export function basic(token: string, user = 'nix'): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}` };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

// NARs, compression, hashes --------------------------------------------------------------------

export function narBytes(tree: NarTree): Buffer {
  return Buffer.concat([...narFromTree(tree)]);
}

export function compressBytes(data: Buffer, compression: Compression): Buffer {
  switch (compression) {
    case 'none':
      return data;
    case 'gzip':
      return gzipSync(data);
    case 'br':
      return brotliCompressSync(data);
    case 'zstd':
      return zstdCompress(data);
    case 'xz':
      return execFileSync('xz', ['-c', '-z'], { input: data, maxBuffer: 1 << 30 });
    case 'bzip2':
      return execFileSync('bzip2', ['-c', '-z'], { input: data, maxBuffer: 1 << 30 });
  }
}

/** `sha256:<nix32>` of the bytes. */
export function fileHashOf(data: Uint8Array): string {
  return formatHash(sha256Of(data), 'nix32');
}

export function nix32Of(data: Uint8Array): string {
  return fileHashOf(data).slice('sha256:'.length);
}

/** `<nix32 sha256>.nar<ext>`, as Nix names an upload. */
export function narFileNameFor(file: Uint8Array, compression: Compression): string {
  return `${nix32Of(file)}.nar${COMPRESSION_EXTENSION[compression]}`;
}

export function randomHashPart(): string {
  return encodeNix32(randomBytes(20));
}

/** A random tree with a couple of files, so every path's NAR differs. */
export function sampleTree(label = 'pkg'): NarTree {
  return {
    type: 'directory',
    entries: {
      bin: {
        type: 'directory',
        entries: {
          [label]: { type: 'regular', executable: true, contents: Buffer.from(`#!/bin/sh\necho ${label}\n`) },
        },
      },
      'share.txt': { type: 'regular', contents: randomBytes(300) },
      link: { type: 'symlink', target: `bin/${label}` },
    },
  };
}

/** Everything a client knows about one path it is about to upload. */
export interface TestPath {
  hashPart: string;
  name: string;
  basename: string;
  storePath: string;
  tree: NarTree;
  nar: Buffer;
  compression: Compression;
  /** The bytes PUT under nar/. */
  file: Buffer;
  fileName: string;
  narUrl: string;
  references: string[];
  /** The narinfo as Nix would write it, with optional field overrides. */
  narinfo(overrides?: Partial<NarInfo>): string;
  info(overrides?: Partial<NarInfo>): NarInfo;
}

/** The body of narhub's native upload of `p` (`PUT /api/v1/caches/C/paths/HASH`): its metadata line, then its NAR. */
export function nativeUploadBody(p: TestPath): Buffer<ArrayBuffer> {
  const meta = JSON.stringify({
    storePath: p.storePath,
    narHash: p.info().narHash,
    narSize: p.nar.length,
    references: p.references.map((r) => `/nix/store/${r}`),
  });
  return Buffer.concat([Buffer.from(`${meta}\n`), p.nar]) as Buffer<ArrayBuffer>;
}

export function makePath(
  opts: {
    name?: string;
    tree?: NarTree;
    compression?: Compression;
    references?: string[];
    hashPart?: string;
    deriver?: string;
    sigs?: string[];
  } = {},
): TestPath {
  const hashPart = opts.hashPart ?? randomHashPart();
  const name = opts.name ?? 'pkg';
  const tree = opts.tree ?? sampleTree(name);
  const compression = opts.compression ?? 'none';
  const nar = narBytes(tree);
  const file = compressBytes(nar, compression);
  const fileName = narFileNameFor(file, compression);
  const basename = `${hashPart}-${name}`;
  const storePath = `/nix/store/${basename}`;
  const references = opts.references ?? [];
  const info = (overrides: Partial<NarInfo> = {}): NarInfo => {
    const base: NarInfo = {
      storePath,
      url: `nar/${fileName}`,
      compression,
      fileHash: fileHashOf(file),
      fileSize: file.length,
      narHash: fileHashOf(nar),
      narSize: nar.length,
      references,
      sigs: opts.sigs ?? [],
    };
    if (opts.deriver !== undefined) base.deriver = opts.deriver;
    return { ...base, ...overrides };
  };
  return {
    hashPart,
    name,
    basename,
    storePath,
    tree,
    nar,
    compression,
    file,
    fileName,
    narUrl: `nar/${fileName}`,
    references,
    info,
    narinfo: (overrides) => formatNarInfo(info(overrides)),
  };
}

// Uploads, as Nix does them -------------------------------------------------------------------

export async function putNar(
  h: TestApp,
  path: Pick<TestPath, 'file' | 'fileName'>,
  auth: Record<string, string>,
  cache = 'main',
): Promise<LightMyRequestResponse> {
  return h.request('PUT', `/${cache}/nar/${path.fileName}`, {
    body: path.file,
    headers: { ...auth, 'content-type': 'application/x-nix-nar' },
  });
}

export async function putNarinfo(
  h: TestApp,
  hashPart: string,
  text: string,
  auth: Record<string, string>,
  cache = 'main',
): Promise<LightMyRequestResponse> {
  return h.request('PUT', `/${cache}/${hashPart}.narinfo`, {
    body: text,
    headers: { ...auth, 'content-type': 'text/x-nix-narinfo' },
  });
}

/** PUT the NAR then the narinfo; throws unless both succeed. */
export async function upload(
  h: TestApp,
  path: TestPath,
  opts: { auth?: Record<string, string>; cache?: string; narinfo?: string } = {},
): Promise<void> {
  const cache = opts.cache ?? 'main';
  const auth = opts.auth ?? basic(h.tokensFor[cache]!.write);
  const nar = await putNar(h, path, auth, cache);
  if (nar.statusCode >= 300) throw new Error(`PUT nar/${path.fileName} → ${nar.statusCode} ${nar.body}`);
  const info = await putNarinfo(h, path.hashPart, opts.narinfo ?? path.narinfo(), auth, cache);
  if (info.statusCode >= 300) throw new Error(`PUT ${path.hashPart}.narinfo → ${info.statusCode} ${info.body}`);
}

/** Asserts the path left nothing visible: no narinfo, no NAR (GET and HEAD). */
export async function visibility(
  h: TestApp,
  path: Pick<TestPath, 'hashPart' | 'fileName'>,
  cache = 'main',
  auth: Record<string, string> = {},
): Promise<{ narinfo: number; narHead: number; narGet: number }> {
  const narinfo = await h.request('GET', `/${cache}/${path.hashPart}.narinfo`, { headers: auth });
  const narHead = await h.request('HEAD', `/${cache}/nar/${path.fileName}`, { headers: auth });
  const narGet = await h.request('GET', `/${cache}/nar/${path.fileName}`, { headers: auth });
  return { narinfo: narinfo.statusCode, narHead: narHead.statusCode, narGet: narGet.statusCode };
}
