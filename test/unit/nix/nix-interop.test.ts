/**
 * Interoperability with the real Nix client (Debian's nix-bin, 2.8). These tests need `nix` and
 * `nix-store` on PATH and write to /nix/store; they fail rather than skip when Nix is missing,
 * because byte-exact agreement with Nix is the whole point of src/nix.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCacheInfo } from '../../../src/nix/cache-info.js';
import { formatNarInfo, parseNarInfo, type NarInfo } from '../../../src/nix/narinfo.js';
import {
  formatPublicKey,
  formatSecretKey,
  generateKeyPair,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  signDetached,
  signNarInfo,
  verifyDetached,
  verifyNarInfoSig,
} from '../../../src/nix/signing.js';
import { parseStorePath } from '../../../src/nix/store-path.js';

interface PathInfoJson {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  signatures?: string[];
}

describe('interop with the real Nix client', () => {
  let dir = '';
  let env: NodeJS.ProcessEnv = {};
  const created: string[] = [];

  /** Runs a Nix command in the test's private configuration; returns trimmed stdout. */
  function nix(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): string {
    try {
      return execFileSync(cmd, args, {
        cwd: dir,
        env: { ...env, ...extraEnv },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).trim();
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT')
        throw new Error(`${cmd} not found: these tests need the real Nix client (apt-get install nix-bin)`);
      throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
    }
  }

  function pathInfo(path: string): PathInfoJson {
    const [info] = JSON.parse(nix('nix', ['path-info', '--json', path])) as PathInfoJson[];
    assert.ok(info);
    return info;
  }

  /** The narinfo Nix would publish for a local path, minus the NAR location. */
  function asNarInfo(info: PathInfoJson): NarInfo {
    return {
      storePath: info.path,
      url: 'nar/unused.nar',
      compression: 'none',
      narHash: info.narHash,
      narSize: info.narSize,
      references: info.references.map((r) => parseStorePath(r).basename),
      sigs: [],
    };
  }

  /** Builds a derivation with two run-time references; unique per run so no old signatures linger. */
  function buildWithRefs(): string {
    const nonce = randomBytes(8).toString('hex');
    const file = join(dir, `withrefs-${nonce}.nix`);
    writeFileSync(
      file,
      `let a = builtins.toFile "a.txt" "a ${nonce}"; b = builtins.toFile "b.txt" "b ${nonce}"; in
       derivation { name = "withrefs"; system = builtins.currentSystem; builder = "/bin/sh";
                    args = [ "-c" "echo \${b} \${a} > $out" ]; }`,
    );
    const out = nix('nix-build', ['--no-out-link', file]);
    created.push(out, ...pathInfo(out).references);
    return out;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'narhub-nix-interop-'));
    for (const sub of ['conf', 'cache', 'config', 'home']) mkdirSync(join(dir, sub));
    writeFileSync(
      join(dir, 'conf', 'nix.conf'),
      'experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =\n',
    );
    // Private config and caches: nothing reaches cache.nixos.org and runs do not see each other.
    env = {
      ...process.env,
      NIX_CONF_DIR: join(dir, 'conf'),
      XDG_CACHE_HOME: join(dir, 'cache'),
      XDG_CONFIG_HOME: join(dir, 'config'),
      HOME: join(dir, 'home'),
    };
  });

  after(() => {
    if (created.length > 0) {
      try {
        nix('nix-store', ['--delete', ...created]);
      } catch {
        // Best effort: leftovers in /nix/store are harmless and unique per run.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads keys made by nix-store --generate-binary-cache-key', () => {
    nix('nix-store', ['--generate-binary-cache-key', 'test-1', 'sk', 'pk']);
    const skText = readFileSync(join(dir, 'sk'), 'utf8');
    const pkText = readFileSync(join(dir, 'pk'), 'utf8');
    const sk = parseSecretKey(skText);
    const pk = parsePublicKey(pkText);
    assert.equal(sk.name, 'test-1');
    assert.deepEqual(publicKeyOf(sk), pk);
    // Nix writes no trailing newline; narhub formats the files identically.
    assert.equal(formatSecretKey(sk), skText);
    assert.equal(formatPublicKey(pk), pkText);
    const sig = signDetached(sk, 'some message');
    assert.ok(verifyDetached([pk], 'some message', sig));
  });

  it('verifies signatures that Nix made with its own key', () => {
    const sk = parseSecretKey(readFileSync(join(dir, 'sk'), 'utf8'));
    const pk = publicKeyOf(sk);
    const out = buildWithRefs();
    nix('nix', ['store', 'sign', '-k', join(dir, 'sk'), out]);
    const info = pathInfo(out);
    const sig = info.signatures?.find((s) => s.startsWith('test-1:'));
    assert.ok(sig, JSON.stringify(info));
    assert.ok(verifyNarInfoSig([pk], asNarInfo(info), sig));
  });

  it('signs exactly as Nix does when Nix uses a narhub-generated key', () => {
    const pair = generateKeyPair('narhub-test-1');
    const skFile = join(dir, 'narhub-sk');
    writeFileSync(skFile, formatSecretKey(pair.secret));

    const file = join(dir, `file-${randomBytes(8).toString('hex')}.txt`);
    writeFileSync(file, `contents ${randomBytes(8).toString('hex')}\n`);
    const added = nix('nix', ['store', 'add-file', file]);
    created.push(added);
    const out = buildWithRefs();

    for (const path of [added, out]) {
      nix('nix', ['store', 'sign', '-k', skFile, path]);
      const info = pathInfo(path);
      const expected = signNarInfo(pair.secret, asNarInfo(info));
      assert.ok(
        info.signatures?.includes(expected),
        `${path}: Nix has ${JSON.stringify(info.signatures)}, narhub made ${expected}`,
      );
      assert.ok(verifyNarInfoSig([pair.public], asNarInfo(info), expected));
    }
  });

  it('round-trips narinfos written by nix copy byte for byte, and Nix accepts narinfos narhub signed', () => {
    const pair = generateKeyPair('narhub-test-2');
    const skFile = join(dir, 'narhub-sk-2');
    writeFileSync(skFile, `${formatSecretKey(pair.secret)}\n`);
    const out = buildWithRefs();
    const cacheDir = join(dir, 'binary-cache');
    nix('nix', ['copy', '--to', `file://${cacheDir}?compression=none&secret-key=${skFile}`, out]);

    assert.equal(parseCacheInfo(readFileSync(join(cacheDir, 'nix-cache-info'), 'utf8')).storeDir, '/nix/store');
    const narinfoFiles = readdirSync(cacheDir).filter((f) => f.endsWith('.narinfo'));
    assert.equal(narinfoFiles.length, 3); // out and its two references
    for (const f of narinfoFiles) {
      const text = readFileSync(join(cacheDir, f), 'utf8');
      const info = parseNarInfo(text);
      assert.equal(formatNarInfo(info), text, f);
      assert.equal(`${parseStorePath(info.storePath).hashPart}.narinfo`, f);
      const ours = info.sigs.find((s) => s.startsWith('narhub-test-2:'));
      assert.ok(ours, text);
      assert.equal(ours, signNarInfo(pair.secret, info));
      assert.ok(verifyNarInfoSig([pair.public], info, ours));

      // Re-sign with a second narhub key only, as a server would, and let Nix judge the result.
      const resigned = generateKeyPairFor('narhub-test-3');
      writeFileSync(join(cacheDir, f), formatNarInfo({ ...info, sigs: [signNarInfo(resigned.secret, info)] }));
    }

    const good = formatPublicKey(generateKeyPairFor('narhub-test-3').public);
    nix(
      'nix',
      [
        'copy',
        '--from',
        `file://${cacheDir}`,
        '--to',
        join(dir, 'client-ok'),
        out,
        '--option',
        'trusted-public-keys',
        good,
      ],
      {
        XDG_CACHE_HOME: join(dir, 'cache-ok'),
      },
    );
    assert.match(readdirSync(join(dir, 'client-ok', 'nix', 'store')).join(' '), /-withrefs\b/);

    // Control: with a key Nix does not trust, the unsigned-for-it input-addressed path is refused.
    const wrong = formatPublicKey(generateKeyPair('narhub-test-3').public);
    assert.throws(
      () =>
        nix(
          'nix',
          [
            'copy',
            '--from',
            `file://${cacheDir}`,
            '--to',
            join(dir, 'client-bad'),
            out,
            '--option',
            'trusted-public-keys',
            wrong,
          ],
          {
            XDG_CACHE_HOME: join(dir, 'cache-bad'),
          },
        ),
      /lacks a valid signature/,
    );
  });
});

// One fixed key per name within the run, so the signer and the trusted key agree.
const fixedKeys = new Map<string, ReturnType<typeof generateKeyPair>>();
function generateKeyPairFor(name: string): ReturnType<typeof generateKeyPair> {
  let pair = fixedKeys.get(name);
  if (pair === undefined) {
    pair = generateKeyPair(name);
    fixedKeys.set(name, pair);
  }
  return pair;
}
