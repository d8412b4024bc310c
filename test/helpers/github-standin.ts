// A local stand-in for api.github.com: every request is checked against GitHub's published
// OpenAPI description (@octokit/openapi) — method, path, parameters and JSON body — and a
// request it does not describe, or that breaks its schema, is answered 400 and recorded as a
// violation, which the tests assert to be empty. It keeps the check runs and commit statuses it
// was sent, can play down (503) or rate-limited (403 with Retry-After), and knows collaborators.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { Cleanup } from './tmp.js';

const require = createRequire(import.meta.url);

interface Operation {
  method: string;
  template: string;
  regex: RegExp;
  names: string[];
  parameters: { name: string; in: string; required?: boolean; schema: object }[];
  body?: object;
}

let spec: { paths: Record<string, Record<string, any>>; components: any } | undefined;
let operations: Operation[] | undefined;
let ajv: Ajv | undefined;
const compiled = new Map<object, ValidateFunction>();

function load(): Operation[] {
  if (operations) return operations;
  spec = require('@octokit/openapi/generated/api.github.com.json');
  const addFormats = (addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule;
  ajv = new Ajv({ strict: false, allErrors: false, validateFormats: true });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  ajv.addSchema({ components: spec!.components }, 'gh');
  const resolve = (o: any): any => (o?.$ref ? resolve(lookup(o.$ref)) : o);
  const lookup = (ref: string) =>
    ref
      .replace(/^#\//, '')
      .split('/')
      .reduce((n: any, k) => n[k], spec);
  operations = [];
  for (const [template, item] of Object.entries(spec!.paths)) {
    const names: string[] = [];
    const regex = new RegExp(
      `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, n: string) => {
        names.push(n);
        return '([^/]+)';
      })}$`,
    );
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'patch', 'put', 'delete'].includes(method)) continue;
      const parameters = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolve);
      const body = resolve(op.requestBody)?.content?.['application/json']?.schema;
      operations.push({ method: method.toUpperCase(), template, regex, names, parameters, body });
    }
  }
  return operations;
}

/** Schemas refer to `#/components/…`: they are compiled inside a document that has them. */
function validator(schema: object): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    const text = JSON.stringify(schema).replaceAll('"#/components/', '"gh#/components/');
    v = ajv!.compile(JSON.parse(text));
    compiled.set(schema, v);
  }
  return v;
}

export interface CheckRun {
  id: number;
  name: string;
  head_sha: string;
  status: string;
  conclusion: string | null;
  details_url?: string;
  output?: { title?: string; summary?: string; text?: string };
  /** Every body this check run was created or updated with, in order. */
  history: Record<string, unknown>[];
}

export interface GitHubStandIn {
  url: string;
  /** Requests the OpenAPI description does not allow (must stay empty). */
  violations: string[];
  /** Every request, as `METHOD /path`. */
  requests: string[];
  checkRuns: Map<number, CheckRun>;
  statuses: { sha: string; context: string; state: string; description?: string; target_url?: string }[];
  collaborators: Set<string>;
  /** While true, every request is answered 503. */
  down: boolean;
  /** The next n write requests are answered 403 with `Retry-After: seconds` (GitHub's secondary limit). */
  rateLimitNext(n: number, seconds: number): void;
  /** Times at which write requests arrived (ms), including refused ones, not those answered while down. */
  writeTimes: number[];
  checkRunNamed(name: string, sha?: string): CheckRun | undefined;
}

export async function startGitHubStandIn(t: Cleanup): Promise<GitHubStandIn> {
  const ops = load();
  let nextId = 1000;
  let limited = 0;
  let limitSeconds = 1;
  const state: GitHubStandIn = {
    url: '',
    violations: [],
    requests: [],
    checkRuns: new Map(),
    statuses: [],
    collaborators: new Set(),
    down: false,
    rateLimitNext(n, seconds) {
      limited = n;
      limitSeconds = seconds;
    },
    writeTimes: [],
    checkRunNamed(name, sha) {
      return [...state.checkRuns.values()].filter((c) => c.name === name && (!sha || c.head_sha === sha)).at(-1);
    },
  };

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // When it arrived, before the stand-in's own work (reading, validating) adds to it.
    const arrived = Date.now();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    state.requests.push(`${method} ${url.pathname}`);
    if (state.down) return send(res, 503, { message: 'Service Unavailable' });
    const op = ops.find((o) => o.method === method && o.regex.test(url.pathname));
    const refuse = (why: string) => {
      state.violations.push(`${method} ${url.pathname}: ${why}`);
      send(res, 400, { message: why });
    };
    if (!op) return refuse('no such operation in the OpenAPI description');
    const m = op.regex.exec(url.pathname)!;
    const params: Record<string, string> = {};
    op.names.forEach((n, i) => {
      params[n] = decodeURIComponent(m[i + 1]!);
    });
    for (const p of op.parameters) {
      const value = p.in === 'path' ? params[p.name] : p.in === 'query' ? url.searchParams.get(p.name) : undefined;
      if (value === undefined || value === null) {
        if (p.required && p.in !== 'header') return refuse(`missing ${p.in} parameter ${p.name}`);
        continue;
      }
      const typed = (p.schema as { type?: string }).type === 'integer' ? Number(value) : value;
      const v = validator(p.schema);
      if (!v(typed)) return refuse(`${p.in} parameter ${p.name}: ${ajv!.errorsText(v.errors)}`);
    }
    let body: any;
    if (op.body) {
      try {
        body = JSON.parse(raw);
      } catch {
        return refuse('the body is not JSON');
      }
      const v = validator(op.body);
      if (!v(body)) return refuse(`body: ${ajv!.errorsText(v.errors)}`);
    }
    if (!/^(token|Bearer) /.test(req.headers.authorization ?? ''))
      return send(res, 401, { message: 'Requires authentication' });
    if (method !== 'GET') {
      state.writeTimes.push(arrived);
      if (limited > 0) {
        limited--;
        return send(
          res,
          403,
          { message: 'You have exceeded a secondary rate limit.' },
          { 'retry-after': String(limitSeconds), 'x-ratelimit-remaining': '4000' },
        );
      }
    }
    const rl = { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4999', 'x-ratelimit-reset': '9999999999' };
    switch (`${method} ${op.template}`) {
      case 'POST /repos/{owner}/{repo}/check-runs': {
        const run: CheckRun = {
          id: nextId++,
          name: body.name,
          head_sha: body.head_sha,
          status: body.status ?? 'queued',
          conclusion: body.conclusion ?? null,
          details_url: body.details_url,
          output: body.output,
          history: [body],
        };
        state.checkRuns.set(run.id, run);
        return send(res, 201, { id: run.id, name: run.name, head_sha: run.head_sha, status: run.status }, rl);
      }
      case 'PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}': {
        const run = state.checkRuns.get(Number(params.check_run_id));
        if (!run) return send(res, 404, { message: 'Not Found' });
        Object.assign(run, {
          status: body.status ?? run.status,
          conclusion: body.conclusion ?? run.conclusion,
          details_url: body.details_url ?? run.details_url,
          output: body.output ?? run.output,
        });
        if (body.name) run.name = body.name;
        run.history.push(body);
        return send(res, 200, { id: run.id, name: run.name, status: run.status }, rl);
      }
      case 'POST /repos/{owner}/{repo}/statuses/{sha}':
        state.statuses.push({ sha: params.sha!, ...body });
        return send(res, 201, { id: nextId++, state: body.state, context: body.context }, rl);
      case 'GET /repos/{owner}/{repo}/collaborators/{username}':
        return state.collaborators.has(params.username!.toLowerCase())
          ? (res.writeHead(204), void res.end())
          : send(res, 404, { message: 'Not Found' });
      case 'GET /repos/{owner}/{repo}/installation':
        return send(res, 200, { id: 42, account: { login: params.owner } }, rl);
      case 'POST /app/installations/{installation_id}/access_tokens':
        return send(res, 201, { token: 'ghs_standin', expires_at: new Date(Date.now() + 3600_000).toISOString() }, rl);
      default:
        return send(res, 404, { message: `the stand-in does not implement ${op.template}` });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => send(res, 500, { message: String(err) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return state;
}

/** GitHub's own example payload of `event` (and `action`), from @octokit/webhooks-examples. */
export function examplePayload(event: string, pick: (p: any) => boolean = () => true): any {
  const all = require('@octokit/webhooks-examples/api.github.com/index.json') as { name: string; examples: any[] }[];
  const found = all.find((e) => e.name === event)?.examples.find(pick);
  if (!found) throw new Error(`no example payload of ${event}`);
  return structuredClone(found);
}

/** Signs a webhook body as GitHub does (X-Hub-Signature-256). */
export function signWebhook(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}
