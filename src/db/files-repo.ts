import type { Database } from 'better-sqlite3';

/** The small files a cache holds beside NARs, each addressed by a name within its kind. */
export type FileKind = 'log' | 'listing' | 'realisation' | 'build-trace' | 'debuginfo';

export interface FileRow {
  storageKey: string;
  size: number;
  contentType: string;
  contentEncoding: string | null;
}

interface KindTable {
  table: string;
  keyColumn: string;
  extraWhere: string;
  extraValues: string[];
  contentType: string | null;
}

const TABLES: Record<FileKind, KindTable> = {
  log: { table: 'logs', keyColumn: 'drv', extraWhere: '', extraValues: [], contentType: null },
  listing: {
    table: 'listings',
    keyColumn: 'hash_part',
    extraWhere: '',
    extraValues: [],
    contentType: 'application/json',
  },
  realisation: {
    table: 'realisations',
    keyColumn: 'id',
    extraWhere: " AND layout = 'realisations'",
    extraValues: ['realisations'],
    contentType: 'application/json',
  },
  'build-trace': {
    table: 'realisations',
    keyColumn: 'id',
    extraWhere: " AND layout = 'build-trace-v2'",
    extraValues: ['build-trace-v2'],
    contentType: 'application/json',
  },
  debuginfo: {
    table: 'debuginfo',
    keyColumn: 'build_id',
    extraWhere: '',
    extraValues: [],
    contentType: 'application/json',
  },
};

interface RawFile {
  storage_key: string;
  size: number;
  content_type?: string;
  content_encoding?: string | null;
}

/** Logs, listings, realisations and debuginfo entries: metadata rows pointing at blobs. */
export function createFilesRepo(db: Database) {
  const getters = new Map<FileKind, (cacheId: number, name: string) => RawFile | undefined>();
  const counters = new Map<FileKind, (cacheId: number) => number>();
  const upserters = new Map<FileKind, (cacheId: number, name: string, row: FileRow) => void>();

  for (const [kind, t] of Object.entries(TABLES) as [FileKind, KindTable][]) {
    const get = db.prepare<[number, string], RawFile>(
      `SELECT * FROM ${t.table} WHERE cache_id = ? AND ${t.keyColumn} = ?${t.extraWhere}`,
    );
    getters.set(kind, (cacheId, name) => get.get(cacheId, name));
    const count = db.prepare<[number], { n: number }>(
      `SELECT count(*) AS n FROM ${t.table} WHERE cache_id = ?${t.extraWhere}`,
    );
    counters.set(kind, (cacheId) => count.get(cacheId)?.n ?? 0);
    const cols = ['cache_id', t.keyColumn, 'storage_key', 'size', 'created_at'];
    if (kind === 'log') cols.push('content_type');
    if (kind !== 'debuginfo') cols.push('content_encoding');
    if (t.extraValues.length > 0) cols.push('layout');
    const conflict = ['cache_id', ...(t.extraValues.length > 0 ? ['layout'] : []), t.keyColumn];
    const updates = cols.filter((c) => !conflict.includes(c)).map((c) => `${c} = excluded.${c}`);
    const upsert = db.prepare(
      `INSERT INTO ${t.table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})
       ON CONFLICT (${conflict.join(', ')}) DO UPDATE SET ${updates.join(', ')}`,
    );
    upserters.set(kind, (cacheId, name, row) => {
      const values: unknown[] = [cacheId, name, row.storageKey, row.size, Date.now()];
      if (kind === 'log') values.push(row.contentType);
      if (kind !== 'debuginfo') values.push(row.contentEncoding);
      values.push(...t.extraValues);
      upsert.run(...values);
    });
  }

  return {
    get(kind: FileKind, cacheId: number, name: string): FileRow | undefined {
      const r = getters.get(kind)!(cacheId, name);
      if (!r) return undefined;
      return {
        storageKey: r.storage_key,
        size: r.size,
        contentType: r.content_type ?? TABLES[kind].contentType ?? 'application/octet-stream',
        contentEncoding: r.content_encoding ?? null,
      };
    },
    upsert(kind: FileKind, cacheId: number, name: string, row: FileRow): void {
      upserters.get(kind)!(cacheId, name, row);
    },
    /** How many files of a kind the cache has. */
    count(kind: FileKind, cacheId: number): number {
      return counters.get(kind)!(cacheId);
    },
  };
}

export type FilesRepo = ReturnType<typeof createFilesRepo>;
