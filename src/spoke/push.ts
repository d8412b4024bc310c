import { createApiClient } from '../push/api-client.js';
import { parseCacheUrl } from '../push/cache-url.js';
import { PushFailure } from '../push/retry.js';
import { okStatus, responseText, retryableStatus, type CacheHttp } from './cache-http.js';
import type { ServeConnection } from './serve-connection.js';

/** A push or upload that failed; `retryable` is false for answers that another try cannot change. */
export class PushError extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable = true) {
    super(message);
    this.name = 'PushError';
    this.retryable = retryable;
  }
}

/**
 * Pushes a build's outputs to the cache with the native upload: their metadata and NARs come
 * from the build's own `nix-store --serve` connection, so no Nix process is started. An output
 * that refers to another output is pushed after it. (Every other reference is an input, which
 * came from the cache.)
 */
export async function pushOutputs(
  conn: ServeConnection,
  http: CacheHttp,
  cacheUrl: string,
  token: string,
  outputs: Record<string, string>,
  signal?: AbortSignal,
): Promise<void> {
  const paths = [...new Set(Object.values(outputs))];
  if (paths.length === 0) return;
  const infos = await conn.queryPathInfos(paths);
  const known = new Set(infos.map((i) => i.path));
  const lacking = paths.filter((p) => !known.has(p));
  if (lacking.length > 0) throw new PushError(`the build did not produce ${lacking.join(', ')}`, false);
  const client = createApiClient(parseCacheUrl(cacheUrl), `Bearer ${token}`, {}, { agent: http.agentFor(cacheUrl) });
  try {
    // No missing-paths round trip first: a build's outputs are new to the cache but for a
    // retry, and an upload of a path the cache has is answered at once (its body ignored).
    const pending = [...infos];
    while (pending.length > 0) {
      const i = pending.findIndex(
        (info) => !info.references.some((r) => r !== info.path && pending.some((p) => p.path === r)),
      );
      const [info] = pending.splice(Math.max(i, 0), 1);
      const pathInfo = {
        path: info!.path,
        narHash: info!.narHash,
        narSize: info!.narSize,
        references: info!.references,
        deriver: info!.deriver,
        ca: info!.ca,
        signatures: info!.signatures,
      };
      await client
        .uploadPath(
          pathInfo,
          () => undefined,
          signal,
          () => conn.dumpStorePath(info!.path, info!.narSize),
        )
        .catch(rethrow);
    }
  } finally {
    client.close();
  }
}

/** The push library's failures as the spoke's: transient ones are worth another try. */
function rethrow(err: unknown): never {
  if (err instanceof PushFailure) throw new PushError(`pushing outputs failed: ${err.message}`, err.transient);
  throw err;
}

/** `PUT <cache>/log/<drv basename>` with the token, as text/plain. */
export async function uploadLog(
  http: CacheHttp,
  cacheUrl: string,
  drvBasename: string,
  token: string,
  body: Buffer,
  signal?: AbortSignal,
): Promise<string> {
  const path = `log/${drvBasename}`;
  let status: number;
  let text: string;
  try {
    const res = await http.request('PUT', `${cacheUrl}/${path}`, {
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain; charset=utf-8' },
      body,
      signal,
    });
    status = res.statusCode ?? 0;
    text = await responseText(res, 300);
  } catch (err) {
    throw new PushError(`uploading the log to ${cacheUrl} failed: ${(err as Error).message}`);
  }
  if (!okStatus(status)) {
    throw new PushError(
      `uploading the log to ${cacheUrl} failed: HTTP ${status} ${text}`.trim(),
      retryableStatus(status),
    );
  }
  return path;
}
