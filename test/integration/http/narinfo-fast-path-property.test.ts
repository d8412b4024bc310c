// A property of the narinfo fast path: for any request (method, cache name, file, query, token,
// HTTP version), a server with the fast path answers exactly what the Fastify route alone answers
// (status line, header lines in order with Date aside, body), and records the same request
// metrics. fast-check draws the requests from the shapes that matter: hits, misses, private and
// unknown caches, listings, malformed hashes, query strings, encoded names, valid, foreign,
// revoked and malformed tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { basic, bearer, makePath, randomHashPart, upload } from '../../helpers/build-app.js';
import { pair } from '../../helpers/fast-path-pair.js';

/** The request counts of `GET /metrics` by series, the scrape's own route left out. */
async function requestCounts(app: FastifyInstance): Promise<string[]> {
  const { port } = app.server.address() as AddressInfo;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('narhub_http_request_duration_seconds_count{') && !l.includes('route="/metrics"'))
    .sort();
}

test('fast path: for any request, the same status, headers, body and metrics as the route', async (t) => {
  const p = await pair(t);
  const pub = makePath();
  const priv = makePath();
  await upload(p.h, pub);
  await upload(p.h, priv, { cache: 'priv' });
  const revoked = p.h.token('priv', 'read');
  p.h.service.tokens.revoke(revoked.id);

  // Hits: a cache with a path of its own, or its nix-cache-info.
  const hit = fc.constantFrom(
    `main/${pub.hashPart}.narinfo`,
    `priv/${priv.hashPart}.narinfo`,
    'main/nix-cache-info',
    'priv/nix-cache-info',
  );
  const cache = fc.oneof(
    { arbitrary: fc.constantFrom('main', 'priv'), weight: 4 },
    { arbitrary: fc.constantFrom('nope', 'Main', 'ma%69n', 'api', ''), weight: 1 },
  );
  const file = fc.oneof(
    { arbitrary: fc.constantFrom(`${pub.hashPart}.narinfo`, `${priv.hashPart}.narinfo`, 'nix-cache-info'), weight: 4 },
    fc.constantFrom(
      `${pub.hashPart}.narinfo`,
      `${priv.hashPart}.narinfo`,
      `${randomHashPart()}.narinfo`,
      `${pub.hashPart}.ls`,
      'nix-cache-info',
      `${'e'.repeat(32)}.narinfo`,
      `${pub.hashPart.toUpperCase()}.narinfo`,
      `${pub.hashPart}.narinfo/`,
      `nar/${pub.fileName}`,
      '.narinfo',
      '',
    ),
    fc.stringMatching(/^[a-z0-9._-]{0,40}$/),
  );
  const query = fc.constantFrom('', '', '', '', '?a=1', '?', '#x');
  const auth = fc.constantFrom<Record<string, string>>(
    {},
    {},
    {},
    basic(p.h.tokensFor.priv!.read),
    basic(p.h.tokensFor.priv!.read),
    bearer(p.h.tokensFor.priv!.admin),
    basic(p.h.tokensFor.main!.write),
    basic(revoked.token),
    basic('nh_unknown'),
    { authorization: 'Basic' },
    { authorization: 'Negotiate abc' },
  );
  const method = fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'HEAD', 'OPTIONS', 'DELETE');
  const version = fc.constantFrom('1.1', '1.1', '1.0');

  const before = p.fastPath.served;
  let asked = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.option(hit, { freq: 2 }),
      method,
      cache,
      file,
      query,
      auth,
      version,
      async (h, m, c, f, q, a, v) => {
        asked++;
        await p.same(m, `/${h ?? `${c}/${f}`}${q}`, a, v);
      },
    ),
    { numRuns: 400 },
  );
  // The property is about the fast path only if it answered a fair share itself.
  const served = p.fastPath.served - before;
  assert.ok(served > asked / 10, `the fast path answered ${served} of ${asked}`);
  // Both servers counted the same requests under the same route, method and status.
  const [fast, plain] = await Promise.all([requestCounts(p.fast), requestCounts(p.plain)]);
  assert.ok(fast.some((l) => l.includes('route="/:cache/:file"') && l.includes('status="200"')));
  assert.deepEqual(fast, plain);
});
