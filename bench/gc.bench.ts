// `node dist/bench/gc.bench.js [--sizes 25000,50000,100000,200000] [--child DATA_DIR --dry]`: a GC run
// over caches of N narinfos (chains of 4 paths, each referring to the one below and to a shared
// base path every 100 chains: 5N/4 references), half of them older than the retention, with a
// NAR file, a narinfo and a listing per path on local disk. Each run is a fresh process on the
// data directory (`narhub gc` does the same), so its peak RSS is GC's alone; next to it, as the
// reference, the same process only opening the data directory and listing the store's files
// (what any GC must at least do). Prints a table and one JSON line. Never part of `npm test`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createCacheService } from '../src/cache/cache-service.js';
import { defaultMigrationsDir, migrate } from '../src/db/migrate.js';
import { openDatabase } from '../src/db/open.js';
import { encodeNix32 } from '../src/nix/nix32.js';
import { createLocalBlobStore } from '../src/storage/local-blob-store.js';

const { values } = parseArgs({
  options: { sizes: { type: 'string' }, child: { type: 'string' }, mode: { type: 'string' } },
});

const DAY = 86_400_000;

async function child(dataDir: string, mode: string): Promise<void> {
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const cache = service.registry.require('main');
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  let removed = 0;
  if (mode === 'list') {
    for await (const _ of store.list('main/')) removed++;
  } else {
    const run = await service.runGc({
      cache: 'main',
      dryRun: mode === 'dry',
      pendingGraceMs: DAY,
      supersededGraceMs: DAY,
    });
    removed = run.caches[0]!.pathsRemoved;
  }
  const seconds = (performance.now() - t0) / 1000;
  const maxRss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ seconds, removed, rssBefore, maxRss, cache: cache.name })}\n`);
  await store.close();
  db.close();
}

/** A cache of n paths straight into SQLite and the store directory (the fixture, not measured). */
async function fixture(n: number): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'narhub-gc-bench-'));
  const db = openDatabase(join(dataDir, 'narhub.sqlite'));
  migrate(db, defaultMigrationsDir());
  const store = createLocalBlobStore({ root: join(dataDir, 'store'), fsync: false });
  const service = createCacheService({ db, store, keysDir: join(dataDir, 'keys') });
  const cache = (await service.registry.create('main', { private: false, priority: 40, retention: 30 * 86_400 })).cache;
  await store.close();
  const root = join(dataDir, 'store', 'main');
  mkdirSync(join(root, 'nar'), { recursive: true });
  mkdirSync(join(root, 'listing'), { recursive: true });
  const insNar = db.prepare(`INSERT INTO nars (cache_id, file_name, storage_key, compression, file_hash, file_size,
    nar_hash, nar_size, listing_key, state, created_at)
    VALUES (?, ?, ?, 'zstd', ?, ?, ?, ?, ?, 'valid', 0)`);
  const insPath = db.prepare(`INSERT INTO store_paths (cache_id, hash_part, name, nar_id, narinfo, created_at,
    updated_at, accessed_at)
    VALUES (?, ?, ?, ?, ?, 0, 0, ?)`);
  const insRef = db.prepare('INSERT OR IGNORE INTO path_references (path_id, reference) VALUES (?, ?)');
  const now = Date.now();
  const hash = () => encodeNix32(randomBytes(20));
  let base = '';
  db.transaction(() => {
    let below = '';
    for (let i = 0; i < n; i++) {
      const h = hash();
      const name = `p${i}`;
      const file = `${encodeNix32(randomBytes(32))}.nar.zst`;
      const narId = Number(
        insNar.run(
          cache.id,
          file,
          `main/nar/${file}`,
          `sha256:${h}`,
          1000 + (i % 5000),
          `sha256:${h}`,
          4000,
          `main/listing/${file}.ls`,
        ).lastInsertRowid,
      );
      // Half the chains were last read 60 days ago (they go), half an hour ago (they stay).
      const chain = Math.floor(i / 4);
      const accessed = chain % 2 === 0 ? now - 60 * DAY : now - 1_800_000;
      const narinfo = `StorePath: /nix/store/${h}-${name}\nURL: nar/${file}\n`;
      const id = Number(insPath.run(cache.id, h, name, narId, narinfo, accessed).lastInsertRowid);
      if (i % 4 !== 0) insRef.run(id, below);
      if (i === 0) base = `${h}-${name}`;
      else if (chain % 100 === 0 && i % 4 === 1) insRef.run(id, base);
      below = `${h}-${name}`;
      writeFileSync(join(root, `${h}.narinfo`), narinfo);
      writeFileSync(join(root, 'nar', file), 'x');
      writeFileSync(join(root, 'listing', `${file}.ls`), '{}');
    }
  })();
  db.close();
  return dataDir;
}

function run(dataDir: string, mode: string): { seconds: number; removed: number; rssBefore: number; maxRss: number } {
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', dataDir, '--mode', mode], {
    encoding: 'utf8',
  });
  if (res.status !== 0) throw new Error(`child ${mode} failed: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  if (values.child) return child(values.child, values.mode ?? 'gc');
  const sizes = (values.sizes ?? '25000,50000,100000,200000').split(',').map(Number);
  const rows: Record<string, unknown>[] = [];
  const mb = (b: number) => (b / 1024 ** 2).toFixed(0);
  console.log('narinfos | list store (ref) s | dry run s | GC s | removed | peak RSS list / dry / GC MB');
  for (const n of sizes) {
    const dataDir = await fixture(n);
    try {
      const list = run(dataDir, 'list');
      const dry = run(dataDir, 'dry');
      const gc = run(dataDir, 'gc');
      rows.push({ n, list, dry, gc });
      console.log(
        `${n} | ${list.seconds.toFixed(2)} | ${dry.seconds.toFixed(2)} | ${gc.seconds.toFixed(2)} | ${gc.removed} | ` +
          `${mb(list.maxRss)} / ${mb(dry.maxRss)} / ${mb(gc.maxRss)}`,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  console.log(JSON.stringify(rows));
}

await main();
