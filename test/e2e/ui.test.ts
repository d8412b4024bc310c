// The web UI in a real browser: Debian's Chromium driven by playwright-core, against a real
// `narhub serve` with Redis and a spoke building with Nix. NARHUB_SCREENSHOTS=DIR also saves a
// screenshot of each page there (docs/screenshots holds the README's).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { checksFlake, flakeRepo } from '../helpers/forge-hub.js';
import { freePort, hubApi, startSpoke, waitFor } from '../helpers/hub.js';
import { createNixEnv } from '../helpers/nix.js';
import { startRedis } from '../helpers/redis.js';
import { runCliOk, startServer } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';

const SYSTEM = 'x86_64-linux';
const CHROMIUM = process.env.NARHUB_CHROMIUM ?? '/usr/bin/chromium';

function flake(nonce: string): string {
  return checksFlake({
    nonce,
    tag: 'ui',
    checks: `{
        ok = mk "ui-ok" "echo ok > $out" { };
        html-fail = mk "ui-html-fail" ("echo '<script>window.pwned = 1</script><b id=injected>bold</b>'; "
          + "echo 'this check fails on purpose' >&2; exit 1") { };
        slow = mk "ui-slow" ("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo slow-line-$i; sleep 1; done; "
          + "echo done > $out") { };
      }`,
  });
}

test("the web UI in Chromium: live log, a failed check's reason, login/logout, private projects hidden, logs as text", {
  timeout: 600_000,
}, async (t) => {
  const redis = await startRedis(t);
  const hubNix = await createNixEnv(t);
  const dir = await makeTempDir(t, 'narhub-ui-');
  const { repo } = await flakeRepo(dir, flake(randomBytes(6).toString('hex')));

  const server = await startServer(t, {
    args: ['--listen', `127.0.0.1:${await freePort()}`, '--redis-url', redis.url],
    env: hubNix.env,
  });
  const { url, adminToken: token, dataDir } = server;
  const api = hubApi(() => url, token);
  const cli = (args: string[]) => runCliOk([...args, '--server', url, '--token', token], { timeoutMs: 60_000 });
  await runCliOk(['cache', 'create', 'team', '--private'], { dataDir });
  await cli(['project', 'create', 'pub', '--flake', `git+file://${repo}`, '--ref', 'main', '--systems', SYSTEM]);
  await cli(['project', 'create', 'secret-project', '--flake', `git+file://${repo}`, '--cache', 'team']);
  const spokeNix = await createNixEnv(t);
  startSpoke(t, {
    id: 'ui-spoke',
    hubUrl: url,
    redisUrl: redis.url,
    token,
    store: spokeNix.freshPath('store'),
    env: spokeNix.env,
  });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const shots = process.env.NARHUB_SCREENSHOTS;
  if (shots) await mkdir(shots, { recursive: true });
  const shot = async (p: Page, name: string) => {
    if (shots) await p.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  };

  // --- / leads to /ui/; a private project is invisible without a session --------------------
  await page.goto(`${url}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/');
  assert.ok(await page.getByRole('link', { name: 'pub', exact: true }).isVisible());
  assert.equal(await page.getByText('secret-project').count(), 0, 'the private project is not listed');
  const hidden = await page.goto(`${url}/ui/projects/secret-project`);
  assert.equal(hidden?.status(), 404);
  assert.equal(await page.getByText('team').count(), 0);
  // Spokes and queues belong to no project: like the API, they need a session.
  assert.equal((await page.goto(`${url}/ui/spokes`))?.status(), 401);
  assert.equal((await page.goto(`${url}/ui/queues`))?.status(), 401);

  // --- A live log grows on the page while a real build runs ---------------------------------
  const ev = await api.post('/projects/pub/evaluations', {});
  const slow = await waitFor(
    'the slow check to run',
    async () => {
      const e = await api.get(`/evaluations/${ev.id}`);
      return e.jobs?.find((j: any) => j.attr.endsWith('.slow') && j.status === 'running');
    },
    240_000,
  );
  await page.goto(`${url}/ui/builds/${slow.drvHash}`);
  await shot(page, 'build-running');
  const log = page.locator('#log');
  await page.waitForFunction(() => /slow-line-\d+/.test(document.querySelector('#log')?.textContent ?? ''), null, {
    timeout: 30_000,
  });
  const lineNumber = async () => {
    const all = [...((await log.textContent()) ?? '').matchAll(/slow-line-(\d+)/g)].map((m) => Number(m[1]));
    return Math.max(0, ...all);
  };
  const firstSeen = await lineNumber();
  assert.ok(firstSeen < 12, `the build was still running when the page showed line ${firstSeen}`);
  await page.waitForFunction(
    (n) =>
      [...(document.querySelector('#log')?.textContent ?? '').matchAll(/slow-line-(\d+)/g)].some(
        (m) => Number(m[1]) > n + 1,
      ),
    firstSeen,
    { timeout: 30_000 },
  );
  assert.ok((await lineNumber()) > firstSeen + 1, 'new lines arrived without reloading');

  // --- A failing check shows as failed, with its reason one click away ------------------------
  const done = await waitFor(
    'the evaluation to end',
    async () => {
      const e = await api.get(`/evaluations/${ev.id}`);
      return ['succeeded', 'failed'].includes(e.status) ? e : undefined;
    },
    240_000,
  );
  assert.equal(done.status, 'failed');
  await page.goto(`${url}/ui/evaluations/${ev.id}`);
  await shot(page, 'evaluation');
  const row = page.locator(`tr[id="checks.${SYSTEM}.html-fail"]`);
  assert.equal(await row.locator('.state').textContent(), 'failed');
  await row.getByText('why').click();
  assert.match((await row.locator('pre').textContent()) ?? '', /failed|exit/i);
  assert.ok(await row.locator('pre').isVisible());

  // --- A log containing HTML is shown as text --------------------------------------------------
  const htmlFail = done.jobs.find((j: any) => j.attr.endsWith('.html-fail'));
  await page.goto(`${url}/ui/builds/${htmlFail.drvHash}`);
  await shot(page, 'build-failed');
  assert.match((await log.textContent()) ?? '', /<script>window\.pwned = 1<\/script><b id=injected>bold<\/b>/);
  assert.equal(await page.locator('#injected').count(), 0, 'no element was made from the log');
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
  const raw = await context.request.get(`${url}/ui/builds/${htmlFail.drvHash}/log`);
  assert.match(raw.headers()['content-type'] ?? '', /^text\/plain/);
  assert.equal(raw.headers()['x-content-type-options'], 'nosniff');

  // --- Login and logout -----------------------------------------------------------------------
  await page.goto(`${url}/ui/login`);
  await shot(page, 'login');
  await page.fill('input[name=token]', 'nh_not-a-token');
  await page.click('button[type=submit]');
  assert.match((await page.textContent('main')) ?? '', /unknown, expired or revoked/);
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(`${url}/ui/`), page.click('main button[type=submit]')]);
  assert.ok(await page.getByRole('link', { name: 'secret-project' }).isVisible(), 'a session sees the private project');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'narhub_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!(await page.content()).includes(token), 'no page shows the token');
  await page.goto(`${url}/ui/projects/pub`);
  await shot(page, 'project');
  // An admin action without the CSRF token is refused.
  const forged = await context.request.post(`${url}/ui/builds/${htmlFail.drvHash}/restart`, { form: {} });
  assert.equal(forged.status(), 403);
  for (const [path, name] of [
    ['/ui/spokes', 'spokes'],
    ['/ui/queues', 'queues'],
    ['/ui/caches', 'caches'],
    ['/ui/caches/main', 'cache'],
    ['/ui/', 'index'],
  ] as const) {
    const res = await page.goto(`${url}${path}`);
    assert.equal(res?.status(), 200, path);
    await shot(page, name);
  }
  await page.click('header button:has-text("Log out")');
  await page.waitForURL(`${url}/ui/`);
  assert.equal(await page.getByText('secret-project').count(), 0, 'logged out: hidden again');
  assert.equal(
    (await context.cookies()).find((c) => c.name === 'narhub_session'),
    undefined,
  );
  assert.deepEqual(dialogs, [], 'no script from a log ever ran');
});
