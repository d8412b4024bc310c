// A NAR upload refused mid-body reaches the client as its 4xx and reason, on a live connection:
// the real Nix 2.8 client (which sends `Expect: 100-continue`) and curl without it. Before, the
// socket was closed under the client: Nix 2.8 reported "HTTP error 100 ('Continue') … Failure when
// receiving data", retried, and each retry waited 300 s.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createNixEnv } from '../helpers/nix.js';
import { createToken, startServer, type RunningServer } from '../helpers/server.js';

const execFileP = promisify(execFile);

/** Server log lines at error level (pino: 50) or above. */
function errorLines(server: RunningServer): string[] {
  return `${server.stdout()}\n${server.stderr()}`.split('\n').filter((l) => /"level":(5\d|60)\b/.test(l));
}

test('nix copy of a path nested 70 deep is refused with NAR_INVALID, which Nix reports, at once', async (t) => {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t, { netrc: [{ host: '127.0.0.1', password: token }] });
  let dir = join(nix.workDir, 'deep');
  const top = dir;
  for (let i = 0; i < 70; i++) dir = join(dir, 'd');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'big'), randomBytes(4 * 1024 * 1024));
  const path = (await nix.run('nix', ['store', 'add-path', top, '--name', 'deep'])).stdout.trim();

  const started = Date.now();
  const copy = await nix.tryRun('nix', ['copy', '--to', `${server.url}/main?compression=none`, path], {
    timeoutMs: 120_000,
  });
  const seconds = (Date.now() - started) / 1000;
  assert.notEqual(copy.code, 0, 'the copy must fail');
  assert.match(copy.stderr, /HTTP error 400/, copy.stderr);
  assert.match(copy.stderr, /NAR_INVALID: [^\n]*nesting/, copy.stderr);
  assert.doesNotMatch(copy.stderr, /HTTP error 100|Failure when receiving data/, copy.stderr);
  // A 4xx is not retried: no 300 s waits.
  assert.ok(seconds < 60, `nix copy took ${seconds} s`);
  assert.deepEqual(errorLines(server), []);
  // And the server goes on serving.
  assert.equal((await fetch(`${server.url}/main/nix-cache-info`)).status, 200);
});

test('curl -T of an invalid 16 MB NAR, with and without Expect, reads the 400 and its reason', async (t) => {
  const server = await startServer(t);
  const { token } = await createToken(server.dataDir, 'main', 'write');
  const nix = await createNixEnv(t);
  // A NAR header, then a token the grammar does not allow, then 16 MB more.
  const nar = join(nix.workDir, 'invalid-16MB.nar');
  const magic = Buffer.concat([Buffer.from([13, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('nix-archive-1\0\0\0')]);
  writeFileSync(nar, Buffer.concat([magic, Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(16 * 1024 * 1024, 7)]));
  const url = `${server.url}/main/nar/${'1'.repeat(52)}.nar`;
  for (const expect of [['-H', 'Expect:'], []]) {
    const { stdout } = await execFileP(
      'curl',
      ['-sS', '-u', `x:${token}`, ...expect, '-T', nar, '-w', '\n%{http_code}', url],
      { maxBuffer: 1 << 20 },
    );
    const [body, status] = [stdout.slice(0, stdout.lastIndexOf('\n')), stdout.slice(stdout.lastIndexOf('\n') + 1)];
    assert.equal(status, '400', `${expect.join(' ')}: ${stdout}`);
    assert.match(body, /^NAR_INVALID: [^\n]+\n$/, `${expect.join(' ')}: ${body}`);
  }
  assert.deepEqual(errorLines(server), []);
});
