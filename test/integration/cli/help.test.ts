import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS } from '../../../src/cli/specs/index.js';
import { runCli } from '../../helpers/server.js';

test('narhub help lists every command with what it does', async () => {
  for (const args of [['help'], ['--help'], ['-h']]) {
    const res = await runCli(args);
    assert.equal(res.code, 0, res.stderr);
    for (const c of COMMANDS) assert.match(res.stdout, new RegExp(`^  ${c.name} +${c.summary.slice(0, 20)}`, 'm'));
  }
});

test('narhub COMMAND --help and narhub help COMMAND print the same help: usage, flags, defaults, example', async () => {
  for (const name of ['cache create', 'push', 'token create', 'spoke']) {
    const viaFlag = await runCli([...name.split(' '), '--help']);
    const viaHelp = await runCli(['help', ...name.split(' ')]);
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.equal(viaHelp.code, 0, viaHelp.stderr);
    assert.equal(viaFlag.stdout, viaHelp.stdout);
    assert.match(viaFlag.stdout, new RegExp(`^usage: narhub ${name}`));
    assert.match(viaFlag.stdout, /\nflags:\n/);
    assert.match(viaFlag.stdout, /\(default: /);
    assert.match(viaFlag.stdout, new RegExp(`\nexamples?:\n  narhub ${name}`));
  }
  const group = await runCli(['help', 'cache']);
  assert.equal(group.code, 0);
  for (const sub of ['create', 'list', 'info'])
    assert.match(group.stdout, new RegExp(`^usage: narhub cache ${sub}`, 'm'));
});

test('narhub GROUP --help (or -h) prints every subcommand’s help, as narhub help GROUP does', async () => {
  for (const group of ['cache', 'key', 'pin', 'token']) {
    const viaHelp = await runCli(['help', group]);
    assert.equal(viaHelp.code, 0, viaHelp.stderr);
    for (const flag of ['--help', '-h']) {
      const viaFlag = await runCli([group, flag]);
      assert.equal(viaFlag.code, 0, `${group} ${flag}: ${viaFlag.stderr}`);
      assert.equal(viaFlag.stdout, viaHelp.stdout, `${group} ${flag}`);
    }
    for (const c of COMMANDS.filter((c) => c.name.startsWith(`${group} `)))
      assert.match(viaHelp.stdout, new RegExp(`^usage: narhub ${c.name}`, 'm'));
  }
});

test("a usage error names the one thing wrong and shows only that command's usage", async () => {
  const cases: [string[], RegExp, RegExp][] = [
    [['cache', 'create'], /^narhub: missing NAME$/m, /^usage: narhub cache create NAME/m],
    [['token', 'create', '--cache', 'main'], /^narhub: missing --perm$/m, /^usage: narhub token create/m],
    [['push', 'http://x/main', 'p', '--jobs'], /^narhub: --jobs needs a value$/m, /^usage: narhub push/m],
    [['keygen', 'k', '--bogus'], /^narhub: unknown flag --bogus for narhub keygen$/m, /^usage: narhub keygen/m],
    [['cache', 'frob'], /^narhub: unknown cache subcommand "frob"/m, /^usage: narhub cache create/m],
  ];
  for (const [args, message, usage] of cases) {
    const res = await runCli(args);
    assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, message, args.join(' '));
    assert.match(res.stderr, usage, args.join(' '));
    const others = COMMANDS.filter((c) => !c.name.startsWith(args[0]!));
    for (const c of others) assert.ok(!res.stderr.includes(`narhub ${c.name} `), `${args.join(' ')} shows ${c.name}`);
  }
});
