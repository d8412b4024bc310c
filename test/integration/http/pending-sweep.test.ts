// NAR uploads no narinfo claims are swept; committed ones never are.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { basic, buildTestApp, makePath, putNar, putNarinfo, upload } from '../../helpers/build-app.js';

test('sweepPending(0) removes an unclaimed NAR and its listing, never a committed one', async (t) => {
  const h = await buildTestApp(t);
  const w = basic(h.tokens.write);
  const committed = makePath({ name: 'kept', compression: 'xz' });
  await upload(h, committed);
  const orphan = makePath({ name: 'orphan', compression: 'zstd' });
  assert.equal((await putNar(h, orphan, w)).statusCode, 204);

  const blob = (fileName: string) => join(h.storeRoot, 'main', 'nar', fileName);
  const listing = (fileName: string) => join(h.storeRoot, 'main', 'listing', `${fileName}.ls`);
  assert.ok(existsSync(blob(orphan.fileName)), 'the pending NAR is stored');
  assert.ok(existsSync(listing(orphan.fileName)), 'with its generated listing');
  assert.ok(existsSync(blob(committed.fileName)));

  // A grace period longer than the NARs' age removes nothing.
  assert.deepEqual(await h.service.sweepPending(60_000), { removed: 0 });
  assert.ok(existsSync(blob(orphan.fileName)));

  await sleep(5);
  assert.deepEqual(await h.service.sweepPending(0), { removed: 1 });
  assert.equal(existsSync(blob(orphan.fileName)), false, 'the unclaimed NAR is gone from the store dir');
  assert.equal(existsSync(listing(orphan.fileName)), false, 'and so is its listing');
  assert.ok(existsSync(blob(committed.fileName)), 'the committed NAR stays');
  assert.ok(existsSync(listing(committed.fileName)));

  // The committed path is still fully served.
  const nar = await h.request('GET', `/main/nar/${committed.fileName}`);
  assert.equal(nar.statusCode, 200);
  assert.ok(nar.rawPayload.equals(committed.file));
  assert.equal((await h.request('GET', `/main/${committed.hashPart}.narinfo`)).statusCode, 200);
  assert.equal((await h.request('GET', `/main/${committed.hashPart}.ls`)).statusCode, 200);

  // A narinfo for the swept NAR now finds nothing; uploading the NAR again makes it work.
  const late = await putNarinfo(h, orphan.hashPart, orphan.narinfo(), w);
  assert.equal(late.statusCode, 400);
  assert.match(late.body, /^NAR_NOT_UPLOADED: /);
  assert.equal((await putNar(h, orphan, w)).statusCode, 204);
  assert.equal((await putNarinfo(h, orphan.hashPart, orphan.narinfo(), w)).statusCode, 204);
  await sleep(5);
  assert.deepEqual(await h.service.sweepPending(0), { removed: 0 });
  assert.ok((await h.request('GET', `/main/nar/${orphan.fileName}`)).rawPayload.equals(orphan.file));
});
