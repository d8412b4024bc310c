#!/usr/bin/env node
import { isNarhubError } from '../errors.js';
import type { Config } from '../config/schema.js';
import { type CommandSpec, HelpRequested, helpText, parseCommand, wantsHelp } from './command-spec.js';
import { findCommand } from './specs/index.js';
import { UsageError } from './usage-error.js';
import { helpFor, overview, shortOverview, usageOf } from './usage.js';

// Each command is imported when it runs, and imports only what it needs: `narhub push` or
// `narhub token` must not pay for loading Fastify, the AWS SDK or BullMQ (~0.5 s and ~70 MB).

/** Thrown for `narhub` alone or an unknown command: the list of commands is the usage then. */
class NoCommand extends Error {}

async function main(argv: string[]): Promise<number> {
  const [word, ...words] = argv;
  if (word === 'help' || word === '--help' || word === '-h') {
    if (words.length === 0 || word !== 'help') {
      process.stdout.write(`${overview()}\n`);
      return 0;
    }
    const help = helpFor(words);
    if (help === undefined) throw new NoCommand(`no command ${JSON.stringify(words.join(' '))}`);
    process.stdout.write(`${help}\n`);
    return 0;
  }
  const found = findCommand(argv);
  if (found === undefined)
    throw new NoCommand(word === undefined ? 'missing command' : `unknown command ${JSON.stringify(word)}`);
  if ('group' in found) {
    // `narhub key --help` and `narhub key` + `-h`: the group's help, as `narhub help key`.
    if ((found.sub === undefined || found.sub.startsWith('-')) && wantsHelp(argv)) {
      process.stdout.write(`${helpFor([found.word])}\n`);
      return 0;
    }
    const subs = found.group.map((c) => c.name.split(' ')[1]).join(', ');
    throw new GroupUsage(
      found.sub === undefined
        ? `missing ${found.word} subcommand (${subs})`
        : `unknown ${found.word} subcommand ${JSON.stringify(found.sub)} (${subs})`,
      found.group,
    );
  }
  const { spec, rest } = found;
  try {
    return await run(spec, rest);
  } catch (err) {
    // A usage error thrown inside a command is about that command.
    if (err instanceof UsageError && err.spec === undefined) throw new UsageError(err.message, spec);
    throw err;
  }
}

class GroupUsage extends Error {
  constructor(
    message: string,
    readonly group: CommandSpec[],
  ) {
    super(message);
  }
}

async function run(spec: CommandSpec, rest: string[]): Promise<number> {
  // Parsed here for the flags main needs, and to refuse a bad command line before loading anything.
  const { values } = parseCommand(spec, rest);
  const flag = (name: string) => values[name] as string | undefined;
  // The config (and its schema library) is loaded only by the commands that read it.
  const config = async (): Promise<Config> =>
    (await import('../config/load.js')).loadConfig({
      file: flag('config'),
      overrides: { dataDir: flag('data-dir'), listen: flag('listen') },
    });
  const sub = spec.name.split(' ').slice(1);
  const args = [...sub, ...rest];
  switch (spec.name.split(' ')[0]) {
    case 'serve': {
      const { withRedisUrl } = await import('./hub-runtime.js');
      const { serve } = await import('./commands/serve.js');
      await serve(withRedisUrl(await config(), flag('redis-url')));
      return process.exitCode === undefined ? 0 : Number(process.exitCode);
    }
    case 'cache':
      await (await import('./commands/cache.js')).cacheCommand(args, config, process.stdout);
      return 0;
    case 'gc':
      await (await import('./commands/gc.js')).gcCommand(args, config, process.stdout);
      return 0;
    case 'pin':
      await (await import('./commands/pin.js')).pinCommand(args, config, process.stdout);
      return 0;
    case 'key':
      await (await import('./commands/key.js')).keyCommand(args, config, process.stdout);
      return 0;
    case 'upstream':
      await (await import('./commands/upstream.js')).upstreamCommand(args, config, process.stdout);
      return 0;
    case 'token':
      await (await import('./commands/token.js')).tokenCommand(args, config, process.stdout, process.stderr);
      return 0;
    case 'reindex':
      await (await import('./commands/reindex.js')).reindexCommand(args, config, process.stdout, process.stderr);
      return 0;
    case 'check-config':
      await (await import('./commands/check-config.js')).checkConfigCommand(args, process.stdout);
      return 0;
    case 'push':
      return (await import('./commands/push.js')).pushCommand(args, process.stderr);
    case 'queue-push':
      return (await import('./commands/queue-push.js')).queuePushCommand(args, process.stderr);
    case 'push-daemon':
      return (await import('./commands/push-daemon.js')).pushDaemonCommand(args, process.stderr);
    case 'watch-store':
      return (await import('./commands/watch-store.js')).watchStoreCommand(args, process.stderr);
    case 'project':
      await (await import('./commands/project.js')).projectCommand(args, config, process.stdout);
      return 0;
    case 'eval':
      return (await import('./commands/eval.js')).evalCommand(args, config, process.stdout, process.stderr);
    case 'build':
      await (await import('./commands/build.js')).buildCommand(args, config, process.stdout);
      return 0;
    case 'spoke':
      if (spec.name === 'spoke list') {
        await (await import('./commands/spoke-list.js')).spokeListCommand(rest, config, process.stdout);
        return 0;
      }
      return (await import('./commands/spoke.js')).spokeCommand(args);
    case 'keygen':
      (await import('./commands/keygen.js')).keygenCommand(args, process.stdout);
      return 0;
    default:
      throw new Error(`no runner for ${spec.name}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${helpText(err.spec)}\n`);
      process.exitCode = 0;
    } else if (err instanceof UsageError || err instanceof GroupUsage || err instanceof NoCommand) {
      process.stderr.write(`narhub: ${err.message}\n`);
      const usage =
        err instanceof UsageError && err.spec
          ? usageOf([err.spec])
          : err instanceof GroupUsage
            ? usageOf(err.group)
            : shortOverview();
      process.stderr.write(`${usage}\n`);
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
