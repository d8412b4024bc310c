import { spawn } from 'node:child_process';
import { parseStorePath } from '../nix/store-path.js';
import type { CacheLocation } from './cache-url.js';
import { storeArgs, type NixCommands, type PathInfo } from './closure.js';
import { PushFailure } from './retry.js';

/** Size of the pieces the NAR is sent in. */
const UPLOAD_CHUNK = 1024 * 1024;

/** What the server answers to a native upload. */
export interface UploadAnswer {
  created: boolean;
  stored: boolean;
  fileSize: number;
  narSize: number;
}

/** Connection-level failures (refused, reset, timed out…): the request may well work next time. */
function connectionFailure(err: unknown): PushFailure {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const detail = cause instanceof Error ? `${(cause as NodeJS.ErrnoException).code ?? cause.name}: ${cause.message}` : err instanceof Error ? err.message : String(err);
  return new PushFailure(`connection failed (${detail})`, true);
}

/** A non-2xx answer: transient for 5xx and 429, final for every other 4xx. */
async function answerFailure(res: Response): Promise<PushFailure> {
  let reason = '';
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string') reason = `${body.code}: ${String(body.message ?? '')}`;
  } catch {
    reason = text.trim().split('\n')[0]?.slice(0, 300) ?? '';
  }
  const transient = res.status >= 500 || res.status === 429;
  const header = res.headers.get('retry-after');
  const retryAfter = header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
  return new PushFailure(`HTTP ${res.status}${reason ? ` ${reason}` : ''}`, transient, retryAfter);
}

/** narhub's /api/v1 for one cache, over Node's own fetch. */
export function createApiClient(location: CacheLocation, authorization: string | undefined, nix: NixCommands = {}) {
  const api = `${location.base}/api/v1/caches/${encodeURIComponent(location.cache)}`;
  const headers = (extra: Record<string, string>): Record<string, string> => (authorization ? { ...extra, authorization } : extra);

  return {
    /** One attempt at asking which of `storePaths` the cache lacks. */
    async missingPaths(storePaths: string[]): Promise<string[]> {
      let res: Response;
      try {
        res = await fetch(`${api}/missing-paths`, {
          method: 'POST',
          headers: headers({ 'content-type': 'application/json', accept: 'application/json' }),
          body: JSON.stringify({ storePaths }),
        });
      } catch (err) {
        throw connectionFailure(err);
      }
      if (!res.ok) throw await answerFailure(res);
      const body = (await res.json()) as { missing?: unknown };
      if (!Array.isArray(body.missing)) throw new PushFailure('the server answered missing-paths without a "missing" list', false);
      return body.missing.filter((p): p is string => typeof p === 'string');
    },

    /**
     * One attempt at uploading a path: the metadata line, then `nix-store --dump PATH` streamed
     * straight into the request body. `onBytes` hears of every NAR chunk sent.
     */
    async uploadPath(info: PathInfo, onBytes: (n: number) => void, signal?: AbortSignal): Promise<UploadAnswer> {
      const metadata: Record<string, unknown> = {
        storePath: info.path,
        narHash: info.narHash,
        narSize: info.narSize,
        references: info.references,
      };
      if (info.deriver !== undefined) metadata.deriver = info.deriver;
      if (info.ca !== undefined) metadata.ca = info.ca;
      if (info.signatures.length > 0) metadata.sigs = info.signatures;
      const line = Buffer.from(JSON.stringify(metadata) + '\n');

      let dumpError: PushFailure | undefined;
      const child = spawn(nix.nixStore ?? 'nix-store', [...storeArgs(nix), '--dump', info.path], { env: nix.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
      const exited = new Promise<number | null>((resolve) => {
        child.once('error', (err) => {
          dumpError = new PushFailure(`cannot run nix-store --dump: ${err.message}`, false);
          resolve(null);
        });
        child.once('close', (code) => resolve(code));
      });
      // fetch sends each chunk it is given as its own write: pipe-sized (64 KiB) chunks cap an
      // upload at a fraction of what 1 MiB ones reach, so the dump is regrouped.
      async function* body(): AsyncGenerator<Uint8Array> {
        try {
          yield line;
          let parts: Buffer[] = [];
          let size = 0;
          for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
            parts.push(chunk);
            size += chunk.length;
            if (size >= UPLOAD_CHUNK) {
              onBytes(size);
              yield Buffer.concat(parts, size);
              parts = [];
              size = 0;
            }
          }
          if (size > 0) {
            onBytes(size);
            yield Buffer.concat(parts, size);
          }
          const code = await exited;
          if (code !== 0) {
            dumpError ??= new PushFailure(`nix-store --dump failed (exit ${code}): ${stderr.trim().split('\n').slice(-2).join(' / ')}`, false);
            throw dumpError;
          }
        } finally {
          if (child.exitCode === null && child.signalCode === null) child.kill();
        }
      }

      const hashPart = parseStorePath(info.path).hashPart;
      let res: Response;
      try {
        res = await fetch(`${api}/paths/${hashPart}`, {
          method: 'PUT',
          headers: headers({ 'content-type': 'application/x-narhub-path', accept: 'application/json' }),
          body: body(),
          duplex: 'half',
          ...(signal ? { signal } : {}),
        } as RequestInit);
      } catch (err) {
        if (child.exitCode === null && child.signalCode === null) child.kill();
        if (dumpError) throw dumpError;
        throw connectionFailure(err);
      }
      if (!res.ok) {
        if (child.exitCode === null && child.signalCode === null) child.kill();
        throw await answerFailure(res);
      }
      const answer = (await res.json()) as Partial<UploadAnswer>;
      return { created: answer.created === true, stored: answer.stored === true, fileSize: Number(answer.fileSize ?? 0), narSize: Number(answer.narSize ?? info.narSize) };
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;
