/**
 * The spoke's own substituter against a real narhub and Nix: narinfos must be signed by a
 * trusted key, NARs come back uncompressed whatever the stored compression, and importing a
 * closure into a chroot store through `nix-store --serve` gives exactly the paths Nix has.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { generateKeyPair, formatPublicKey } from '../../../src/nix/signing.js';
import { CacheFetchError, createCacheClient } from '../../../src/spoke/cache-client.js';
import { importInputs } from '../../../src/spoke/import-inputs.js';
import { ServeConnection } from '../../../src/spoke/serve-connection.js';
import { lines, uploadClosure } from '../../helpers/scenario.js';

describe('spoke cache client', () => {
  for (const compression of ['zstd', 'xz'] as const) {
    it(`imports a closure stored with ${compression} into a chroot store, dependencies first`, async (t) => {
      const { server, cacheUrl, closure, uploader } = await uploadClosure(t, `spoke-cache-${compression}`, {
        compression,
      });
      const cache = createCacheClient(cacheUrl, server.adminToken, [server.publicKey]);
      const [leaf, , top] = closure.paths as [string, string, string];

      const info = await cache.narinfo(leaf);
      assert.equal(info?.storePath, leaf);
      const chunks: Buffer[] = [];
      for await (const c of await cache.nar(info!)) chunks.push(c as Buffer);
      assert.deepEqual(Buffer.concat(chunks), execFileSync('nix-store', ['--dump', leaf], { env: uploader.env }));
      assert.equal(await cache.narinfo('/nix/store/00000000000000000000000000000000-absent'), null);

      const store = uploader.freshPath('spoke-store');
      const conn = await ServeConnection.open({ store, args: [], env: uploader.env });
      t.after(() => conn.close());
      const copied: string[] = [];
      // Only top is asked for: its references come along, each before what refers to it.
      assert.equal(await importInputs(conn, cache, [top], { onCopy: (p) => copied.push(p) }), 3);
      assert.deepEqual([...copied].sort(), [...closure.paths].sort());
      assert.equal(copied[2], top);
      const listed = execFileSync(
        'nix',
        ['--extra-experimental-features', 'nix-command', 'path-info', '--store', store, '-r', top],
        { env: uploader.env, encoding: 'utf8' },
      );
      assert.deepEqual(lines(listed), [...closure.paths].sort());
      execFileSync('nix-store', ['--store', store, '--verify-path', top], { env: uploader.env });
      // Nothing is fetched twice.
      assert.equal(await importInputs(conn, cache, [top]), 0);
    });
  }

  it('refuses narinfos not signed by a trusted key, for good (no retry)', async (t) => {
    const { server, cacheUrl, closure } = await uploadClosure(t, 'spoke-cache-untrusted');
    const stranger = formatPublicKey(generateKeyPair('stranger-1').public);
    const cache = createCacheClient(cacheUrl, server.adminToken, [stranger]);
    await assert.rejects(
      cache.narinfo(closure.top),
      (err: Error) =>
        err instanceof CacheFetchError &&
        !err.retryable &&
        /no signature by a trusted key \(stranger-1\)/.test(err.message),
    );
  });

  it('a server that cannot be reached is worth a retry', async () => {
    const cache = createCacheClient('http://127.0.0.1:1/main', 'x', []);
    await assert.rejects(
      cache.narinfo('/nix/store/00000000000000000000000000000000-absent'),
      (err: Error) => err instanceof CacheFetchError && err.retryable,
    );
  });
});
