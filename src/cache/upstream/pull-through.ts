import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isNarhubError, NarhubError } from '../../errors.js';
import type { NarInfo } from '../../nix/narinfo.js';
import { createByteLimit } from '../../io/byte-limit.js';
import { decompressBounded, type Compression } from '../../io/compression.js';
import { mapLimit } from '../../io/map-limit.js';
import type { CacheRow } from '../../db/caches-repo.js';
import type { NarRow, NarsRepo } from '../../db/nars-repo.js';
import type { PathsRepo } from '../../db/paths-repo.js';
import type { UpstreamRow, UpstreamsRepo } from '../../db/upstreams-repo.js';
import type { BlobRead, BlobStore } from '../../storage/blob-store.js';
import type { NarIngest } from '../nar-ingest.js';
import type { NarFacts } from '../narinfo-commit.js';
import { acceptUpstreamNarinfo, type Offer } from './offer.js';
import { Spool } from './spool.js';
import { UpstreamTransportError, readUpstreamBody, upstreamGet } from './upstream-http.js';
import type { UpstreamStats } from './upstream-stats.js';

export interface UpstreamSettings {
  /** A narinfo miss asks the upstreams for at most this long, then answers 404. */
  narinfoTimeoutMs: number;
  /** A NAR download fails after this long without a byte (connecting and the headers included). */
  narTimeoutMs: number;
  /** A NAR download fails when fewer bytes a second than this arrive, on average, over a narTimeoutMs window. */
  narMinRate: number;
  /** A NAR download fails after this long in all, however it goes. */
  narMaxTimeMs: number;
  /** How long a miss of every upstream, or an upstream that failed, is remembered. */
  negativeTtlMs: number;
  /** How long an offered narinfo whose NAR nobody fetched is kept. */
  offerTtlMs: number;
  /** Largest NAR file accepted from an upstream. */
  maxNarSize: number;
}

export const DEFAULT_UPSTREAM_SETTINGS: UpstreamSettings = {
  narinfoTimeoutMs: 5_000,
  narTimeoutMs: 30_000,
  narMinRate: 16 * 1024,
  narMaxTimeMs: 6 * 3_600_000,
  negativeTtlMs: 30_000,
  offerTtlMs: 30 * 86_400_000,
  maxNarSize: 64 * 1024 ** 3,
};

/** A NAR for a client: streaming from an upstream as it arrives, or read from storage. */
export type UpstreamNar =
  | { kind: 'streaming'; stream: Readable; size: number | undefined }
  | { kind: 'stored'; read: BlobRead };

export interface PullThroughLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** Upstream narinfos are small; a closure of thousands of references still fits. */
const MAX_NARINFO_BYTES = 4 * 1024 * 1024;
/** Downloads of references that no client waits for, at once per process. */
const BACKGROUND_DOWNLOADS = 4;
/** References looked up and fetched at once per path. */
const REFERENCE_CONCURRENCY = 8;
/** Paths whose misses are remembered at most. */
const MAX_NEGATIVE_ENTRIES = 100_000;
/** What Nix treats as "not in this cache". */
const MISS_STATUSES = new Set([404, 410, 403]);
const NARINFO_ENCODINGS: Record<string, Compression> = {
  br: 'br',
  gzip: 'gzip',
  zstd: 'zstd',
  xz: 'xz',
  bzip2: 'bzip2',
};

interface Download {
  /** The file the download is written to, once it started. */
  spool: Promise<Spool>;
  /** The NAR, verified and stored (pending until its path is committed). */
  stored: Promise<NarRow>;
  /** Starts it now if it waits for a background slot (a client asked for it). */
  start(): void;
}

interface Fill {
  download: Download | undefined;
  /** The path committed (its NAR stored, its references committed first). */
  done: Promise<void>;
}

/**
 * Pull-through caching: what a cache does on a miss when it has upstreams (docs/architecture.md,
 * Upstreams). A narinfo miss asks the upstreams in priority order, within `narinfoTimeoutMs`
 * in all; the first narinfo signed by one of its upstream's keys becomes an *offer*, recorded
 * in the database and served as narhub's own narinfo (its URL, its signature, the upstream's
 * kept). A GET of the offered NAR downloads it once into a spool file that the ingest (the same
 * verification as any upload: file hash, NAR grammar, NarHash, NarSize) and every client asking
 * meanwhile read as it grows; clients get the end only once it verified. The path is committed
 * (and so served locally from then on) once its references are committed too, fetched the same
 * way, so the closure invariant holds. Misses and failing upstreams are remembered for
 * `negativeTtlMs`; a failure is never an error for a narinfo, only a miss.
 */
export function createPullThrough(deps: {
  upstreams: UpstreamsRepo;
  nars: NarsRepo;
  paths: Pick<PathsRepo, 'get'>;
  store: BlobStore;
  ingestNar: NarIngest;
  /** The cache's own key names: an upstream's signature under one of them is never kept. */
  ownKeyNames(cache: CacheRow): ReadonlySet<string>;
  render(cache: CacheRow, info: NarInfo, nar: NarFacts): { text: string };
  checkAgainstNar(info: NarInfo, nar: NarFacts): void;
  /** Holds a path and its references against GC until the release is called (`narinfo-commit.ts`). */
  hold(cache: CacheRow, hashPart: string, info: NarInfo): () => void;
  /** Commits a path whose NAR is stored and whose references are committed. */
  commit(cache: CacheRow, hashPart: string, info: NarInfo): Promise<unknown>;
  settings: UpstreamSettings;
  stats: UpstreamStats;
  /** Where downloads are spooled; a fresh temporary directory when unset. */
  spoolDir?: string | undefined;
}) {
  const { upstreams, nars, paths, store, settings, stats } = deps;
  let logger: PullThroughLogger = { warn: () => undefined, info: () => undefined };
  let spoolDir: string | undefined;
  let closing = false;
  const closed = new AbortController();

  const lookups = new Map<string, Promise<Offer | undefined>>();
  const misses = new Map<string, number>();
  const downUntil = new Map<number, number>();
  const downloads = new Map<string, Download>();
  const fills = new Map<string, Fill>();
  const slots = { free: BACKGROUND_DOWNLOADS, waiting: [] as (() => void)[] };

  function spoolPath(offer: Offer): string {
    if (spoolDir === undefined) {
      if (deps.spoolDir === undefined) spoolDir = mkdtempSync(join(tmpdir(), 'narhub-spool-'));
      else {
        mkdirSync(deps.spoolDir, { recursive: true, mode: 0o700 });
        // Left by a process that stopped mid-download: nothing reads them any more.
        for (const f of readdirSync(deps.spoolDir)) rmSync(join(deps.spoolDir, f), { force: true });
        spoolDir = deps.spoolDir;
      }
    }
    return join(spoolDir, `${offer.cacheId}-${offer.fileName}-${randomBytes(6).toString('hex')}`);
  }

  // Narinfos ------------------------------------------------------------------------------

  function rememberMiss(key: string): void {
    if (misses.size >= MAX_NEGATIVE_ENTRIES) misses.delete(misses.keys().next().value!);
    misses.set(key, Date.now() + settings.negativeTtlMs);
  }

  function rememberedMiss(key: string): boolean {
    const until = misses.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    misses.delete(key);
    return false;
  }

  function offerOf(cache: CacheRow, upstream: UpstreamRow, hashPart: string, text: string): Offer {
    const offer = acceptUpstreamNarinfo(upstream, cache.id, hashPart, text, deps.ownKeyNames(cache));
    const largest = Math.max(offer.fileSize ?? 0, offer.info.narSize);
    if (largest > settings.maxNarSize)
      throw new NarhubError(
        'NARINFO_INVALID',
        `its NAR (${offer.info.narSize} bytes, file ${offer.fileSize ?? 'of unknown size'}) exceeds maxNarSize ` +
          `(${settings.maxNarSize} bytes)`,
      );
    return offer;
  }

  /** An offer made earlier and not yet committed, if its upstream is still trusted with it. */
  function storedOffer(cache: CacheRow, list: UpstreamRow[], hashPart: string): Offer | undefined {
    const row = upstreams.offer(cache.id, hashPart);
    if (row === undefined) return undefined;
    const upstream = list.find((u) => u.id === row.upstreamId);
    if (upstream !== undefined && row.createdAt > Date.now() - settings.offerTtlMs) {
      try {
        return offerOf(cache, upstream, hashPart, row.narinfo);
      } catch {
        // its keys changed since: ask again
      }
    }
    upstreams.removeOffer(cache.id, hashPart);
    return undefined;
  }

  async function fetchNarinfo(upstream: UpstreamRow, hashPart: string, timeoutMs: number): Promise<string | undefined> {
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), closed.signal]);
    const response = await upstreamGet(`${upstream.url}/${hashPart}.narinfo`, { signal, idleTimeoutMs: timeoutMs });
    const status = response.statusCode ?? 0;
    if (MISS_STATUSES.has(status)) {
      response.resume();
      return undefined;
    }
    if (status !== 200) {
      response.resume();
      throw new UpstreamTransportError(`answered ${status}`);
    }
    const encoding = response.headers['content-encoding'];
    if (encoding === undefined || encoding === 'identity')
      return (await readUpstreamBody(response, MAX_NARINFO_BYTES)).toString('utf8');
    const compression = NARINFO_ENCODINGS[encoding];
    if (compression === undefined) {
      response.resume();
      throw new NarhubError('NARINFO_INVALID', `unknown Content-Encoding ${JSON.stringify(encoding)}`);
    }
    const body = await readUpstreamBody(response, MAX_NARINFO_BYTES);
    return (await decompressBounded(body, compression, MAX_NARINFO_BYTES)).toString('utf8');
  }

  /** Asks each upstream in turn, within the one deadline; the first acceptable answer wins. */
  async function ask(cache: CacheRow, list: UpstreamRow[], hashPart: string): Promise<Offer | undefined> {
    const deadline = Date.now() + settings.narinfoTimeoutMs;
    let definitive = true;
    for (const upstream of list) {
      if ((downUntil.get(upstream.id) ?? 0) > Date.now()) {
        definitive = false;
        continue;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0 || closing) {
        definitive = false;
        break;
      }
      const counts = stats.of(cache.name, upstream.url);
      try {
        const text = await fetchNarinfo(upstream, hashPart, remaining);
        if (text === undefined) {
          counts.misses++;
          continue;
        }
        const offer = offerOf(cache, upstream, hashPart, text);
        counts.hits++;
        upstreams.putOffer({
          cacheId: cache.id,
          hashPart,
          upstreamId: upstream.id,
          fileName: offer.fileName,
          narUrl: offer.narUrl,
          narinfo: text,
          createdAt: Date.now(),
        });
        return offer;
      } catch (err) {
        counts.errors++;
        if (err instanceof UpstreamTransportError) {
          // Down or slow: skipped for a while, so it costs the next misses nothing.
          downUntil.set(upstream.id, Date.now() + settings.negativeTtlMs);
          definitive = false;
        }
        logger.warn(
          { cache: cache.name, upstream: upstream.url, hashPart, reason: (err as Error).message },
          'upstream narinfo refused',
        );
      }
    }
    if (definitive) rememberMiss(`${cache.id}/${hashPart}`);
    return undefined;
  }

  /** The offer for a path the cache lacks, or undefined; concurrent lookups of a path share one. */
  function lookup(cache: CacheRow, hashPart: string): Promise<Offer | undefined> {
    const key = `${cache.id}/${hashPart}`;
    const running = lookups.get(key);
    if (running !== undefined) return running;
    const list = upstreams.list(cache.id);
    if (list.length === 0) return Promise.resolve(undefined);
    const stored = storedOffer(cache, list, hashPart);
    if (stored !== undefined) return Promise.resolve(stored);
    if (rememberedMiss(key)) return Promise.resolve(undefined);
    const asked = ask(cache, list, hashPart).finally(() => lookups.delete(key));
    lookups.set(key, asked);
    return asked;
  }

  function offeredFacts(offer: Offer): NarFacts {
    return {
      fileName: offer.fileName,
      compression: offer.info.compression,
      fileHash: offer.info.fileHash!,
      // Unknown only for a compressed NAR whose narinfo has no FileSize: then the line is left out.
      fileSize: offer.fileSize as number,
      narHash: offer.info.narHash,
      narSize: offer.info.narSize,
    };
  }

  // NARs ------------------------------------------------------------------------------------

  /**
   * What the clients reading a failed download get: 502 with the reason when nothing was sent
   * yet (the error handler's answer), else the transfer breaks off.
   */
  function upstreamFailed(offer: Offer, err: unknown): NarhubError {
    if (isNarhubError(err) && err.code === 'UPSTREAM_FAILED') return err;
    const reason = err instanceof Error ? err.message : String(err);
    return new NarhubError('UPSTREAM_FAILED', `${offer.fileName} from ${offer.upstream.url}: ${reason}`, {
      cause: err,
    });
  }

  /** A stored NAR file this offer can use as it is: the same bytes, verified. */
  function localNar(cache: CacheRow, offer: Offer): NarRow | undefined {
    const row = nars.get(cache.id, offer.fileName);
    if (row === undefined) return undefined;
    try {
      deps.checkAgainstNar(offer.info, row);
      return row;
    } catch {
      return undefined;
    }
  }

  async function discardPending(cache: CacheRow, fileName: string): Promise<void> {
    const row = nars.get(cache.id, fileName);
    if (row?.state !== 'pending' || !nars.removePending(row)) return;
    await store.delete(row.storageKey);
    if (row.listingKey) await store.delete(row.listingKey);
  }

  function takeSlot(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        slots.free--;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          slots.free++;
          slots.waiting.shift()?.();
        });
      };
      if (slots.free > 0) grant();
      else slots.waiting.push(grant);
    });
  }

  /** Downloads, verifies and stores the offer's NAR file. */
  async function transfer(cache: CacheRow, offer: Offer, spool: Spool): Promise<NarRow> {
    const counts = stats.of(cache.name, offer.upstream.url);
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, closed.signal]);
    const limit = offer.fileSize ?? settings.maxNarSize;
    // An upstream that trickles (a byte every few seconds) never trips the idle timeout: the
    // download must also keep a least rate, and end within a total time.
    const failAfter = setTimeout(
      () =>
        stop.abort(
          new UpstreamTransportError(`took longer than upstream.narMaxTime (${settings.narMaxTimeMs / 1000} s)`),
        ),
      settings.narMaxTimeMs,
    );
    let received = 0;
    let rateCheck: NodeJS.Timeout | undefined;
    const downloaded = (async () => {
      const response = await upstreamGet(offer.narUrl, { signal, idleTimeoutMs: settings.narTimeoutMs });
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        response.resume();
        // Gone from the upstream: the offer is stale, and the next narinfo GET asks again.
        if (MISS_STATUSES.has(status)) upstreams.removeOffer(cache.id, offer.hashPart);
        throw new UpstreamTransportError(`answered ${status} for ${offer.narUrl}`);
      }
      const declared = response.headers['content-length'];
      if (declared !== undefined && offer.fileSize !== undefined && Number(declared) !== offer.fileSize) {
        response.resume();
        throw new UpstreamTransportError(`sends ${declared} bytes for a NAR file of ${offer.fileSize}`);
      }
      const encoding = response.headers['content-encoding'];
      if (encoding !== undefined && encoding !== 'identity') {
        response.resume();
        throw new UpstreamTransportError(`sends the NAR with Content-Encoding ${encoding}`);
      }
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          counts.bytes += chunk.length;
          received += chunk.length;
          callback(null, chunk);
        },
      });
      if (settings.narMinRate > 0) {
        const least = Math.ceil((settings.narMinRate * settings.narTimeoutMs) / 1000);
        let before = 0;
        rateCheck = setInterval(() => {
          const got = received - before;
          before = received;
          const window = `${settings.narTimeoutMs / 1000} s`;
          const rule = `upstream.narMinRate (${settings.narMinRate} bytes/s)`;
          if (got < least) stop.abort(new UpstreamTransportError(`sent ${got} bytes in ${window}, under ${rule}`));
        }, settings.narTimeoutMs);
      }
      await pipeline(response, counter, createByteLimit(limit), spool.writable(), { signal });
      if (offer.fileSize !== undefined && spool.bytesWritten !== offer.fileSize)
        throw new UpstreamTransportError(`sent ${spool.bytesWritten} of ${offer.fileSize} bytes`);
      spool.finish();
    })().finally(() => {
      clearTimeout(failAfter);
      clearInterval(rateCheck);
    });
    // A download the ingest stopped failed for the ingest's reason (a hash that does not match).
    downloaded.catch((err: unknown) =>
      spool.fail(upstreamFailed(offer, stop.signal.aborted ? stop.signal.reason : err)),
    );
    const reader = spool.reader(false);
    if (reader === undefined) throw new UpstreamTransportError('the download failed before it started');
    // The file is bounded by the download's limit; maxSize bounds the NAR it decodes to.
    const ingested = deps.ingestNar(cache, offer.fileName, reader, { maxSize: settings.maxNarSize });
    ingested.catch((err: unknown) => stop.abort(err));
    const [download, ingest] = await Promise.allSettled([downloaded, ingested]);
    try {
      // Stopped (too slow, too long, or by the ingest): the reason it was stopped for.
      if (download.status === 'rejected') throw stop.signal.aborted ? stop.signal.reason : download.reason;
      if (ingest.status === 'rejected') throw ingest.reason;
      deps.checkAgainstNar(offer.info, ingest.value);
      // Verified: the clients reading along may have the end now.
      spool.release();
      return ingest.value;
    } catch (err) {
      counts.errors++;
      // Verified bytes under their own name but not the narinfo's: not kept either.
      if (ingest.status === 'fulfilled') await discardPending(cache, offer.fileName);
      throw err;
    }
  }

  function startDownload(cache: CacheRow, offer: Offer, forClient: boolean): Download {
    const key = `${cache.id}/${offer.fileName}`;
    const running = downloads.get(key);
    if (running !== undefined) {
      if (forClient) running.start();
      return running;
    }
    let start!: () => void;
    const started = new Promise<void>((resolve) => {
      start = resolve;
    });
    let spoolReady!: (spool: Spool) => void;
    let spoolFailed!: (err: unknown) => void;
    const spool = new Promise<Spool>((resolve, reject) => {
      spoolReady = resolve;
      spoolFailed = reject;
    });
    spool.catch(() => undefined);
    const stored = (async () => {
      let release: (() => void) | undefined;
      if (!forClient) {
        const slot = takeSlot();
        const granted = await Promise.race([slot.then((r) => ({ release: r })), started.then(() => undefined)]);
        if (granted !== undefined) release = granted.release;
        // A client asked meanwhile and does not wait for a slot; the slot goes back once granted.
        else void slot.then((r) => r());
      }
      let file: Spool | undefined;
      try {
        file = await Spool.create(spoolPath(offer), offer.fileSize);
        spoolReady(file);
        return await transfer(cache, offer, file);
      } catch (err) {
        spoolFailed(err);
        file?.fail(upstreamFailed(offer, err));
        throw err;
      } finally {
        release?.();
        await file?.dispose();
      }
    })();
    const download: Download = { spool, stored, start };
    if (forClient) start();
    downloads.set(key, download);
    stored.then(
      () => downloads.delete(key),
      () => downloads.delete(key),
    );
    return download;
  }

  /** What a client reads of a download: the spool while it lasts, else the stored file. */
  async function openDownload(download: Download): Promise<UpstreamNar> {
    const spool = await download.spool;
    const stream = spool.reader(true);
    if (stream !== undefined) return { kind: 'streaming', stream, size: spool.expectedSize };
    return openStored(await download.stored);
  }

  async function openStored(row: NarRow): Promise<UpstreamNar> {
    const read = await store.get(row.storageKey);
    if (read === null) throw new NarhubError('NOT_FOUND', `NAR ${row.fileName} is missing from storage`);
    return { kind: 'stored', read };
  }

  // Paths -----------------------------------------------------------------------------------

  function present(cache: CacheRow, basenameOfPath: string): boolean {
    return paths.get(cache.id, basenameOfPath.slice(0, 32))?.name === basenameOfPath.slice(33);
  }

  /** Commits every path of `basenames` the cache lacks, from its upstreams, with their closures. */
  async function fetchPaths(cache: CacheRow, basenames: readonly string[]): Promise<void> {
    const missing = [...new Set(basenames)].filter((b) => !present(cache, b));
    await mapLimit(missing, REFERENCE_CONCURRENCY, async (ref) => {
      const offer = await lookup(cache, ref.slice(0, 32));
      if (offer === undefined || basename(offer.info.storePath) !== ref)
        throw new NarhubError('REFERENCE_MISSING', `${ref} is in no upstream of cache ${cache.name}`);
      await fill(cache, offer, false).done;
    });
  }

  /** Brings an offered path into the cache: its NAR, then its references, then the commit. */
  function fill(cache: CacheRow, offer: Offer, forClient: boolean): Fill {
    const key = `${cache.id}/${offer.hashPart}`;
    const running = fills.get(key);
    if (running !== undefined) {
      if (forClient) running.download?.start();
      return running;
    }
    const local = localNar(cache, offer);
    const download = local === undefined ? startDownload(cache, offer, forClient) : undefined;
    const done = (async () => {
      const self = basename(offer.info.storePath);
      // GC leaves the references alone from their commits until this path's.
      const release = deps.hold(cache, offer.hashPart, offer.info);
      try {
        if (download !== undefined) await download.stored;
        await fetchPaths(
          cache,
          offer.info.references.filter((r) => r !== self),
        );
        if (!present(cache, self)) await deps.commit(cache, offer.hashPart, offer.info);
      } finally {
        release();
      }
      upstreams.removeOffer(cache.id, offer.hashPart);
      logger.info({ cache: cache.name, upstream: offer.upstream.url, path: self }, 'path fetched from upstream');
    })();
    const entry: Fill = { download, done };
    fills.set(key, entry);
    done.then(
      () => fills.delete(key),
      (err: unknown) => {
        fills.delete(key);
        if (!closing)
          logger.warn(
            {
              cache: cache.name,
              upstream: offer.upstream.url,
              hashPart: offer.hashPart,
              reason: (err as Error).message,
            },
            'fetching a path from upstream failed',
          );
      },
    );
    return entry;
  }

  return {
    /** Sets where failures and fetched paths are logged (`narhub serve`'s logger). */
    setLogger(l: PullThroughLogger): void {
      logger = l;
    },
    /** Whether the cache has upstreams at all. */
    enabled(cache: CacheRow): boolean {
      return upstreams.list(cache.id).length > 0;
    },
    /**
     * narhub's narinfo for a path the cache lacks but one of its upstreams has, or undefined.
     * Never throws for an upstream's sake: whatever goes wrong there is a miss.
     */
    async narinfo(cache: CacheRow, hashPart: string): Promise<string | undefined> {
      const offer = await lookup(cache, hashPart);
      return offer && deps.render(cache, offer.info, offeredFacts(offer)).text;
    },
    /**
     * The offered NAR file `fileName`, or undefined when no offer names it. Starts its download
     * (or joins the one running), and the fill of its path behind it.
     */
    async nar(cache: CacheRow, fileName: string): Promise<UpstreamNar | undefined> {
      try {
        return await openNar(cache, fileName);
      } catch (err) {
        if (isNarhubError(err) && err.code === 'NOT_FOUND') throw err;
        throw new NarhubError(
          'UPSTREAM_FAILED',
          `fetching ${fileName} from an upstream failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    },
    /**
     * Fetches what an upload refers to but the cache lacks, so that its commit can go ahead
     * (Nix checks existence with narinfo GETs, which upstreams answer, and then skips uploading
     * those paths). Fails with REFERENCE_MISSING naming a path no upstream has.
     */
    fetchPaths,
    /**
     * Which of these paths (basenames) the cache lacks and one of its upstreams has, signed by a
     * key it is trusted under: what a pusher need not upload. The lookups are the narinfo miss's
     * own (offers recorded, misses remembered), so a commit needing them fetches without asking again.
     */
    async offeredAmong(cache: CacheRow, basenames: readonly string[]): Promise<string[]> {
      const served: string[] = [];
      await mapLimit([...new Set(basenames)], REFERENCE_CONCURRENCY, async (name) => {
        if (present(cache, name)) return;
        const offer = await lookup(cache, name.slice(0, 32));
        if (offer !== undefined && basename(offer.info.storePath) === name) served.push(name);
      });
      return served;
    },
    /** Forgets offers nobody fetched within the offer TTL; how many. */
    sweepOffers(): number {
      return upstreams.removeStaleOffers(Date.now() - settings.offerTtlMs);
    },
    /** Stops every download (their clients see a broken transfer) and waits for the fills to end. */
    async close(): Promise<void> {
      closing = true;
      closed.abort(new UpstreamTransportError('narhub is shutting down'));
      await Promise.allSettled([...fills.values()].map((f) => f.done));
      await Promise.allSettled([...downloads.values()].map((d) => d.stored));
      if (spoolDir !== undefined && deps.spoolDir === undefined) rmSync(spoolDir, { recursive: true, force: true });
    },
  };

  async function openNar(cache: CacheRow, fileName: string): Promise<UpstreamNar | undefined> {
    if (closing) return undefined;
    const running = downloads.get(`${cache.id}/${fileName}`);
    if (running !== undefined) {
      running.start();
      return openDownload(running);
    }
    const row = upstreams.offerOfFile(cache.id, fileName);
    if (row === undefined) return undefined;
    const offer = storedOffer(cache, upstreams.list(cache.id), row.hashPart);
    if (offer === undefined || offer.fileName !== fileName) return undefined;
    const { download } = fill(cache, offer, true);
    if (download !== undefined) return openDownload(download);
    const local = localNar(cache, offer);
    return local === undefined ? undefined : openStored(local);
  }
}
