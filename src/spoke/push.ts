import type { SpokeNixConfig } from './nix-config.js';
import { lastNixError } from './failures.js';
import { runProcess } from './run-process.js';

/** A push or upload that failed; `retryable` is false for answers that another try cannot change. */
export class PushError extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable = true) {
    super(message);
    this.name = 'PushError';
    this.retryable = retryable;
  }
}

const PUSH_TIMEOUT_MS = 2 * 3600 * 1000;

/**
 * Pushes store paths (and their closure; paths the cache has are skipped) to the cache with the
 * stock client: `nix copy --to '<cache>?compression=zstd'`. narhub verifies and signs them.
 */
export async function pushPaths(
  nix: SpokeNixConfig,
  cacheUrl: string,
  trustedPublicKeys: readonly string[],
  paths: readonly string[],
  signal?: AbortSignal,
): Promise<void> {
  if (paths.length === 0) return;
  const from = nix.store === 'auto' ? [] : ['--from', nix.store];
  const res = await runProcess(
    'nix',
    ['copy', ...from, '--to', `${cacheUrl}?compression=zstd`, ...nix.options(cacheUrl, trustedPublicKeys), ...paths],
    { env: nix.env, signal, timeoutMs: PUSH_TIMEOUT_MS },
  );
  if (res.killed === 'aborted') throw new PushError('push was stopped', false);
  if (res.code !== 0) {
    throw new PushError(`pushing outputs to ${cacheUrl} failed: ${lastNixError(res.stderr) ?? `nix copy exited with ${res.code ?? res.signal}`}`);
  }
}

/** `PUT <cache>/log/<drv basename>` with the token, as text/plain. */
export async function uploadLog(cacheUrl: string, drvBasename: string, token: string, body: Buffer, signal?: AbortSignal): Promise<string> {
  const path = `log/${drvBasename}`;
  let res: Response;
  try {
    res = await fetch(`${cacheUrl}/${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain; charset=utf-8' },
      body,
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(300_000)]) : AbortSignal.timeout(300_000),
    });
  } catch (err) {
    throw new PushError(`uploading the log to ${cacheUrl} failed: ${(err as Error).message}`);
  }
  const text = (await res.text().catch(() => '')).slice(0, 300);
  if (!res.ok) {
    const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
    throw new PushError(`uploading the log to ${cacheUrl} failed: HTTP ${res.status} ${text}`.trim(), retryable);
  }
  return path;
}
