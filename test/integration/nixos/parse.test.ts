// Every .nix file of the repository parses (`nix-instantiate --parse`): the flake, the package,
// the NixOS module, the VM tests and the test fixtures. The VM tests cannot run here, so this is
// the least that must hold for them.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repoRoot } from '../../helpers/repo.js';

const run = promisify(execFile);
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', '.tmp', 'narhub-data', 'result']);

function nixFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) out.push(...nixFiles(join(dir, entry.name)));
    } else if (entry.isFile() && entry.name.endsWith('.nix')) {
      out.push(join(dir, entry.name));
    }
  }
  return out.sort();
}

test('every .nix file parses with nix-instantiate --parse', async () => {
  const root = repoRoot();
  const files = nixFiles(root);
  const names = files.map((f) => relative(root, f));
  for (const expected of [
    'flake.nix',
    'nixos/package.nix',
    'nixos/npm-lock.nix',
    'nixos/module.nix',
    'nixos/push.nix',
    'nixos/hardening.nix',
    'nixos/checks.nix',
    'nixos/tests/cache.nix',
    'nixos/tests/hub-spokes.nix',
    'nixos/tests/push.nix',
    'nixos/tests/npm-test.nix',
    'test/integration/nixos/eval-module.nix',
  ]) {
    assert.ok(names.includes(expected), `${expected} is missing (found: ${names.join(', ')})`);
  }
  const failures: string[] = [];
  for (const file of files) {
    try {
      await run('nix-instantiate', ['--parse', file], {
        env: { ...process.env, NIX_PATH: '' },
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      failures.push(`${relative(root, file)}: ${(e.stderr ?? e.message).trim()}`);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('flake.lock is valid JSON pinning nixpkgs', async () => {
  const { readFile } = await import('node:fs/promises');
  const lock = JSON.parse(await readFile(join(repoRoot(), 'flake.lock'), 'utf8')) as {
    version: number;
    root: string;
    nodes: Record<
      string,
      { inputs?: Record<string, string>; locked?: Record<string, unknown>; original?: Record<string, unknown> }
    >;
  };
  assert.equal(lock.version, 7);
  const root = lock.nodes[lock.root];
  assert.ok(root?.inputs?.nixpkgs, 'the root node has a nixpkgs input');
  const nixpkgs = lock.nodes[root.inputs.nixpkgs];
  assert.equal(nixpkgs?.locked?.type, 'github');
  assert.match(String(nixpkgs?.locked?.rev), /^[0-9a-f]{40}$/);
  assert.match(String(nixpkgs?.locked?.narHash), /^sha256-[A-Za-z0-9+/]{43}=$/);
  assert.deepEqual(nixpkgs?.original, { owner: 'NixOS', ref: 'nixos-25.11', repo: 'nixpkgs', type: 'github' });
});
