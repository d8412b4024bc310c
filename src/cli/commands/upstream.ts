import type { Config } from '../../config/schema.js';
import type { UpstreamView } from '../../cache/upstream/upstream-admin.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { UPSTREAM_ADD, UPSTREAM_LIST, UPSTREAM_REMOVE } from '../specs/upstream.js';
import { openRuntime, type Runtime } from '../runtime.js';
import { UsageError } from '../usage-error.js';

function line(u: UpstreamView): string {
  return `${u.priority}\t${u.url}\t${u.publicKeys.join(' ')}${u.declared ? '\t(config)' : ''}\n`;
}

/** `narhub upstream …`: a cache's upstreams, in the data directory, also while the server runs. */
export async function upstreamCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  const withRuntime = async (work: (runtime: Runtime) => void): Promise<void> => {
    const runtime = await openRuntime(await loadConfig());
    try {
      work(runtime);
    } finally {
      await runtime.close();
    }
  };
  switch (sub) {
    case 'add': {
      const { values, positionals } = parseCommand(UPSTREAM_ADD, rest);
      const priority = values.priority === undefined ? undefined : parseInteger(values.priority, '--priority');
      if (priority !== undefined && priority < 0) throw new UsageError('--priority must not be negative');
      return withRuntime(({ service }) => {
        const cache = service.registry.require(positionals[0]!);
        out.write(
          line(
            service.upstreams.add(cache, { url: positionals[1]!, publicKeys: values['public-key'] ?? [], priority }),
          ),
        );
      });
    }
    case 'list': {
      const { values, positionals } = parseCommand(UPSTREAM_LIST, rest);
      return withRuntime(({ service }) => {
        const upstreams = service.upstreams.list(service.registry.require(positionals[0]!));
        if (values.json) out.write(`${JSON.stringify(upstreams, null, 2)}\n`);
        else for (const u of upstreams) out.write(line(u));
      });
    }
    case 'remove': {
      const { positionals } = parseCommand(UPSTREAM_REMOVE, rest);
      return withRuntime(({ service }) => {
        service.upstreams.remove(service.registry.require(positionals[0]!), positionals[1]!);
      });
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing upstream subcommand' : `unknown upstream subcommand ${JSON.stringify(sub)}`,
      );
  }
}
