import type { Database } from 'better-sqlite3';

export interface UpstreamRow {
  id: number;
  cacheId: number;
  /** Base URL without a trailing slash. */
  url: string;
  /** `name:base64` Nix public keys. */
  publicKeys: string[];
  /** Lower is asked first. */
  priority: number;
  /** Set by the config file (replaced at every start) rather than by the CLI or API. */
  declared: boolean;
  createdAt: number;
}

export type NewUpstream = Pick<UpstreamRow, 'url' | 'publicKeys' | 'priority'>;

export interface OfferRow {
  cacheId: number;
  hashPart: string;
  upstreamId: number;
  fileName: string;
  narUrl: string;
  /** The upstream's narinfo as received. */
  narinfo: string;
  createdAt: number;
}

interface RawUpstream {
  id: number;
  cache_id: number;
  url: string;
  public_keys: string;
  priority: number;
  declared: number;
  created_at: number;
}

interface RawOffer {
  cache_id: number;
  hash_part: string;
  upstream_id: number;
  file_name: string;
  nar_url: string;
  narinfo: string;
  created_at: number;
}

const toUpstream = (r: RawUpstream): UpstreamRow => ({
  id: r.id,
  cacheId: r.cache_id,
  url: r.url,
  publicKeys: r.public_keys.split(' ').filter((k) => k !== ''),
  priority: r.priority,
  declared: r.declared === 1,
  createdAt: r.created_at,
});

const toOffer = (r: RawOffer): OfferRow => ({
  cacheId: r.cache_id,
  hashPart: r.hash_part,
  upstreamId: r.upstream_id,
  fileName: r.file_name,
  narUrl: r.nar_url,
  narinfo: r.narinfo,
  createdAt: r.created_at,
});

/** A cache's upstreams, and the narinfos they offered that are not committed yet. */
export function createUpstreamsRepo(db: Database) {
  const ofCache = db.prepare<[number], RawUpstream>('SELECT * FROM upstreams WHERE cache_id = ? ORDER BY priority, id');
  const byUrl = db.prepare<[number, string], RawUpstream>('SELECT * FROM upstreams WHERE cache_id = ? AND url = ?');
  const all = db.prepare<[], RawUpstream>('SELECT * FROM upstreams ORDER BY cache_id, priority, id');
  const upsert = db.prepare(`
    INSERT INTO upstreams (cache_id, url, public_keys, priority, declared, created_at)
    VALUES (@cacheId, @url, @publicKeys, @priority, @declared, @createdAt)
    ON CONFLICT (cache_id, url) DO UPDATE SET
      public_keys = excluded.public_keys, priority = excluded.priority, declared = excluded.declared`);
  const remove = db.prepare('DELETE FROM upstreams WHERE id = ?');
  const declaredOf = db.prepare<[number], RawUpstream>('SELECT * FROM upstreams WHERE cache_id = ? AND declared = 1');

  const offerByHash = db.prepare<[number, string], RawOffer>(
    'SELECT * FROM upstream_offers WHERE cache_id = ? AND hash_part = ?',
  );
  const offerByFile = db.prepare<[number, string], RawOffer>(
    'SELECT * FROM upstream_offers WHERE cache_id = ? AND file_name = ? ORDER BY created_at DESC LIMIT 1',
  );
  const putOffer = db.prepare(`
    INSERT INTO upstream_offers (cache_id, hash_part, upstream_id, file_name, nar_url, narinfo, created_at)
    VALUES (@cacheId, @hashPart, @upstreamId, @fileName, @narUrl, @narinfo, @createdAt)
    ON CONFLICT (cache_id, hash_part) DO UPDATE SET upstream_id = excluded.upstream_id,
      file_name = excluded.file_name, nar_url = excluded.nar_url, narinfo = excluded.narinfo,
      created_at = excluded.created_at`);
  const removeOffer = db.prepare('DELETE FROM upstream_offers WHERE cache_id = ? AND hash_part = ?');
  const removeStaleOffers = db.prepare('DELETE FROM upstream_offers WHERE created_at < ?');

  function add(cacheId: number, upstream: NewUpstream, declared: boolean): UpstreamRow {
    upsert.run({
      cacheId,
      url: upstream.url,
      publicKeys: upstream.publicKeys.join(' '),
      priority: upstream.priority,
      declared: declared ? 1 : 0,
      createdAt: Date.now(),
    });
    return toUpstream(byUrl.get(cacheId, upstream.url)!);
  }

  return {
    /** In the order they are asked: priority, then the order they were added. */
    list(cacheId: number): UpstreamRow[] {
      return ofCache.all(cacheId).map(toUpstream);
    },
    all(): UpstreamRow[] {
      return all.all().map(toUpstream);
    },
    get(cacheId: number, url: string): UpstreamRow | undefined {
      const r = byUrl.get(cacheId, url);
      return r && toUpstream(r);
    },
    /** Adds an upstream, or updates the one with this URL (keys, priority, and who declared it). */
    add,
    remove(id: number): void {
      remove.run(id);
    },
    /**
     * Makes the config file's upstreams of a cache exactly `wanted`, in one transaction: its
     * earlier ones that are gone are removed; ones added by hand are left alone, unless the config
     * now names their URL, which makes them declared.
     */
    replaceDeclared: db.transaction((cacheId: number, wanted: NewUpstream[]): void => {
      const urls = new Set(wanted.map((u) => u.url));
      for (const old of declaredOf.all(cacheId)) if (!urls.has(old.url)) remove.run(old.id);
      for (const u of wanted) add(cacheId, u, true);
    }),

    offer(cacheId: number, hashPart: string): OfferRow | undefined {
      const r = offerByHash.get(cacheId, hashPart);
      return r && toOffer(r);
    },
    offerOfFile(cacheId: number, fileName: string): OfferRow | undefined {
      const r = offerByFile.get(cacheId, fileName);
      return r && toOffer(r);
    },
    putOffer(offer: OfferRow): void {
      putOffer.run(offer);
    },
    removeOffer(cacheId: number, hashPart: string): void {
      removeOffer.run(cacheId, hashPart);
    },
    /** Forgets offers made before `olderThan` (ms); returns how many. */
    removeStaleOffers(olderThan: number): number {
      return removeStaleOffers.run(olderThan).changes;
    },
  };
}

export type UpstreamsRepo = ReturnType<typeof createUpstreamsRepo>;
