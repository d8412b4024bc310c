import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NarhubError, type ErrorCode } from '../errors.js';

/** Where the hub commands find the server and the token they present. */
export interface HubClientOptions {
  server: string;
  token: string | undefined;
}

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

/**
 * `--server` (else $NARHUB_SERVER, else http://127.0.0.1:8080); the token from `--token`, else
 * $NARHUB_TOKEN, else `<data-dir>/admin-token` (what the first `narhub serve` wrote).
 */
export async function clientOptions(
  values: { server?: string | undefined; token?: string | undefined },
  dataDir: () => Promise<string>,
  env = process.env,
): Promise<HubClientOptions> {
  const server = (values.server ?? env.NARHUB_SERVER ?? DEFAULT_SERVER).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(server))
    throw new NarhubError('BAD_REQUEST', `--server must be an http:// or https:// URL, not ${JSON.stringify(server)}`);
  let token = values.token ?? env.NARHUB_TOKEN;
  if (!token) {
    try {
      token = readFileSync(join(await dataDir(), 'admin-token'), 'utf8').trim() || undefined;
    } catch {
      token = undefined;
    }
  }
  return { server, token };
}

/** A small JSON client for `/api/v1`; an error answer becomes a NarhubError with the server's code and message. */
export function createHubClient(o: HubClientOptions) {
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${o.server}/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new NarhubError(
        'UNAVAILABLE',
        `cannot reach narhub at ${o.server}: ${cause?.code ?? cause?.message ?? String(err)}`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let code = 'INTERNAL';
      let message = text.trim() || res.statusText;
      try {
        const parsed = JSON.parse(text) as { code?: string; message?: string };
        code = parsed.code ?? code;
        message = parsed.message ?? message;
      } catch {
        // not JSON
      }
      if (res.status === 404 && code === 'NOT_FOUND' && /no such resource/.test(message)) {
        message += ' (is the build hub running? start narhub serve with --redis-url)';
      }
      throw new NarhubError(code as ErrorCode, `${code}: ${message}`);
    }
    if (res.status === 204 || text === '') return undefined as T;
    return JSON.parse(text) as T;
  }
  return {
    get: <T>(path: string) => call<T>('GET', path),
    post: <T>(path: string, body?: unknown) => call<T>('POST', path, body ?? {}),
    patch: <T>(path: string, body: unknown) => call<T>('PATCH', path, body),
    delete: <T>(path: string) => call<T>('DELETE', path),
    /** Streams a GET body (logs) as text chunks. */
    async *stream(path: string, accept: string): AsyncGenerator<string> {
      const headers: Record<string, string> = { accept };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      const res = await fetch(`${o.server}/api/v1${path}`, { headers }).catch((err: unknown) => {
        throw new NarhubError('UNAVAILABLE', `cannot reach narhub at ${o.server}: ${String(err)}`);
      });
      if (!res.ok || !res.body) {
        const text = await res.text();
        let message = text.trim();
        try {
          const parsed = JSON.parse(text) as { code?: string; message?: string };
          message = `${parsed.code}: ${parsed.message}`;
        } catch {
          // not JSON
        }
        throw new NarhubError('NOT_FOUND', message || res.statusText);
      }
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
        yield decoder.decode(chunk, { stream: true });
    },
  };
}

export type HubClient = ReturnType<typeof createHubClient>;
