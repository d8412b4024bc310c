import type { Config } from '../../config/schema.js';
import type { ApprovalView } from '../../forge/forge-service.js';
import type { AttrHistoryView } from '../../hub/records.js';
import type { EvaluationView, ProjectView } from '../../hub/views.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { clientOptions, createHubClient } from '../hub-client.js';
import {
  PROJECT_APPROVALS,
  PROJECT_APPROVE,
  PROJECT_CREATE,
  PROJECT_DELETE,
  PROJECT_HISTORY,
  PROJECT_LIST,
  PROJECT_NOTIFY_SECRET,
  PROJECT_SHOW,
  PROJECT_UPDATE,
} from '../specs/project.js';
import { UsageError } from '../usage-error.js';

const list = (v: string | undefined) =>
  v === undefined
    ? undefined
    : v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');

/** A flag that clears a setting when given as an empty string. */
const orNull = (v: string | undefined) => (v === undefined ? undefined : v === '' ? null : v);

function describe(p: ProjectView): string {
  const forks = `${p.forkPolicy}${p.forkPolicy === 'users' ? ` ${p.forkUsers.join(', ')}` : ''}`;
  return [
    `project:   ${p.name}`,
    `flake:     ${p.flake}${p.ref ? ` (ref ${p.ref})` : ''}`,
    `systems:   ${p.systems.join(', ')}`,
    `attrs:     ${p.attrs.join(', ')}`,
    `cache:     ${p.cache}`,
    `priority:  ${p.priority}`,
    ...(p.github ? [`github:    ${p.github} (forks: ${forks})`] : []),
    ...(p.pollInterval ? [`polls:     every ${p.pollInterval} s`] : []),
    ...(p.notifyUrl ? [`notifies:  ${p.notifyUrl}`] : []),
  ].join('\n');
}

/** `narhub project …`: manages hub projects through the running server's API. */
export async function projectCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  const client = async (values: { server?: string | undefined; token?: string | undefined }) =>
    createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir));
  switch (sub) {
    case 'create':
    case 'update': {
      const { values, positionals } =
        sub === 'create' ? parseCommand(PROJECT_CREATE, rest) : parseCommand(PROJECT_UPDATE, rest);
      const name = positionals[0]!;
      const body = {
        flake: values.flake,
        ref: values.ref === undefined ? undefined : values.ref === '' ? null : values.ref,
        systems: list(values.systems),
        attrs: list(values.attrs),
        cache: values.cache,
        priority: values.priority === undefined ? undefined : parseInteger(values.priority, '--priority'),
        github: orNull(values.github),
        forkPolicy: values['fork-policy'],
        forkUsers: list(values['fork-users']),
        pollInterval:
          values['poll-interval'] === undefined
            ? undefined
            : values['poll-interval'] === ''
              ? null
              : parseInteger(values['poll-interval'], '--poll-interval'),
        notifyUrl: orNull(values['notify-url']),
      };
      let p: ProjectView;
      if (sub === 'create') {
        if (!values.flake) throw new UsageError('--flake must not be empty');
        p = await (await client(values)).post<ProjectView>(
          '/projects',
          JSON.parse(JSON.stringify({ name, ...body, cache: body.cache ?? 'main' })) as object,
        );
      } else {
        p = await (await client(values)).patch<ProjectView>(
          `/projects/${encodeURIComponent(name)}`,
          JSON.parse(JSON.stringify(body)) as object,
        );
      }
      // A notification URL needs its HMAC key: made by the server, shown this once.
      let notifySecret: string | undefined;
      if (p.notifyUrl && !p.notifySecretSet) {
        ({ secret: notifySecret } = await (await client(values)).post<{ secret: string }>(
          `/projects/${encodeURIComponent(name)}/notify-secret`,
        ));
        p = { ...p, notifySecretSet: true };
      }
      if (values.json) out.write(`${JSON.stringify(notifySecret ? { ...p, notifySecret } : p, null, 2)}\n`);
      else out.write(`${describe(p)}\n${notifySecret ? `notify secret: ${notifySecret} (shown once)\n` : ''}`);
      return;
    }
    case 'list': {
      const { values } = parseCommand(PROJECT_LIST, rest);
      const { projects } = await (await client(values)).get<{ projects: ProjectView[] }>('/projects');
      if (values.json) out.write(`${JSON.stringify(projects, null, 2)}\n`);
      else
        for (const p of projects)
          out.write(`${p.name}\t${p.flake}${p.ref ? `?ref=${p.ref}` : ''}\t${p.systems.join(',')}\t${p.cache}\n`);
      return;
    }
    case 'show': {
      const { values, positionals } = parseCommand(PROJECT_SHOW, rest);
      const c = await client(values);
      const name = encodeURIComponent(positionals[0]!);
      const p = await c.get<ProjectView>(`/projects/${name}`);
      const { evaluations } = await c.get<{ evaluations: EvaluationView[] }>(`/projects/${name}/evaluations?limit=10`);
      if (values.json) {
        out.write(`${JSON.stringify({ ...p, evaluations }, null, 2)}\n`);
        return;
      }
      out.write(`${describe(p)}\n`);
      if (evaluations.length > 0) out.write('evaluations:\n');
      for (const e of evaluations) {
        const counts = Object.entries(e.builds)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ');
        out.write(
          `  ${e.id}\t${e.status}\t${e.revision ?? e.lockedUrl ?? ''}\t${e.createdAt}${counts ? `\t${counts}` : ''}\n`,
        );
      }
      return;
    }
    case 'delete': {
      const { values, positionals } = parseCommand(PROJECT_DELETE, rest);
      await (await client(values)).delete(`/projects/${encodeURIComponent(positionals[0]!)}`);
      out.write(`deleted project ${positionals[0]}\n`);
      return;
    }
    case 'history': {
      const { values, positionals } = parseCommand(PROJECT_HISTORY, rest);
      const q = new URLSearchParams({ attr: positionals[1]! });
      if (values.limit) q.set('limit', String(parseInteger(values.limit, '--limit')));
      const { history } = await (await client(values)).get<{ history: AttrHistoryView[] }>(
        `/projects/${encodeURIComponent(positionals[0]!)}/history?${q}`,
      );
      if (values.json) out.write(`${JSON.stringify(history, null, 2)}\n`);
      else
        for (const h of history) {
          const took = h.durationMs === null ? '' : `${Math.round(h.durationMs / 1000)} s`;
          const columns = [h.evaluation, h.outcome, h.jobset ?? '(commit)', h.commit ?? ''];
          out.write(`${[...columns, took, h.spoke ?? '', h.createdAt].join('\t')}\n`);
        }
      return;
    }
    case 'approvals': {
      const { values, positionals } = parseCommand(PROJECT_APPROVALS, rest);
      const { approvals } = await (await client(values)).get<{ approvals: ApprovalView[] }>(
        `/projects/${encodeURIComponent(positionals[0]!)}/approvals`,
      );
      if (values.json) out.write(`${JSON.stringify(approvals, null, 2)}\n`);
      else
        for (const a of approvals)
          out.write(`#${a.pr}\t${a.status}\t${a.author}\t${a.headRepo}\t${a.headSha}\t${a.title}\n`);
      return;
    }
    case 'approve': {
      const { values, positionals } = parseCommand(PROJECT_APPROVE, rest);
      const pr = parseInteger(values.pr!, '--pr');
      const e = await (await client(values)).post<EvaluationView>(
        `/projects/${encodeURIComponent(positionals[0]!)}/approvals/${pr}`,
      );
      out.write(values.json ? `${JSON.stringify(e, null, 2)}\n` : `approved #${pr}: evaluation ${e.id} started\n`);
      return;
    }
    case 'notify-secret': {
      const { values, positionals } = parseCommand(PROJECT_NOTIFY_SECRET, rest);
      const { secret } = await (await client(values)).post<{ secret: string }>(
        `/projects/${encodeURIComponent(positionals[0]!)}/notify-secret`,
      );
      out.write(`${secret}\n`);
      return;
    }
    case undefined:
      throw new UsageError(
        'missing project subcommand (create, update, list, show, history, delete, approvals, approve, notify-secret)',
      );
    default:
      throw new UsageError(`unknown project subcommand ${JSON.stringify(sub)}`);
  }
}
