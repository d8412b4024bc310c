// The spool an upstream download is written to: readers follow it as it grows; clients get its end
// only once it verified, and an error destroys them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spool } from '../../../src/cache/upstream/spool.js';

function collect(stream: Readable): { bytes: () => Buffer; done: Promise<'end' | Error> } {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<'end' | Error>((resolve) => {
    stream.on('end', () => resolve('end'));
    stream.on('error', (err) => resolve(err));
  });
  return { bytes: () => Buffer.concat(chunks), done };
}

async function write(sink: Writable, data: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => sink.write(data, (err) => (err ? reject(err) : resolve())));
}

async function spoolIn(t: { after(fn: () => void): void }, size: number | undefined): Promise<Spool> {
  const dir = mkdtempSync(join(tmpdir(), 'narhub-spool-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return Spool.create(join(dir, 'x'), size);
}

test('a client reader with a known size stops one byte short until release, then ends', async (t) => {
  const spool = await spoolIn(t, 10);
  const sink = spool.writable();
  const client = collect(spool.reader(true)!);
  const ingest = collect(spool.reader(false)!);
  await write(sink, Buffer.from('01234'));
  await write(sink, Buffer.from('56789'));
  spool.finish();
  assert.equal(await ingest.done, 'end');
  assert.equal(ingest.bytes().toString(), '0123456789', 'the ingest reads everything at once');
  await sleep(50);
  assert.equal(client.bytes().toString(), '012345678', 'the client waits for the verdict on the last byte');
  spool.release();
  assert.equal(await client.done, 'end');
  assert.equal(client.bytes().toString(), '0123456789');
  await spool.dispose();
});

test('a client reader without a known size has every byte but no end until release', async (t) => {
  const spool = await spoolIn(t, undefined);
  const client = collect(spool.reader(true)!);
  await write(spool.writable(), Buffer.from('abc'));
  spool.finish();
  await sleep(50);
  assert.equal(client.bytes().toString(), 'abc');
  let ended = false;
  void client.done.then(() => (ended = true));
  await sleep(20);
  assert.equal(ended, false);
  spool.fail(new Error('NarHash mismatch'));
  const outcome = await client.done;
  assert.ok(outcome instanceof Error && outcome.message === 'NarHash mismatch');
  await spool.dispose();
});

test('a failure destroys every reader, and a reader that joins late starts from byte 0', async (t) => {
  const spool = await spoolIn(t, 8);
  const sink = spool.writable();
  await write(sink, Buffer.from('abcd'));
  const late = collect(spool.reader(true)!);
  await sleep(20);
  assert.equal(late.bytes().toString(), 'abcd');
  spool.fail(new Error('upstream broke off'));
  assert.match(String(await late.done), /upstream broke off/);
  assert.equal(spool.reader(true), undefined, 'no new reader of a failed download');
  await spool.dispose();
});

test('readers opened before dispose keep reading; none can be opened after', async (t) => {
  const spool = await spoolIn(t, 4);
  await write(spool.writable(), Buffer.from('wxyz'));
  spool.finish();
  spool.release();
  const reader = spool.reader(true)!;
  await spool.dispose();
  assert.equal(spool.reader(true), undefined);
  const r = collect(reader);
  assert.equal(await r.done, 'end');
  assert.equal(r.bytes().toString(), 'wxyz');
});
