// A local stand-in for a Gitea or Forgejo API (`https://HOST/api/v1`). Neither publishes its
// swagger description on npm, so the operations narhub may call are described here from Gitea's
// own swagger (templates/swagger/v1_json.tmpl: operations repoCreateStatus and
// repoCheckCollaborator, definition CreateStatusOption with CommitStatusState), and every request
// is checked against that with ajv. Anything else, or a body the description does not allow
// (unknown keys included), is answered 400 and recorded as a violation, which tests assert empty.
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv } from 'ajv';
import type { Cleanup } from './tmp.js';

/** CreateStatusOption: "holds the information needed to create a new CommitStatus for a Commit". */
const CreateStatusOption = {
  type: 'object',
  properties: {
    context: { type: 'string' },
    description: { type: 'string' },
    // CommitStatusState: "pending", "success", "error", "failure" and "warning".
    state: { type: 'string', enum: ['pending', 'success', 'error', 'failure', 'warning'] },
    target_url: { type: 'string' },
  },
  additionalProperties: false,
} as const;

interface Operation {
  method: string;
  regex: RegExp;
  names: string[];
  body?: object;
}

/** Path parameters are plain strings (owner, repo, sha, collaborator). */
const OPERATIONS: Operation[] = [
  {
    method: 'POST',
    regex: /^\/repos\/([^/]+)\/([^/]+)\/statuses\/([^/]+)$/,
    names: ['owner', 'repo', 'sha'],
    body: CreateStatusOption,
  },
  {
    method: 'GET',
    regex: /^\/repos\/([^/]+)\/([^/]+)\/collaborators\/([^/]+)$/,
    names: ['owner', 'repo', 'collaborator'],
  },
];

export interface GiteaStatus {
  repo: string;
  sha: string;
  context?: string;
  state?: string;
  description?: string;
  target_url?: string;
}

export interface GiteaStandIn {
  /** The API base URL, as narhub's `github.apiUrl` names it (`…/api/v1`). */
  url: string;
  violations: string[];
  requests: string[];
  statuses: GiteaStatus[];
  collaborators: Set<string>;
  /** The newest status of `context` on `sha`. */
  latest(sha: string, context: string): GiteaStatus | undefined;
}

export async function startGiteaStandIn(t: Cleanup): Promise<GiteaStandIn> {
  const ajv = new Ajv({ strict: false, allErrors: false });
  const validators = new Map(OPERATIONS.filter((o) => o.body).map((o) => [o, ajv.compile(o.body!)]));
  const state: GiteaStandIn = {
    url: '',
    violations: [],
    requests: [],
    statuses: [],
    collaborators: new Set(),
    latest: (sha, context) => state.statuses.filter((s) => s.sha === sha && s.context === context).at(-1),
  };
  const send = (res: ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const path = url.pathname.replace(/^\/api\/v1/, '');
    state.requests.push(`${method} ${path}`);
    const refuse = (why: string) => {
      state.violations.push(`${method} ${path}: ${why}`);
      send(res, 400, { message: why });
    };
    if (!url.pathname.startsWith('/api/v1/')) return refuse('not under /api/v1');
    const op = OPERATIONS.find((o) => o.method === method && o.regex.test(path));
    if (!op) return refuse('no such operation among those described');
    const m = op.regex.exec(path)!;
    const params = Object.fromEntries(op.names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)]));
    // Gitea takes `token X` (what Octokit sends for a token) or `Bearer X`.
    if (!/^(token|Bearer) \S+$/.test(req.headers.authorization ?? ''))
      return send(res, 401, { message: 'token is required' });
    if (op.body) {
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        return refuse('the body is not JSON');
      }
      const v = validators.get(op)!;
      if (!v(body)) return refuse(`body: ${ajv.errorsText(v.errors)}`);
      state.statuses.push({ repo: `${params.owner}/${params.repo}`, sha: params.sha!, ...(body as object) });
      return send(res, 201, { id: state.statuses.length, ...(body as object) });
    }
    return state.collaborators.has(params.collaborator!.toLowerCase())
      ? (res.writeHead(204), void res.end())
      : send(res, 404, { message: 'Not Found' });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => send(res, 500, { message: String(err) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return state;
}

/** Signs a webhook body as Gitea and Forgejo do (`X-Gitea-Signature`: the hex HMAC-SHA256, no prefix). */
export function signGitea(secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}
