import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../config/schema.js';
import type { EvaluationView } from '../../hub/views.js';
import { formatDuration } from '../../units.js';
import { parseDurationFlag, parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { EVAL, EVAL_CANCEL, EVAL_LIST, EVAL_SHOW } from '../specs/eval.js';
import { clientOptions, createHubClient, type HubClient } from '../hub-client.js';

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

function summary(e: EvaluationView): string {
  const where = `${e.jobset ? ` on ${e.jobset}` : ''}${e.commit ? ` at ${e.commit}` : ''}`;
  const lines = [
    `evaluation ${e.id} of ${e.project}${where} (${e.trigger}): ${e.status}${e.error ? `: ${e.error}` : ''}`,
  ];
  for (const j of e.jobs ?? []) {
    const outs = Object.values(j.outputs).join(' ');
    const why =
      j.status === 'queued' && j.waitingFor
        ? ` (${j.waitingFor})`
        : j.status === 'dependency-failed' && j.failedDependency
          ? ` (dependency ${j.failedDependency} failed)`
          : j.error
            ? ` (${j.error.split('\n')[0]}${j.fromFailureCache ? '; failed before, not built again' : ''})`
            : '';
    const took =
      j.durationMs !== null ? `  ${Math.round(j.durationMs / 1000)} s${j.spoke ? ` on ${j.spoke}` : ''}` : '';
    lines.push(`  ${j.status.padEnd(17)} ${j.attr}${outs ? `  ${outs}` : ''}${took}${why}`);
  }
  return lines.join('\n');
}

interface WaitOptions {
  timeout: number | undefined;
  interval: number;
  json: boolean | undefined;
}

function waitOptions(values: {
  timeout?: string | undefined;
  interval?: string | undefined;
  json?: boolean | undefined;
}): WaitOptions {
  return {
    timeout: values.timeout === undefined ? undefined : parseDurationFlag(values.timeout, '--timeout'),
    interval: values.interval === undefined ? 1 : Math.max(1, parseDurationFlag(values.interval, '--interval')),
    json: values.json,
  };
}

/** Polls an evaluation until it ends (or the timeout passes): exit 0 when every build succeeded, else 1. */
async function waitForEnd(
  client: HubClient,
  id: number,
  o: WaitOptions,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const deadline = o.timeout === undefined ? Infinity : Date.now() + o.timeout * 1000;
  let last = '';
  let e: EvaluationView;
  for (;;) {
    e = await client.get<EvaluationView>(`/evaluations/${id}`);
    const counts = Object.entries(e.builds)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    const line = `evaluation ${e.id}: ${e.status}${counts ? ` (${counts})` : ''}`;
    if (line !== last && !o.json) err.write(`${line}\n`);
    last = line;
    if (FINISHED.has(e.status)) break;
    if (Date.now() >= deadline) {
      err.write(`narhub: evaluation ${e.id} has not ended after ${formatDuration(o.timeout!)}\n`);
      out.write(o.json ? `${JSON.stringify(e, null, 2)}\n` : `${summary(e)}\n`);
      return 1;
    }
    await sleep(o.interval * 1000);
  }
  out.write(o.json ? `${JSON.stringify(e, null, 2)}\n` : `${summary(e)}\n`);
  return e.status === 'succeeded' ? 0 : 1;
}

/**
 * `narhub eval PROJECT`: starts an evaluation (with --wait, follows it until its builds end).
 * `narhub eval list PROJECT [--branch B]` lists evaluations; `narhub eval show ID [--wait]` shows
 * one, and with --wait follows one already running, such as a push's.
 */
export async function evalCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const connect = async (values: { server?: string | undefined; token?: string | undefined }) =>
    createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir));
  if (argv[0] === 'list') {
    const { values, positionals } = parseCommand(EVAL_LIST, argv.slice(1));
    const q = new URLSearchParams({
      limit: String(values.limit === undefined ? 20 : parseInteger(values.limit, '--limit')),
    });
    if (values.branch !== undefined) q.set('jobset', values.branch);
    const { evaluations } = await (await connect(values)).get<{ evaluations: EvaluationView[] }>(
      `/projects/${encodeURIComponent(positionals[0]!)}/evaluations?${q}`,
    );
    if (values.json) out.write(`${JSON.stringify(evaluations, null, 2)}\n`);
    else
      for (const e of evaluations) {
        const counts = Object.entries(e.builds)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ');
        const columns = [e.id, e.status, e.jobset ?? '(commit)', e.commit ?? '', e.trigger, e.createdAt];
        out.write(`${[...columns, ...(counts ? [counts] : [])].join('\t')}\n`);
      }
    return 0;
  }
  if (argv[0] === 'cancel') {
    const { values, positionals } = parseCommand(EVAL_CANCEL, argv.slice(1));
    const id = parseInteger(positionals[0]!, 'ID');
    const e = await (await connect(values)).post<EvaluationView>(`/evaluations/${id}/cancel`, {});
    out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `evaluation ${e.id} of ${e.project} cancelled\n`);
    return 0;
  }
  if (argv[0] === 'show') {
    const { values, positionals } = parseCommand(EVAL_SHOW, argv.slice(1));
    const id = parseInteger(positionals[0]!, 'ID');
    const client = await connect(values);
    if (values.wait) return waitForEnd(client, id, waitOptions(values), out, err);
    const e = await client.get<EvaluationView>(`/evaluations/${id}`);
    out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `${summary(e)}\n`);
    return 0;
  }
  const { values, positionals } = parseCommand(EVAL, argv);
  const client = await connect(values);
  const priority = values.priority === undefined ? undefined : parseInteger(values.priority, '--priority');
  const o = waitOptions(values);
  const e = await client.post<EvaluationView>(`/projects/${encodeURIComponent(positionals[0]!)}/evaluations`, {
    ref: values.ref,
    priority,
  });
  if (!values.wait) {
    out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `evaluation ${e.id} of ${e.project} started\n`);
    return 0;
  }
  return waitForEnd(client, e.id, o, out, err);
}
