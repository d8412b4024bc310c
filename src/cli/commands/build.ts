import type { Config } from '../../config/schema.js';
import type { RequesterView } from '../../hub/records.js';
import type { BuildView } from '../../hub/views.js';
import { parseCommand } from '../command-spec.js';
import { clientOptions, createHubClient } from '../hub-client.js';
import { BUILD_CANCEL, BUILD_LIST, BUILD_LOG, BUILD_RESTART, BUILD_SHOW } from '../specs/build.js';
import { UsageError } from '../usage-error.js';

function describe(b: BuildView): string {
  const lines = [
    `derivation:  ${b.drvPath}`,
    `status:      ${b.status}${b.failureKind ? ` (${b.failureKind})` : ''}${b.waitingFor ? `: ${b.waitingFor}` : ''}`,
    `attempt:     ${b.attempt}`,
    `system:      ${b.system}${b.requiredFeatures.length > 0 ? ` with ${b.requiredFeatures.join(', ')}` : ''}`,
  ];
  for (const [name, path] of Object.entries(b.outputs)) lines.push(`${`output ${name}:`.padEnd(13)} ${path}`);
  if (b.spoke) lines.push(`spoke:       ${b.spoke}`);
  if (b.error) lines.push(`error:       ${b.error}`);
  if (b.failedDependency) lines.push(`failed dependency: ${b.failedDependency}`);
  for (const r of (b as { requestedBy?: RequesterView[] }).requestedBy ?? []) {
    const jobset = r.jobset ? ` on ${r.jobset}` : '';
    const commit = r.commit ? ` at ${r.commit.slice(0, 12)}` : '';
    const attr = r.attr ? ` (${r.attr})` : '';
    lines.push(`asked by:    evaluation ${r.evaluation} of ${r.project}${jobset}${commit}${attr}`);
  }
  if (b.startedAt) lines.push(`started:     ${b.startedAt}`);
  if (b.finishedAt) lines.push(`finished:    ${b.finishedAt}`);
  return lines.join('\n');
}

/** `narhub build …`: inspect, restart or cancel the build of one derivation, or read its log. */
export async function buildCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  const client = async (values: { server?: string | undefined; token?: string | undefined }) =>
    createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir));
  const key = (p: string) => encodeURIComponent(p.replace(/^\/nix\/store\//, ''));
  switch (sub) {
    case 'show':
    case 'restart':
    case 'cancel': {
      const spec = sub === 'show' ? BUILD_SHOW : sub === 'restart' ? BUILD_RESTART : BUILD_CANCEL;
      const { values, positionals } = parseCommand(spec, rest);
      const c = await client(values);
      const b =
        sub === 'show'
          ? await c.get<BuildView>(`/builds/${key(positionals[0]!)}`)
          : await c.post<BuildView>(`/builds/${key(positionals[0]!)}/${sub}`);
      out.write(values.json ? `${JSON.stringify(b, null, 2)}\n` : `${describe(b)}\n`);
      return;
    }
    case 'log': {
      const { values, positionals } = parseCommand(BUILD_LOG, rest);
      const c = await client(values);
      if (!values.follow) {
        for await (const chunk of c.stream(`/builds/${key(positionals[0]!)}/log`, 'text/plain')) out.write(chunk);
        return;
      }
      // Server-Sent Events: `event: log` chunks, then `event: end` with the build's status.
      let buffer = '';
      for await (const chunk of c.stream(`/builds/${key(positionals[0]!)}/log?follow=true`, 'text/event-stream')) {
        buffer += chunk;
        let at: number;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (event === 'log') out.write(data);
          else if (event === 'end') return;
          else if (event === 'error') throw new Error(data);
        }
      }
      return;
    }
    case 'list': {
      const { values } = parseCommand(BUILD_LIST, rest);
      const q = new URLSearchParams();
      if (values.status) q.set('status', values.status);
      if (values['out-path']) q.set('outPath', values['out-path']);
      for (const k of ['project', 'branch', 'attr', 'spoke', 'limit'] as const) if (values[k]) q.set(k, values[k]);
      const { builds } = await (await client(values)).get<{ builds: BuildView[] }>(
        `/builds${q.size > 0 ? `?${q}` : ''}`,
      );
      if (values.json) out.write(`${JSON.stringify(builds, null, 2)}\n`);
      else
        for (const b of builds) {
          const took =
            b.startedAt && b.finishedAt
              ? `${Math.round((Date.parse(b.finishedAt) - Date.parse(b.startedAt)) / 1000)} s`
              : '';
          out.write(`${b.status}\t${b.drvPath}\t${b.spoke ?? ''}\t${took}${b.waitingFor ? `\t${b.waitingFor}` : ''}\n`);
        }
      return;
    }
    case undefined:
      throw new UsageError('missing build subcommand (show, restart, cancel, log, list)');
    default:
      throw new UsageError(`unknown build subcommand ${JSON.stringify(sub)}`);
  }
}
