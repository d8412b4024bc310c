/**
 * The `.drv` parser against Nix 2.8 itself: derivations instantiated by the real
 * `nix-instantiate` (with escapes, several outputs, a fixed output, input derivations and
 * sources) must parse to exactly what `nix show-derivation` prints. Fails without Nix.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inputPathsOf, outputPathsOf, parseDerivation, type Derivation } from '../../../src/nix/derivation.js';
import { regularFileOfNar } from '../../../src/nix/nar/regular-file.js';
import { narFromTree } from '../../../src/nix/nar/nar-writer.js';
import { createNixEnv } from '../../helpers/nix.js';

const FIXTURE = `{ nonce }:
let
  src = builtins.toFile "src-\${nonce}.txt" "a source";
  dep = derivation {
    name = "dep-\${nonce}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    outputs = [ "out" "dev" ];
    args = [ "-c" "echo 'quote \\" backslash \\\\ tab \\t newline \\n' > $out; touch $dev" ];
    weird = "cr \\r done, unicode ✓";
  };
  fixed = derivation {
    name = "fixed-\${nonce}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo -n hello > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
in derivation {
  name = "top-\${nonce}";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "cat \${dep.dev} \${fixed} \${src} > $out" ];
  inherit src;
  empty = "";
}
`;

describe('parseDerivation', () => {
  it('reads what nix-instantiate wrote exactly as nix show-derivation does', async (t) => {
    const nix = await createNixEnv(t);
    const file = join(nix.workDir, 'fixture.nix');
    await writeFile(file, FIXTURE);
    const top = (await nix.run('nix-instantiate', [file, '--argstr', 'nonce', String(Date.now())])).stdout.trim();
    const shown = JSON.parse(
      (await nix.run('nix', ['--extra-experimental-features', 'nix-command', 'show-derivation', '-r', top])).stdout,
    ) as Record<
      string,
      {
        outputs: Record<string, { path: string; hashAlgo?: string; hash?: string }>;
        inputDrvs: Record<string, string[]>;
        inputSrcs: string[];
        system: string;
        builder: string;
        args: string[];
        env: Record<string, string>;
      }
    >;
    assert.equal(Object.keys(shown).length, 3);
    const parsed = new Map<string, Derivation>();
    for (const [path, want] of Object.entries(shown)) {
      const drv = parseDerivation(readFileSync(path, 'utf8'));
      parsed.set(path, drv);
      assert.deepEqual(drv.args, want.args, path);
      assert.deepEqual(drv.env, want.env, path);
      assert.equal(drv.builder, want.builder);
      assert.equal(drv.platform, want.system);
      assert.deepEqual(drv.inputSrcs, want.inputSrcs);
      assert.deepEqual(drv.inputDrvs, want.inputDrvs);
      for (const [name, out] of Object.entries(want.outputs)) {
        assert.deepEqual(
          drv.outputs[name],
          { path: out.path, hashAlgo: out.hashAlgo ?? '', hash: out.hash ?? '' },
          `${path}!${name}`,
        );
      }
      assert.deepEqual(Object.keys(drv.outputs).sort(), Object.keys(want.outputs).sort());
    }
    // The escapes really were exercised.
    const dep = [...parsed.values()].find((d) => d.outputs.dev);
    assert.ok(dep?.args[1]?.includes('quote " backslash \\ tab \t newline \n'));
    assert.ok(dep?.env.weird?.includes('cr \r done, unicode ✓'));

    const inputs = inputPathsOf(parsed.get(top)!, (p) => outputPathsOf(parsed.get(p)!));
    const fixedDrv = Object.keys(shown[top]!.inputDrvs).find((p) => p.includes('-fixed-'))!;
    const depDrv = Object.keys(shown[top]!.inputDrvs).find((p) => p.includes('-dep-'))!;
    assert.deepEqual(
      inputs,
      [...shown[top]!.inputSrcs, shown[fixedDrv]!.outputs.out!.path, shown[depDrv]!.outputs.dev!.path].sort(),
    );
    assert.ok(!inputs.includes(shown[depDrv]!.outputs.out!.path), 'only the outputs used are inputs');
  });

  it('rejects what is not a derivation, with where', () => {
    for (const bad of [
      '',
      'Derive(',
      'Derive([],[],[],"x","y",[],[])',
      'Derive([("out","/p","","")],[],[],"x","y",[],[("a","\\q")])',
      'Derive([("out","/p","","")],[],[],"x","y",[],[])x',
    ]) {
      assert.throws(
        () => parseDerivation(bad),
        (err: Error & { code?: string }) =>
          err.code === 'BAD_REQUEST' && /not a derivation: .* at offset \d+/.test(err.message),
        bad,
      );
    }
  });
});

describe('regularFileOfNar', () => {
  const nar = (tree: Parameters<typeof narFromTree>[0]) => Buffer.concat([...narFromTree(tree)]);
  it('returns the one file of a NAR, executable or not', () => {
    assert.equal(
      regularFileOfNar(nar({ type: 'regular', contents: Buffer.from('Derive(…)') })).toString(),
      'Derive(…)',
    );
    assert.equal(
      regularFileOfNar(nar({ type: 'regular', contents: Buffer.from('x'), executable: true })).toString(),
      'x',
    );
    assert.equal(regularFileOfNar(nar({ type: 'regular', contents: Buffer.alloc(0) })).length, 0);
  });
  it('rejects directories, symlinks, truncation and trailing bytes', () => {
    const file = nar({ type: 'regular', contents: Buffer.from('hello') });
    for (const bad of [
      nar({ type: 'directory', entries: {} }),
      nar({ type: 'symlink', target: '/x' }),
      file.subarray(0, file.length - 8),
      Buffer.concat([file, Buffer.alloc(8)]),
    ]) {
      assert.throws(() => regularFileOfNar(bad), { code: 'NAR_INVALID' });
    }
  });
});
