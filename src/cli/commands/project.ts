import type { Config } from '../../config/schema.js';
import type { EvaluationView, ProjectView } from '../../hub/views.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { clientOptions, createHubClient } from '../hub-client.js';
import { PROJECT_CREATE, PROJECT_DELETE, PROJECT_LIST, PROJECT_SHOW, PROJECT_UPDATE } from '../specs/project.js';
import { UsageError } from '../usage-error.js';

const list = (v: string | undefined) =>
  v === undefined
    ? undefined
    : v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');

function describe(p: ProjectView): string {
  return [
    `project:   ${p.name}`,
    `flake:     ${p.flake}${p.ref ? ` (ref ${p.ref})` : ''}`,
    `systems:   ${p.systems.join(', ')}`,
    `attrs:     ${p.attrs.join(', ')}`,
    `cache:     ${p.cache}`,
    `priority:  ${p.priority}`,
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
      };
      let p: ProjectView;
      if (sub === 'create') {
        if (!values.flake) throw new UsageError('--flake must not be empty');
        p = await (await client(values)).post<ProjectView>('/projects', { name, ...body, cache: body.cache ?? 'main' });
      } else {
        p = await (await client(values)).patch<ProjectView>(
          `/projects/${encodeURIComponent(name)}`,
          JSON.parse(JSON.stringify(body)) as object,
        );
      }
      out.write(values.json ? `${JSON.stringify(p, null, 2)}\n` : `${describe(p)}\n`);
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
    case undefined:
      throw new UsageError('missing project subcommand (create, update, list, show, delete)');
    default:
      throw new UsageError(`unknown project subcommand ${JSON.stringify(sub)}`);
  }
}
