import type { Config } from '../../config/schema.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { CACHE_CREATE, CACHE_INFO, CACHE_LIST } from '../specs/cache.js';
import { openRuntime } from '../runtime.js';
import { UsageError } from '../usage-error.js';

/** `narhub cache …`: manage caches in the data directory, also while the server runs. */
export async function cacheCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values, positionals } = parseCommand(CACHE_CREATE, rest);
      const priority = values.priority === undefined ? 40 : parseInteger(values.priority, '--priority');
      if (priority < 0) throw new UsageError('--priority must not be negative');
      const runtime = await openRuntime(await loadConfig());
      try {
        const { cache, publicKey } = await runtime.service.registry.create(positionals[0]!, {
          private: values.private ?? false,
          priority,
        });
        out.write(`${cache.name}\t${publicKey}\n`);
      } finally {
        await runtime.close();
      }
      return;
    }
    case 'list': {
      const { values } = parseCommand(CACHE_LIST, rest);
      const runtime = await openRuntime(await loadConfig());
      try {
        const caches = runtime.service.registry.list().map((c) => runtime.service.registry.info(c.name));
        if (values.json) out.write(`${JSON.stringify(caches, null, 2)}\n`);
        else
          for (const c of caches)
            out.write(
              `${c.name}\t${c.private ? 'private' : 'public'}\tpriority=${c.priority}\t${c.publicKeys.join(' ')}\n`,
            );
      } finally {
        await runtime.close();
      }
      return;
    }
    case 'info': {
      const { values, positionals } = parseCommand(CACHE_INFO, rest);
      const runtime = await openRuntime(await loadConfig());
      try {
        const info = runtime.service.registry.info(positionals[0]!);
        if (values.json) out.write(`${JSON.stringify(info, null, 2)}\n`);
        else {
          out.write(
            `name:        ${info.name}\n` +
              `visibility:  ${info.private ? 'private' : 'public'}\n` +
              `priority:    ${info.priority}\n`,
          );
          for (const k of info.publicKeys) out.write(`public key:  ${k}\n`);
        }
      } finally {
        await runtime.close();
      }
      return;
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing cache subcommand' : `unknown cache subcommand ${JSON.stringify(sub)}`,
      );
  }
}
