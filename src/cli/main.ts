#!/usr/bin/env node
import { isNarhubError } from '../errors.js';
import type { Config } from '../config/schema.js';
import { parseFlags } from './args.js';
import { UsageError } from './usage-error.js';
import { USAGE } from './usage.js';

// Each command is imported when it runs, and imports only what it needs: `narhub push` or
// `narhub token` must not pay for loading Fastify, the AWS SDK or BullMQ (~0.5 s and ~70 MB).

/** Splits the flags every data-directory command shares from the command's own. */
function takeCommon(argv: string[]): { rest: string[]; dataDir?: string; configFile?: string; listen?: string } {
  const rest: string[] = [];
  const found: { dataDir?: string; configFile?: string; listen?: string } = {};
  const names: Record<string, 'dataDir' | 'configFile' | 'listen'> = {
    '--data-dir': 'dataDir',
    '--config': 'configFile',
    '--listen': 'listen',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const key = names[flag];
    if (!key) {
      rest.push(arg);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
    found[key] = value;
  }
  return { rest, ...found };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const { rest, dataDir, configFile, listen } = takeCommon(args);
  // The config (and its schema library) is loaded only by the commands that read it.
  const config = async (): Promise<Config> =>
    (await import('../config/load.js')).loadConfig({ file: configFile, overrides: { dataDir, listen } });
  const noListen = () => {
    if (listen) throw new UsageError('--listen is only for serve');
  };
  switch (command) {
    case 'serve': {
      const { values } = parseFlags(rest, { 'redis-url': { type: 'string' } }, { min: 0, max: 0, names: '' });
      const { withRedisUrl } = await import('./hub-runtime.js');
      const { serve } = await import('./commands/serve.js');
      await serve(withRedisUrl(await config(), values['redis-url']));
      return process.exitCode === undefined ? 0 : Number(process.exitCode);
    }
    case 'cache':
      noListen();
      await (await import('./commands/cache.js')).cacheCommand(rest, config, process.stdout);
      return 0;
    case 'token':
      noListen();
      await (await import('./commands/token.js')).tokenCommand(rest, config, process.stdout);
      return 0;
    case 'reindex':
      noListen();
      await (await import('./commands/reindex.js')).reindexCommand(rest, config, process.stdout, process.stderr);
      return 0;
    case 'check-config':
      if (dataDir || listen) throw new UsageError('check-config takes no --data-dir or --listen');
      await (await import('./commands/check-config.js')).checkConfigCommand(rest, configFile, process.stdout);
      return 0;
    case 'push':
      if (dataDir || configFile || listen) throw new UsageError('push takes no --data-dir, --config or --listen');
      return (await import('./commands/push.js')).pushCommand(rest, process.stderr);
    case 'project':
      noListen();
      await (await import('./commands/project.js')).projectCommand(rest, config, process.stdout);
      return 0;
    case 'eval':
      noListen();
      return (await import('./commands/eval.js')).evalCommand(rest, config, process.stdout, process.stderr);
    case 'build':
      noListen();
      await (await import('./commands/build.js')).buildCommand(rest, config, process.stdout);
      return 0;
    case 'spoke':
      if (dataDir || configFile || listen) throw new UsageError('spoke takes no --data-dir, --config or --listen');
      return (await import('./commands/spoke.js')).spokeCommand(rest);
    case 'keygen':
      if (dataDir || configFile || listen) throw new UsageError('keygen takes no --data-dir, --config or --listen');
      (await import('./commands/keygen.js')).keygenCommand(rest, process.stdout);
      return 0;
    case undefined:
      throw new UsageError('missing command');
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`narhub: ${err.message}\n`);
      process.stderr.write(`${USAGE}\n`);
      process.exitCode = 2;
    } else if (isNarhubError(err)) {
      process.stderr.write(`narhub: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`narhub: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
