import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { missingNodeFlags, NODE_FLAGS } from '../../../src/cli/node-flags.js';

// dist/test/unit/cli -> the repository
const repo = (path: string) => fileURLToPath(new URL(`../../../../${path}`, import.meta.url));

describe('the V8 flags narhub runs with', () => {
  it('are in npm start; the shebang stays plain, since BusyBox env has no -S', () => {
    assert.equal(readFileSync(repo('src/cli/main.ts'), 'utf8').split('\n')[0], '#!/usr/bin/env node');
    const pkg = JSON.parse(readFileSync(repo('package.json'), 'utf8')) as {
      scripts: Record<string, string>;
      bin: Record<string, string>;
    };
    assert.equal(pkg.scripts.start, `node ${NODE_FLAGS.join(' ')} dist/src/cli/main.js serve`);
    assert.equal(pkg.bin.narhub, 'dist/src/cli/main.js');
  });

  it('are told missing by name, whatever value was given', () => {
    assert.deepEqual(missingNodeFlags([]), [...NODE_FLAGS]);
    assert.deepEqual(missingNodeFlags(['--inspect', '--max-old-space-size=512']), [...NODE_FLAGS]);
    assert.deepEqual(missingNodeFlags([...NODE_FLAGS]), []);
    assert.deepEqual(missingNodeFlags(['--initial-old-space-size=128']), []);
    assert.deepEqual(missingNodeFlags(['--initial_old_space_size=64']), []);
  });

  it("are the Nix package's, whose wrapper passes them to node", () => {
    const nix = readFileSync(repo('nixos/package.nix'), 'utf8');
    const list = /^\s*nodeFlags = \[([^\]]*)\];$/m.exec(nix);
    assert.ok(list, 'nixos/package.nix defines nodeFlags');
    assert.deepEqual(
      [...list[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]),
      [...NODE_FLAGS],
    );
    assert.match(nix, /makeWrapper \$\{lib\.getExe nodejs_24\} \$out\/bin\/narhub/);
  });

  it('are accepted by this Node', () => {
    const res = spawnSync(process.execPath, [...NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
    assert.equal(res.stderr, '');
    assert.equal(res.stdout, 'ok');
  });
});
