import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HelpRequested, helpText, parseCommand, usageLine } from '../../../src/cli/command-spec.js';
import { COMMANDS, findCommand } from '../../../src/cli/specs/index.js';
import { UsageError } from '../../../src/cli/usage-error.js';
import { splitCommandLine } from '../../helpers/shell-words.js';

describe('every command spec', () => {
  for (const spec of COMMANDS) {
    it(`${spec.name}: the help says what it does, every flag with its default, and an example`, () => {
      const help = helpText(spec);
      assert.ok(help.startsWith(`usage: narhub ${spec.name}`), help);
      assert.ok(spec.summary.length > 10);
      assert.ok(help.includes(spec.summary.split(' ').slice(0, 4).join(' ')), 'the summary');
      for (const [name, flag] of Object.entries(spec.flags)) {
        assert.ok(help.includes(`--${name}`), `--${name} is in the help`);
        if (flag.default !== undefined)
          assert.ok(help.replace(/\s+/g, ' ').includes(`(default: ${flag.default})`), `default of --${name}`);
        if (!flag.hidden) assert.ok(usageLine(spec).includes(`--${name}`), `--${name} is in the usage line`);
      }
      assert.ok(spec.examples.length > 0, 'has an example');
      // Prose is wrapped for an 80-column terminal; an example is a command line and stays whole.
      for (const line of help.split('\n'))
        assert.ok(line.length <= (line.startsWith('  narhub ') ? 120 : 80), `help line too long: ${line}`);
    });

    it(`${spec.name}: every example parses`, () => {
      for (const example of spec.examples) {
        const words = splitCommandLine(example);
        assert.equal(words[0], 'narhub');
        const found = findCommand(words.slice(1));
        assert.ok(found && 'spec' in found && found.spec === spec, example);
        assert.doesNotThrow(() => parseCommand(spec, found.rest), example);
      }
    });
  }
});

describe('parseCommand', () => {
  const cacheCreate = COMMANDS.find((c) => c.name === 'cache create')!;
  const tokenCreate = COMMANDS.find((c) => c.name === 'token create')!;
  const message = (spec: typeof cacheCreate, argv: string[]) => {
    try {
      parseCommand(spec, argv);
    } catch (err) {
      assert.ok(err instanceof UsageError, String(err));
      assert.equal(err.spec, spec, 'the error carries the command, so only its usage is shown');
      return err.message;
    }
    assert.fail(`accepted ${argv.join(' ')}`);
  };

  it('names the one thing that is wrong', () => {
    assert.equal(message(cacheCreate, []), 'missing NAME');
    assert.equal(message(cacheCreate, ['a', 'b']), 'unexpected argument "b"');
    assert.equal(message(cacheCreate, ['a', '--bogus']), 'unknown flag --bogus for narhub cache create');
    assert.equal(message(cacheCreate, ['a', '--priority']), '--priority needs a value');
    assert.equal(message(cacheCreate, ['a', '--private=yes']), '--private takes no value');
    assert.equal(message(tokenCreate, ['--cache', 'main']), 'missing --perm');
  });

  it('answers --help and -h before checking anything else', () => {
    assert.throws(() => parseCommand(cacheCreate, ['--help']), HelpRequested);
    assert.throws(() => parseCommand(cacheCreate, ['a', 'b', '--bogus', '-h']), HelpRequested);
    assert.throws(
      () => parseCommand(cacheCreate, ['a', '--', '--help']),
      UsageError,
      'after --, --help is an argument',
    );
  });

  it('returns typed values and positionals', () => {
    const { values, positionals } = parseCommand(cacheCreate, ['team', '--private', '--priority', '30']);
    assert.deepEqual(positionals, ['team']);
    assert.equal(values.private, true);
    assert.equal(values.priority, '30');
  });
});

describe('findCommand', () => {
  it('finds commands, subcommands and groups', () => {
    const serve = findCommand(['serve', '--listen', 'x:1']);
    assert.ok(serve && 'spec' in serve && serve.spec.name === 'serve');
    assert.deepEqual(serve.rest, ['--listen', 'x:1']);
    const info = findCommand(['cache', 'info', 'main']);
    assert.ok(info && 'spec' in info && info.spec.name === 'cache info');
    assert.deepEqual(info.rest, ['main']);
    const group = findCommand(['cache', 'frob']);
    assert.ok(group && 'group' in group && group.sub === 'frob' && group.group.length === 5);
    assert.equal(findCommand(['frobnicate']), undefined);
  });
});
