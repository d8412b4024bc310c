// `narhub serve` under systemd's Type=notify: once it listens it runs `systemd-notify --ready`
// (Node cannot write to the Unix datagram socket NOTIFY_SOCKET names). A stand-in systemd-notify
// on PATH records how it was called, and whether the server answered /healthz at that moment.
// That systemd itself accepts the message is shown by the NixOS VM tests only (no KVM here).
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../../helpers/ports.js';
import { startServer } from '../../helpers/server.js';
import { makeTempDir } from '../../helpers/tmp.js';

async function standInNotify(dir: string, port: number) {
  const bin = join(dir, 'bin');
  const record = join(dir, 'notified.json');
  await mkdir(bin);
  await writeFile(
    join(bin, 'systemd-notify'),
    `#!${process.execPath}
const { writeFileSync } = require('node:fs');
fetch('http://127.0.0.1:${port}/healthz')
  .then((res) => res.status, (err) => String(err))
  .then((healthz) => writeFileSync(${JSON.stringify(record)}, JSON.stringify({
    argv: process.argv.slice(2), socket: process.env.NOTIFY_SOCKET ?? null, healthz,
  })));
`,
    { mode: 0o755 },
  );
  return { path: `${bin}:${process.env.PATH}`, record };
}

async function waitForFile(file: string, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) if (existsSync(file)) return true;
  return existsSync(file);
}

test('serve runs systemd-notify --ready once /healthz answers, when NOTIFY_SOCKET is set', async (t) => {
  const dir = await makeTempDir(t);
  const port = await freePort();
  const notify = await standInNotify(dir, port);
  await startServer(t, {
    args: ['--listen', `127.0.0.1:${port}`],
    env: { PATH: notify.path, NOTIFY_SOCKET: '/run/systemd/notify' },
  });
  assert.ok(await waitForFile(notify.record, 10_000), 'systemd-notify was run');
  assert.deepEqual(JSON.parse(await readFile(notify.record, 'utf8')), {
    argv: ['--ready'],
    socket: '/run/systemd/notify',
    healthz: 200,
  });
});

test('serve runs no systemd-notify without NOTIFY_SOCKET', async (t) => {
  const dir = await makeTempDir(t);
  const port = await freePort();
  const notify = await standInNotify(dir, port);
  const server = await startServer(t, {
    args: ['--listen', `127.0.0.1:${port}`],
    env: { PATH: notify.path, NOTIFY_SOCKET: '' },
  });
  assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  assert.equal(await waitForFile(notify.record, 1_000), false);
});
