import type { CacheRow, CachesRepo } from '../db/caches-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import { formatNarInfo, parseNarInfo } from '../nix/narinfo.js';
import { signNarInfo } from '../nix/signing.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { CacheRegistry } from './caches.js';
import type { PathCommit } from './narinfo-commit.js';
import { narInfoStorageKey } from './narinfo-commit.js';

/** Paths rewritten between two progress records. */
const BATCH = 200;
/** How often an idle rewriter looks for work another process (the admin CLI) asked for. */
const POLL_MS = 2_000;

export interface RewriteLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * The background rewrite of existing narinfos after a key change: every path gets a signature
 * by the active key and loses those of retired keys. Progress is recorded per key
 * (`pass_cursor`, a path id) after each batch, so it resumes where it stopped after a restart,
 * and is what `cache info` and the metrics show. A path is rewritten under the commit's
 * per-path lock, so a concurrent signature merge cannot write back the old text.
 */
export function createSignatureRewriter(deps: {
  store: BlobStore;
  caches: CachesRepo;
  paths: PathsRepo;
  registry: CacheRegistry;
  commit: PathCommit;
}) {
  const { store, caches, paths, registry, commit } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopping = false;
  let log: RewriteLog = { info: () => undefined, error: () => undefined };

  async function rewritePath(cache: CacheRow, hashPart: string): Promise<void> {
    const row = paths.get(cache.id, hashPart);
    if (!row) return;
    const info = parseNarInfo(row.narinfo);
    const retired = registry.retiredKeyNames(cache);
    const ownSig = signNarInfo(registry.signingKey(cache), info);
    const sigs = [...new Set([...info.sigs.filter((s) => !retired.has(s.slice(0, s.indexOf(':')))), ownSig])].sort();
    if (sigs.length === info.sigs.length && sigs.every((s, i) => s === [...info.sigs].sort()[i])) return;
    const text = formatNarInfo({ ...info, sigs });
    // The store first, as a commit does: it stays a complete cache whatever happens next.
    await store.put(narInfoStorageKey(cache.name, hashPart), Buffer.from(text), { contentType: 'text/x-nix-narinfo' });
    paths.setSignatures(row.id, sigs, text);
  }

  /** One batch of one cache with work; false when there was none. */
  async function step(): Promise<boolean> {
    const pending = caches.keysWithPass();
    if (pending.length === 0) return false;
    const cacheId = pending[0]!.cacheId;
    const mine = pending.filter((k) => k.cacheId === cacheId);
    const cache = registry.list().find((c) => c.id === cacheId);
    if (!cache) return false;
    const from = Math.min(...mine.map((k) => k.passCursor));
    const upTo = Math.max(...mine.map((k) => k.passTarget!));
    const batch = paths.idsBetween(cacheId, from, upTo, BATCH);
    const last = batch.length === 0 ? upTo : batch[batch.length - 1]!.id;
    await commit.exclusive(
      cache,
      batch.map((p) => p.hashPart),
      async () => {
        for (const p of batch) await rewritePath(cache, p.hashPart);
      },
    );
    caches.advancePass(cacheId, batch.length < BATCH ? upTo : last);
    if (batch.length < BATCH)
      log.info({ cache: cache.name, keys: mine.map((k) => k.name) }, 'narinfo rewrite complete');
    return true;
  }

  async function loop(): Promise<void> {
    try {
      while (!stopping && (await step())) await new Promise((r) => setImmediate(r));
    } catch (err) {
      log.error({ err }, 'narinfo rewrite failed; retrying');
    }
  }

  function schedule(): void {
    if (stopping) return;
    timer = setTimeout(() => {
      running = loop().finally(() => {
        running = undefined;
        schedule();
      });
    }, POLL_MS);
    timer.unref();
  }

  return {
    /** Runs until every key's rewrite is complete (the CLI, tests). */
    async runToCompletion(): Promise<void> {
      while (await step());
    },
    /** In `serve`: works whenever a key change asks for it, also one made by another process. */
    start(logger: RewriteLog): void {
      log = logger;
      stopping = false;
      running = loop().finally(() => {
        running = undefined;
        schedule();
      });
    },
    async stop(): Promise<void> {
      stopping = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
    },
  };
}
