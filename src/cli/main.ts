#!/usr/bin/env node
import { isNarhubError } from '../errors.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { parseFlags } from './args.js';
import { CACHE_USAGE, cacheCommand } from './commands/cache.js';
import { CHECK_CONFIG_USAGE, checkConfigCommand } from './commands/check-config.js';
import { KEYGEN_USAGE, keygenCommand } from './commands/keygen.js';
import { PUSH_USAGE, pushCommand } from './commands/push.js';
import { REINDEX_USAGE, reindexCommand } from './commands/reindex.js';
import { serve } from './commands/serve.js';
import { SPOKE_USAGE, spokeCommand } from './commands/spoke.js';
import { TOKEN_USAGE, tokenCommand } from './commands/token.js';
import { UsageError } from './usage-error.js';
import { withRedisUrl } from './hub-runtime.js';
import { BUILD_USAGE, buildCommand } from './commands/build.js';
import { EVAL_USAGE, evalCommand } from './commands/eval.js';
import { PROJECT_USAGE, projectCommand } from './commands/project.js';

const COMMON = '[--data-dir DIR] [--config FILE]';
const USAGE = `usage:
narhub serve ${COMMON} [--listen HOST:PORT] [--redis-url URL]
${CACHE_USAGE.split('\n').map((l) => `${l} ${COMMON}`).join('\n')}
${TOKEN_USAGE.split('\n').map((l) => `${l} ${COMMON}`).join('\n')}
${REINDEX_USAGE} ${COMMON}
${KEYGEN_USAGE}
${PUSH_USAGE}
${SPOKE_USAGE}
${PROJECT_USAGE}
${EVAL_USAGE}
${BUILD_USAGE}
${CHECK_CONFIG_USAGE}

--data-dir defaults to $NARHUB_DATA_DIR, else ./narhub-data.`;

/** Splits the flags every data-directory command shares from the command's own. */
function takeCommon(argv: string[]): { rest: string[]; dataDir?: string; configFile?: string; listen?: string } {
  const rest: string[] = [];
  const found: { dataDir?: string; configFile?: string; listen?: string } = {};
  const names: Record<string, 'dataDir' | 'configFile' | 'listen'> = { '--data-dir': 'dataDir', '--config': 'configFile', '--listen': 'listen' };
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
  const config = (): Config => loadConfig({ file: configFile, overrides: { dataDir, listen } });
  switch (command) {
    case 'serve':
      {
        const { values } = parseFlags(rest, { 'redis-url': { type: 'string' } }, { min: 0, max: 0, names: '' });
        await serve(withRedisUrl(config(), values['redis-url']));
      }
      return process.exitCode === undefined ? 0 : Number(process.exitCode);
    case 'cache':
      if (listen) throw new UsageError('--listen is only for serve');
      await cacheCommand(rest, config, process.stdout);
      return 0;
    case 'token':
      if (listen) throw new UsageError('--listen is only for serve');
      await tokenCommand(rest, config, process.stdout);
      return 0;
    case 'reindex':
      if (listen) throw new UsageError('--listen is only for serve');
      await reindexCommand(rest, config, process.stdout, process.stderr);
      return 0;
    case 'check-config':
      if (dataDir || listen) throw new UsageError('check-config takes no --data-dir or --listen');
      checkConfigCommand(rest, configFile, process.stdout);
      return 0;
    case 'push':
      if (dataDir || configFile || listen) throw new UsageError('push takes no --data-dir, --config or --listen');
      return pushCommand(rest, process.stderr);
    case 'project':
      if (listen) throw new UsageError('--listen is only for serve');
      await projectCommand(rest, config, process.stdout);
      return 0;
    case 'eval':
      if (listen) throw new UsageError('--listen is only for serve');
      return evalCommand(rest, config, process.stdout, process.stderr);
    case 'build':
      if (listen) throw new UsageError('--listen is only for serve');
      await buildCommand(rest, config, process.stdout);
      return 0;
    case 'spoke':
      if (dataDir || configFile || listen) throw new UsageError('spoke takes no --data-dir, --config or --listen');
      return spokeCommand(rest);
    case 'keygen':
      if (dataDir || configFile || listen) throw new UsageError('keygen takes no --data-dir, --config or --listen');
      keygenCommand(rest, process.stdout);
      return 0;
    case undefined:
      throw new UsageError('missing command');
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
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
      process.stderr.write(USAGE + '\n');
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
