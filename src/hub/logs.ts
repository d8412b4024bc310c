import type { Redis } from 'ioredis';
import { logStreamKey } from '../protocol/build-jobs.js';

type StreamEntries = [string, [string, string[]][]][] | null;

function chunksOf(fields: string[]): { data: string[]; eof: boolean } {
  const data: string[] = [];
  let eof = false;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'data') data.push(fields[i + 1]!);
    else if (fields[i] === 'eof') eof = true;
  }
  return { data, eof };
}

/** What a spoke has streamed of a build's log so far, and whether the stream has ended. */
export async function readLogStream(
  redis: Redis,
  drvHash: string,
): Promise<{ exists: boolean; text: string; eof: boolean }> {
  const entries = (await redis.xrange(logStreamKey(drvHash), '-', '+')) as [string, string[]][];
  let text = '';
  let eof = false;
  for (const [, fields] of entries) {
    const c = chunksOf(fields);
    text += c.data.join('');
    eof ||= c.eof;
  }
  return { exists: entries.length > 0, text, eof };
}

/**
 * Follows a build's live log (`XREAD BLOCK` on its stream) from the start until the spoke writes
 * the end-of-file entry, `isOver()` says the build ended without one, or `signal` aborts. Needs a
 * connection of its own (blocking reads hold it), which it disconnects when done.
 */
export async function* followLogStream(
  redis: Redis,
  drvHash: string,
  opts: { signal: AbortSignal; isOver(): boolean },
): AsyncGenerator<string> {
  const key = logStreamKey(drvHash);
  let last = '0-0';
  const onAbort = () => redis.disconnect();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  try {
    while (!opts.signal.aborted) {
      let res: StreamEntries;
      try {
        res = (await redis.xread('COUNT', 500, 'BLOCK', 2_000, 'STREAMS', key, last)) as StreamEntries;
      } catch (err) {
        if (opts.signal.aborted) return;
        throw err;
      }
      if (!res) {
        if (opts.isOver()) return;
        continue;
      }
      for (const [, entries] of res) {
        for (const [id, fields] of entries) {
          last = id;
          const c = chunksOf(fields);
          for (const d of c.data) yield d;
          if (c.eof) return;
        }
      }
    }
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    redis.disconnect();
  }
}
