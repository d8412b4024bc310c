import { readFileSync } from 'node:fs';
import { App } from '@octokit/app';
import { Octokit } from '@octokit/core';
import { NarhubError } from '../errors.js';
import type { GitHubConfig } from '../config/schema.js';

/** What the forge answered: status, body and the headers rate limiting is read from. */
export interface ForgeResponse {
  status: number;
  data: unknown;
  headers: Record<string, string | number | undefined>;
}

/** A request to the forge failed: the status (0 when it was not reached) and its headers. */
export class ForgeRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly headers: Record<string, string | number | undefined>,
  ) {
    super(message);
  }
}

/**
 * Requests to the forge's REST API for one repository, authenticated as the configured GitHub
 * App (an installation token per repository, renewed by `@octokit/app`) or with a token.
 * `route` is Octokit's `METHOD /path/{param}` form. No retries here: the reporter decides.
 */
export interface ForgeClient {
  request(repo: string, route: string, params?: Record<string, unknown>): Promise<ForgeResponse>;
}

const TIMEOUT_MS = 30_000;

function readSecret(file: string, what: string): string {
  try {
    const text = readFileSync(file, 'utf8').trim();
    if (!text) throw new Error('empty');
    return text;
  } catch (err) {
    throw new NarhubError('BAD_REQUEST', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/** The webhook secret, read once at start (null when none is configured: webhooks are refused). */
export function webhookSecret(config: GitHubConfig | undefined): string | null {
  return config?.webhookSecretFile ? readSecret(config.webhookSecretFile, 'github.webhookSecretFile') : null;
}

export function createForgeClient(config: GitHubConfig): ForgeClient {
  const baseUrl = config.apiUrl.replace(/\/+$/, '');
  const CoreWithBase = Octokit.defaults({ baseUrl, userAgent: 'narhub' });
  let forRepo: (repo: string) => Promise<Octokit>;
  if (config.appId !== undefined) {
    if (!config.privateKeyFile) throw new NarhubError('BAD_REQUEST', 'github.appId needs github.privateKeyFile');
    const app = new App({
      appId: config.appId,
      privateKey: readSecret(config.privateKeyFile, 'github.privateKeyFile'),
      Octokit: CoreWithBase,
    });
    const installations = new Map<string, number>();
    forRepo = async (repo) => {
      const [owner, name] = repo.split('/') as [string, string];
      let id = installations.get(repo.toLowerCase());
      if (id === undefined) {
        const res = await app.octokit.request('GET /repos/{owner}/{repo}/installation', {
          owner,
          repo: name,
          request: { signal: AbortSignal.timeout(TIMEOUT_MS) },
        });
        id = res.data.id;
        installations.set(repo.toLowerCase(), id);
      }
      return (await app.getInstallationOctokit(id)) as unknown as Octokit;
    };
  } else if (config.tokenFile) {
    const octokit = new CoreWithBase({ auth: readSecret(config.tokenFile, 'github.tokenFile') });
    forRepo = async () => octokit;
  } else {
    throw new NarhubError('BAD_REQUEST', 'the github config needs appId and privateKeyFile, or tokenFile');
  }

  return {
    async request(repo, route, params = {}) {
      const [owner, name] = repo.split('/') as [string, string];
      try {
        const octokit = await forRepo(repo);
        const res = await octokit.request(route, {
          owner,
          repo: name,
          ...params,
          request: { signal: AbortSignal.timeout(TIMEOUT_MS) },
        });
        return { status: res.status, data: res.data, headers: res.headers as ForgeResponse['headers'] };
      } catch (err) {
        const e = err as { status?: number; response?: { headers?: ForgeResponse['headers'] }; message?: string };
        throw new ForgeRequestError(
          `${route} for ${repo}: ${e.message ?? String(err)}`.slice(0, 500),
          typeof e.status === 'number' && e.status >= 100 ? e.status : 0,
          e.response?.headers ?? {},
        );
      }
    },
  };
}
