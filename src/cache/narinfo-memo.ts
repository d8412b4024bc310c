import type { PathsRepo } from '../db/paths-repo.js';

/** How long a narinfo read from the database may be served from memory. */
export const NARINFO_MEMO_MS = 1000;

/** Most narinfo text (in characters) the memo holds; beyond it, reads go to the database. */
const NARINFO_MEMO_MAX_CHARS = 16 * 1024 * 1024;

/** The repository's methods that change nothing; every other one forgets the memo. */
const READS: ReadonlySet<string> = new Set<keyof PathsRepo>([
  'get',
  'narinfo',
  'references',
  'signatures',
  'count',
  'presentAmong',
  'byNar',
  'idsBetween',
]);

/**
 * The paths repository with narinfo reads memoized. A narinfo GET is the hottest request a
 * cache serves (Nix asks for every path it might substitute), and its one SQLite read costs
 * about as much as the rest of the request (a read transaction's lock syscalls included).
 *
 * Only hits are kept, so a path committed a moment ago serves at once. Any write through this
 * repository (signatures merged, a recompressed NAR switched in) forgets everything, so this
 * process never serves an outdated text; a change made by another process (`narhub reindex`
 * adding signatures) is served within NARINFO_MEMO_MS, while clients are told to keep a
 * narinfo for an hour anyway. The memo is dropped whole every NARINFO_MEMO_MS, which also
 * bounds its memory along with NARINFO_MEMO_MAX_CHARS. What removes paths by another way (GC's
 * own repository) calls `forgetNarinfos` once it has, before it deletes their blobs, so a
 * removed narinfo is never served beside a NAR that is already gone.
 */
export function memoizeNarinfos(paths: PathsRepo, now: () => number = Date.now): MemoizedPathsRepo {
  // Per cache, then per hash part: no key string is built per lookup.
  let memo = new Map<number, Map<string, string>>();
  let chars = 0;
  let since = now();
  const forget = (): void => {
    memo = new Map();
    chars = 0;
    since = now();
  };

  const wrapped: Record<string, unknown> = { ...paths };
  for (const [name, fn] of Object.entries(paths)) {
    if (READS.has(name) || typeof fn !== 'function') continue;
    wrapped[name] = (...args: unknown[]): unknown => {
      try {
        return (fn as (...a: unknown[]) => unknown)(...args);
      } finally {
        forget();
      }
    };
  }
  wrapped.narinfo = (cacheId: number, hashPart: string): string | undefined => {
    if (now() - since >= NARINFO_MEMO_MS) forget();
    let texts = memo.get(cacheId);
    let text = texts?.get(hashPart);
    if (text === undefined) {
      text = paths.narinfo(cacheId, hashPart);
      if (text !== undefined && chars + text.length <= NARINFO_MEMO_MAX_CHARS) {
        if (texts === undefined) memo.set(cacheId, (texts = new Map()));
        texts.set(hashPart, text);
        chars += text.length;
      }
    }
    return text;
  };
  wrapped.forgetNarinfos = forget;
  return wrapped as MemoizedPathsRepo;
}

export type MemoizedPathsRepo = PathsRepo & { forgetNarinfos(): void };
