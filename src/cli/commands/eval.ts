import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../config/schema.js';
import type { EvaluationView } from '../../hub/views.js';
import { formatDuration } from '../../units.js';
import { parseDurationFlag, parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { EVAL } from '../specs/eval.js';
import { clientOptions, createHubClient } from '../hub-client.js';

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

function summary(e: EvaluationView): string {
  const lines = [
    `evaluation ${e.id} of ${e.project}: ${e.status}` +
      `${e.revision ? ` at ${e.revision}` : ''}${e.error ? `: ${e.error}` : ''}`,
  ];
  for (const j of e.jobs ?? []) {
    const outs = Object.values(j.outputs).join(' ');
    const why =
      j.status === 'queued' && j.waitingFor ? ` (${j.waitingFor})` : j.error ? ` (${j.error.split('\n')[0]})` : '';
    lines.push(`  ${j.status.padEnd(17)} ${j.attr}${outs ? `  ${outs}` : ''}${why}`);
  }
  return lines.join('\n');
}

/**
 * `narhub eval PROJECT`: starts an evaluation. With --wait it returns once every build of the
 * evaluation has ended: exit 0 when all succeeded, else 1 (also on --timeout).
 */
export async function evalCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const { values, positionals } = parseCommand(EVAL, argv);
  const client = createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir));
  const priority = values.priority === undefined ? undefined : parseInteger(values.priority, '--priority');
  const timeout = values.timeout === undefined ? undefined : parseDurationFlag(values.timeout, '--timeout');
  const interval = values.interval === undefined ? 1 : Math.max(1, parseDurationFlag(values.interval, '--interval'));
  let e = await client.post<EvaluationView>(`/projects/${encodeURIComponent(positionals[0]!)}/evaluations`, {
    ref: values.ref,
    priority,
  });
  if (!values.wait) {
    out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `evaluation ${e.id} of ${e.project} started\n`);
    return 0;
  }
  const deadline = timeout === undefined ? Infinity : Date.now() + timeout * 1000;
  let last = '';
  for (;;) {
    e = await client.get<EvaluationView>(`/evaluations/${e.id}`);
    const counts = Object.entries(e.builds)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    const line = `evaluation ${e.id}: ${e.status}${counts ? ` (${counts})` : ''}`;
    if (line !== last && !values.json) err.write(`${line}\n`);
    last = line;
    if (FINISHED.has(e.status)) break;
    if (Date.now() >= deadline) {
      err.write(`narhub: evaluation ${e.id} has not ended after ${formatDuration(timeout!)}\n`);
      out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `${summary(e)}\n`);
      return 1;
    }
    await sleep(interval * 1000);
  }
  out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `${summary(e)}\n`);
  return e.status === 'succeeded' ? 0 : 1;
}
