import type { Database } from 'better-sqlite3';

/** Small key/value bookkeeping of the hub (e.g. the last processed event id of each queue). */
export function createHubStateRepo(db: Database) {
  const get = db.prepare<[string], { value: string }>('SELECT value FROM hub_state WHERE key = ?');
  const set = db.prepare(
    'INSERT INTO hub_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  const byPrefix = db.prepare<[string, string], { key: string; value: string }>(
    'SELECT key, value FROM hub_state WHERE key >= ? AND key < ?',
  );
  return {
    get(key: string): string | undefined {
      return get.get(key)?.value;
    },
    set(key: string, value: string): void {
      set.run(key, value);
    },
    /** Every key starting with `prefix`, without the prefix. */
    withPrefix(prefix: string): Map<string, string> {
      const rows = byPrefix.all(prefix, `${prefix}\uffff`);
      return new Map(rows.map((r) => [r.key.slice(prefix.length), r.value]));
    },
  };
}

export type HubStateRepo = ReturnType<typeof createHubStateRepo>;
