import { spawn } from 'node:child_process';
import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseStorePath } from '../nix/store-path.js';
import type { CacheLocation } from './cache-url.js';
import { storeArgs, type NixCommands, type PathInfo } from './closure.js';
import { type ClientZstd, createNarCompressor } from './nar-compressor.js';
import { DEFAULT_CLIENT_ZSTD_WORKERS } from '../io/zstd-stream.js';
import { PushFailure } from './retry.js';

/**
 * A request whose socket stays silent this long fails (transiently). Once the last byte is
 * sent the server still has to finish compressing, store and commit, so this is generous.
 */
const IDLE_TIMEOUT_MS = 300_000;

/** What the server answers to a native upload. */
export interface UploadAnswer {
  created: boolean;
  stored: boolean;
  fileSize: number;
  narSize: number;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** False when the connection broke before the body of the answer ended. */
  complete: boolean;
}

export interface ApiClientOptions {
  /** Idle time after which a request fails (default 300 s); tests shorten it. */
  idleTimeoutMs?: number;
  /** Keep-alive connections shared with other clients (a spoke's jobs); `close()` leaves them. */
  agent?: HttpAgent | undefined;
  /**
   * How NARs are compressed before they are sent (default zstd level 3, one zstd thread per
   * core up to 4); null sends them raw, for the server to compress.
   */
  zstd?: ClientZstd | null;
}

/** The client's compression unless told otherwise: zstd's default level. */
export const DEFAULT_CLIENT_ZSTD: ClientZstd = { level: 3, workers: DEFAULT_CLIENT_ZSTD_WORKERS };

/** Connection-level failures (refused, reset, timed out…): the request may well work next time. */
function connectionFailure(err: unknown): PushFailure {
  if (err instanceof PushFailure) return err;
  const e = err as (NodeJS.ErrnoException & { cause?: unknown }) | undefined;
  const cause = e?.cause instanceof Error ? (e.cause as NodeJS.ErrnoException) : e;
  const detail = cause instanceof Error ? `${cause.code ?? cause.name}: ${cause.message}` : String(err);
  return new PushFailure(`connection failed (${detail})`, true);
}

/** A non-2xx answer: transient for 5xx and 429, final for every other 4xx. */
function answerFailure(answer: Answer): PushFailure {
  let reason = '';
  try {
    const body = JSON.parse(answer.text) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string') reason = `${body.code}: ${String(body.message ?? '')}`;
  } catch {
    reason = answer.text.trim().split('\n')[0]?.slice(0, 300) ?? '';
  }
  const transient = answer.status >= 500 || answer.status === 429;
  const header = answer.headers['retry-after'];
  const retryAfter = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
  return new PushFailure(`HTTP ${answer.status}${reason ? ` ${reason}` : ''}`, transient, retryAfter, answer.status);
}

/**
 * A request that failed before any answer on a kept-alive connection, with the errors of a
 * connection the server had already closed: worth one immediate try on a fresh connection.
 */
class StaleConnection extends Error {
  constructor(readonly original: unknown) {
    super('stale keep-alive connection');
  }
}

function isStale(req: ClientRequest, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
}

/** Runs `attempt` again at once when it failed only because its kept-alive connection was stale. */
async function onLiveConnection<T>(attempt: () => Promise<T>): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!(err instanceof StaleConnection)) throw err;
  }
  try {
    return await attempt();
  } catch (err) {
    throw err instanceof StaleConnection ? connectionFailure(err.original) : err;
  }
}

/** A 2xx answer that arrived whole; anything else as the failure it is. */
function successful(answer: Answer): Answer {
  if (answer.status < 200 || answer.status > 299) throw answerFailure(answer);
  if (!answer.complete) throw new PushFailure(`connection failed (the HTTP ${answer.status} answer was cut off)`, true);
  return answer;
}

/**
 * The whole answer to `req`: resolves once its body ended (or its connection closed after the
 * status line came: the status is what counts), rejects when the request failed before any answer.
 */
function readAnswer(req: ClientRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(parts).toString('utf8'),
          complete: res.complete,
        });
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.once('end', done);
      res.once('close', done);
      res.on('error', () => undefined);
    });
  });
}

/**
 * Passes the NAR on and checks it on the way: never more than `narSize` bytes, and the request
 * body is only ended once the source ended cleanly (`nix-store --dump` exited with 0) with
 * exactly that many, so a dump that dies mid-way fails the request instead of ending it short.
 */
class CheckedNar extends Transform {
  /** Why this NAR was refused (the pipeline only aborts the request, without saying why). */
  failure: PushFailure | undefined;
  private count = 0;

  constructor(
    private readonly what: string,
    private readonly narSize: number,
    private readonly onBytes: (n: number) => void,
    private readonly sourceEnded: () => Promise<PushFailure | undefined>,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.narSize) {
      callback(
        (this.failure = new PushFailure(
          `${this.what} gave more than the path's NarSize of ${this.narSize} bytes`,
          false,
        )),
      );
      return;
    }
    this.onBytes(chunk.length);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.sourceEnded().then((failure) => {
      this.failure =
        failure ??
        (this.count !== this.narSize
          ? new PushFailure(`${this.what} gave ${this.count} bytes, but the path's NarSize is ${this.narSize}`, false)
          : undefined);
      callback(this.failure);
    }, callback);
  }
}

/** narhub's /api/v1 for one cache, over `node:http(s)` with keep-alive connections. */
const strings = (list: unknown[]) => list.filter((p): p is string => typeof p === 'string');

/** The answer to missing-paths. */
export interface MissingPaths {
  missing: string[];
  /** Names of the keys the cache's upstreams are trusted under: a path signed by one needs no upload. */
  upstreamKeyNames: string[];
}

export function createApiClient(
  location: CacheLocation,
  authorization: string | undefined,
  nix: NixCommands = {},
  options: ApiClientOptions = {},
) {
  const api = `${location.base}/api/v1/caches/${encodeURIComponent(location.cache)}`;
  const https = api.startsWith('https:');
  const request = https ? httpsRequest : httpRequest;
  // One connection per upload in flight (push bounds those by --jobs), reused by the next one.
  const ownAgent = options.agent === undefined;
  const agent = options.agent ?? (https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true }));
  const idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const zstd = options.zstd === undefined ? DEFAULT_CLIENT_ZSTD : options.zstd;

  const open = (method: string, path: string, headers: OutgoingHttpHeaders, signal?: AbortSignal): ClientRequest => {
    const req = request(`${api}${path}`, {
      method,
      agent,
      headers: authorization ? { ...headers, authorization } : headers,
      timeout: idleTimeoutMs,
      ...(signal ? { signal } : {}),
    });
    req.once('timeout', () =>
      req.destroy(new PushFailure(`no answer from the server for ${Math.round(idleTimeoutMs / 1000)} s`, true)),
    );
    return req;
  };
  /** `nix-store --dump PATH`; `ended` tells, once its output ended, whether it failed. */
  const spawnDump = (path: string) => {
    const child = spawn(nix.nixStore ?? 'nix-store', [...storeArgs(nix), '--dump', path], {
      env: nix.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let spawnFailure: PushFailure | undefined;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    const exited = new Promise<PushFailure | undefined>((resolve) => {
      child.once('error', (err) =>
        resolve((spawnFailure = new PushFailure(`cannot run nix-store --dump: ${err.message}`, false))),
      );
      child.once('close', (code, sig) =>
        resolve(
          code === 0
            ? undefined
            : new PushFailure(
                `nix-store --dump failed (${sig ?? `exit ${code}`}): ` +
                  stderr.trim().split('\n').slice(-2).join(' / '),
                false,
              ),
        ),
      );
    });
    return {
      stream: child.stdout,
      ended: () => exited,
      spawnFailure: () => spawnFailure,
      stop: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill();
      },
    };
  };

  /**
   * Sends the metadata line and the NAR (`nix-store --dump PATH`, or `openNar()`) as one PUT,
   * the NAR compressed to one zstd frame when the client compresses (then the length is not
   * known ahead: the body is chunked); the whole answer, whatever its status.
   */
  const sendPath = async (
    info: PathInfo,
    hashPart: string,
    line: Buffer,
    onBytes: (n: number) => void,
    signal?: AbortSignal,
    openNar?: () => Readable,
  ): Promise<Answer> => {
    const dump = openNar ? undefined : spawnDump(info.path);
    const nar = dump ? dump.stream : openNar!();
    const req = open(
      'PUT',
      `/paths/${hashPart}`,
      {
        'content-type': 'application/x-narhub-path',
        accept: 'application/json',
        ...(zstd ? {} : { 'content-length': line.length + info.narSize }),
      },
      signal,
    );
    // A given source's own error (not the request's, which the pipeline passes on to it).
    let requestFailed = false;
    let narFailure: unknown;
    req.prependListener('error', () => (requestFailed = true));
    nar.once('error', (err) => {
      if (!requestFailed) narFailure = err;
    });
    const answering = readAnswer(req);
    req.write(line);
    // A failure on either side aborts the request, so `answering` rejects; the cause is told below.
    const checked = dump
      ? new CheckedNar('nix-store --dump', info.narSize, onBytes, dump.ended)
      : new CheckedNar('the NAR stream', info.narSize, onBytes, async () => undefined);
    // The NAR is checked before it is compressed: what is counted and limited is the NAR itself.
    (zstd ? pipeline(nar, checked, createNarCompressor(info.narSize, zstd), req) : pipeline(nar, checked, req)).catch(
      () => undefined,
    );
    try {
      return await answering;
    } catch (err) {
      // A dump that failed on its own says why; a dump cut off by a dropped connection does not.
      if (checked.failure) throw checked.failure;
      if (err instanceof PushFailure) throw err;
      const spawnFailure = dump?.spawnFailure();
      if (spawnFailure) throw spawnFailure;
      if (!dump && narFailure !== undefined) throw narFailure;
      if (signal?.aborted) throw new PushFailure('upload aborted', false);
      // A given source cannot be read a second time.
      throw isStale(req, err) && dump ? new StaleConnection(err) : connectionFailure(err);
    } finally {
      if (dump) dump.stop();
      else nar.destroy();
      // Still sending after the answer: the rest is not wanted.
      if (!req.writableFinished) req.destroy();
    }
  };

  /** POSTs `{storePaths}` to a path of the cache's API and parses the JSON answer. */
  async function postPaths(path: string, storePaths: string[]): Promise<Record<string, unknown>> {
    const body = Buffer.from(JSON.stringify({ storePaths }));
    const answer = await onLiveConnection(async () => {
      const req = open('POST', path, {
        'content-type': 'application/json',
        accept: 'application/json',
        'content-length': body.length,
      });
      const answering = readAnswer(req);
      req.end(body);
      try {
        return await answering;
      } catch (err) {
        throw isStale(req, err) ? new StaleConnection(err) : connectionFailure(err);
      }
    });
    let parsed: unknown;
    try {
      parsed = JSON.parse(successful(answer).text);
    } catch (err) {
      if (err instanceof PushFailure) throw err;
      throw new PushFailure(`the server answered ${path.slice(1)} with something other than JSON`, false);
    }
    if (typeof parsed !== 'object' || parsed === null)
      throw new PushFailure(`the server answered ${path.slice(1)} with something other than an object`, false);
    return parsed as Record<string, unknown>;
  }

  return {
    /**
     * One attempt at asking which of `storePaths` the cache lacks, and the names of the keys its
     * upstreams are trusted under (none from a narhub too old to say).
     */
    async missingPaths(storePaths: string[]): Promise<MissingPaths> {
      const parsed = await postPaths('/missing-paths', storePaths);
      if (!Array.isArray(parsed.missing))
        throw new PushFailure('the server answered missing-paths without a "missing" list', false);
      return {
        missing: strings(parsed.missing),
        upstreamKeyNames: Array.isArray(parsed.upstreamKeyNames) ? strings(parsed.upstreamKeyNames) : [],
      };
    },

    /** One attempt at asking which of `storePaths` (that the cache lacks) its upstreams serve. */
    async upstreamPaths(storePaths: string[]): Promise<string[]> {
      const parsed = await postPaths('/upstream-paths', storePaths);
      if (!Array.isArray(parsed.served))
        throw new PushFailure('the server answered upstream-paths without a "served" list', false);
      return strings(parsed.served);
    },

    /**
     * One attempt at uploading a path: the metadata line, then `nix-store --dump PATH` (or what
     * `openNar` returns, e.g. a spoke's `nix-store --serve` connection) piped into the request
     * body, as one zstd frame (`compression: zstd` in the line, which the server keeps as it is
     * once it decoded to this NAR) or raw (Content-Length: the line plus NarSize) when the client
     * does not compress. `onBytes` hears of every NAR chunk
     * sent. An answer that comes before the NAR is all sent (a refusal, or a path the cache
     * already has) ends the upload there: the dump is stopped and the connection dropped. An
     * error of `openNar`'s stream comes back unchanged.
     */
    async uploadPath(
      info: PathInfo,
      onBytes: (n: number) => void,
      signal?: AbortSignal,
      openNar?: () => Readable,
    ): Promise<UploadAnswer> {
      const metadata: Record<string, unknown> = {
        storePath: info.path,
        narHash: info.narHash,
        narSize: info.narSize,
        references: info.references,
      };
      if (info.deriver !== undefined) metadata.deriver = info.deriver;
      if (info.ca !== undefined) metadata.ca = info.ca;
      if (info.signatures.length > 0) metadata.sigs = info.signatures;
      if (zstd) metadata.compression = 'zstd';
      const line = Buffer.from(`${JSON.stringify(metadata)}\n`);
      const hashPart = parseStorePath(info.path).hashPart;

      // Bytes reported for an attempt on a stale connection are taken back before the next.
      let reported = 0;
      const count = (n: number) => {
        reported += n;
        onBytes(n);
      };
      const answer = await onLiveConnection(() => {
        if (reported !== 0) onBytes(-reported);
        reported = 0;
        return sendPath(info, hashPart, line, count, signal, openNar);
      });
      let body: Partial<UploadAnswer>;
      try {
        body = JSON.parse(successful(answer).text) as Partial<UploadAnswer>;
      } catch (err) {
        if (err instanceof PushFailure) throw err;
        throw new PushFailure(`the server answered the upload with HTTP ${answer.status} but no JSON`, false);
      }
      return {
        created: body.created === true,
        stored: body.stored === true,
        fileSize: Number(body.fileSize ?? 0),
        narSize: Number(body.narSize ?? info.narSize),
      };
    },

    /** Closes the idle keep-alive connections (unless they are shared). */
    close(): void {
      if (ownAgent) agent.destroy();
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;
