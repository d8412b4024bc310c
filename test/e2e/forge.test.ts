// The hub as a team's CI, end to end without the internet: GitHub's own example webhook payloads
// (@octokit/webhooks-examples) pointed at a local git repository, delivered to a real `narhub
// serve` with a real Redis and a real spoke building with Nix; narhub reports check runs to a
// local stand-in for api.github.com that checks every request against GitHub's OpenAPI description.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { checksFlake, flakeRepo, git, startForgeHub, writeForgeConfig } from '../helpers/forge-hub.js';
import { examplePayload, signWebhook, startGitHubStandIn, type GitHubStandIn } from '../helpers/github-standin.js';
import { waitFor } from '../helpers/hub.js';
import { runCli, runCliOk } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';

const SYSTEM = 'x86_64-linux';
const REPO = 'Codertocat/Hello-World';

/** A flake whose checks pass, fail, need a failing one, or sleep (so a build can be caught running). */
function flake(nonce: string, sleepSecs: number, failing = true): string {
  const failScript = failing ? "echo '<b>this check fails on purpose</b>' >&2; exit 1" : 'echo fixed > $out';
  return checksFlake({
    nonce,
    tag: 'forge',
    bindings: `fails = mk "forge-fails" "${failScript}" { };`,
    checks: `{
        ok = mk "forge-ok" "echo ok > $out" { };
        inherit fails;
        after-fail = mk "forge-after-fail" "echo never > $out" { inherit fails; };
        slow = mk "forge-slow" "sleep ${sleepSecs}; echo slow > $out" { };
      }`,
  });
}

async function deliver(url: string, secret: string | null, event: string, payload: unknown, signature?: string) {
  const body = JSON.stringify(payload);
  const res = await fetch(`${url}/api/v1/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': randomBytes(8).toString('hex'),
      ...(signature !== undefined
        ? { 'x-hub-signature-256': signature }
        : secret !== null
          ? { 'x-hub-signature-256': signWebhook(secret, body) }
          : {}),
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** States a check run went through, in order (never backwards from completed). */
function statesOf(gh: GitHubStandIn, name: string, sha: string): string[] {
  return (gh.checkRunNamed(name, sha)?.history ?? []).map((h) => String(h.status));
}

test('GitHub webhooks drive evaluations, and every attribute and the evaluation show as check runs on the commit', {
  timeout: 600_000,
}, async (t) => {
  const gh = await startGitHubStandIn(t);
  const dir = await makeTempDir(t, 'narhub-forge-');
  const { configFile, secret } = await writeForgeConfig(dir, gh.url);

  // The repository the webhooks talk about: main, and a fork's pull request head.
  const nonce = randomBytes(6).toString('hex');
  const { repo, sha: mainSha } = await flakeRepo(dir, flake(nonce, 1));

  const {
    url,
    token,
    api,
    cli,
    dataDir,
    evaluationEnd: done,
  } = await startForgeHub(t, { configFile, spokeId: 'forge-spoke' });

  await cli([
    'project',
    'create',
    'hello',
    '--flake',
    `git+file://${repo}`,
    '--ref',
    'main',
    '--github',
    REPO,
    '--systems',
    SYSTEM,
  ]);
  const shown = JSON.parse((await cli(['project', 'show', 'hello', '--json'])).stdout);
  assert.equal(shown.github, REPO);
  assert.equal(shown.forkPolicy, 'collaborators');

  // GitHub's own push example, pointed at our repository and commit.
  const push = examplePayload('push', (p) => p.ref === 'refs/heads/master');
  Object.assign(push, { ref: 'refs/heads/main', after: mainSha });
  push.repository.full_name = REPO;
  push.repository.clone_url = `file://${repo}`;

  // --- A bad or missing signature does nothing --------------------------------------------
  const unsigned = await deliver(url, null, 'push', push);
  assert.equal(unsigned.status, 401, JSON.stringify(unsigned.body));
  assert.match(unsigned.body.message, /signature/i);
  const forged = await deliver(url, null, 'push', push, signWebhook('not-the-secret', JSON.stringify(push)));
  assert.equal(forged.status, 401);
  assert.deepEqual(
    (await api.get('/projects/hello/evaluations')).evaluations,
    [],
    'no evaluation from unsigned deliveries',
  );

  // --- A push to the watched branch evaluates that commit ------------------------------------
  const pushed = await deliver(url, secret, 'push', push);
  assert.equal(pushed.status, 202, JSON.stringify(pushed.body));
  const [outcome] = pushed.body.outcomes;
  assert.equal(outcome.action, 'evaluated');
  const other = await deliver(url, secret, 'push', { ...push, ref: 'refs/heads/feature' });
  assert.equal(other.body.outcomes[0].action, 'ignored', 'a branch that is not watched');

  const ev = await done(outcome.evaluation);
  assert.equal(ev.status, 'failed');
  assert.equal(ev.jobset, 'main');
  assert.equal(ev.commit, mainSha);
  assert.equal(ev.trigger, 'push');
  const fails = ev.jobs.find((j: any) => j.attr.endsWith('.fails'));
  assert.equal(fails.status, 'failed');
  assert.equal(fails.spoke, 'forge-spoke');
  assert.equal(fails.attempt, 1);

  // The checks reach the stand-in: one per attribute plus the evaluation's, each ending completed.
  const check = (attr: string) => `narhub: checks.${SYSTEM}.${attr}`;
  await waitFor(
    'every check run to be completed',
    async () =>
      [check('ok'), check('fails'), check('after-fail'), check('slow'), 'narhub: evaluation'].every(
        (n) => gh.checkRunNamed(n, mainSha)?.status === 'completed',
      ),
    60_000,
  );
  assert.equal(gh.checkRunNamed(check('ok'), mainSha)!.conclusion, 'success');
  assert.equal(gh.checkRunNamed('narhub: evaluation', mainSha)!.conclusion, 'success');
  const failed = gh.checkRunNamed(check('fails'), mainSha)!;
  assert.equal(failed.conclusion, 'failure');
  assert.match(failed.details_url ?? '', new RegExp(`^${url}/ui/builds/[0-9a-z]{32}$`));
  for (const n of [check('ok'), check('fails'), 'narhub: evaluation']) {
    const states = statesOf(gh, n, mainSha);
    assert.equal(states.at(-1), 'completed', `${n}: ${states}`);
    assert.equal(states.indexOf('completed'), states.length - 1, `${n} never goes back from completed: ${states}`);
  }
  assert.equal([...gh.checkRuns.values()].filter((c) => c.head_sha === mainSha).length, 5, 'one check run each');
  const afterFail = gh.checkRunNamed(check('after-fail'), mainSha)!;
  assert.equal(afterFail.conclusion, 'failure');
  assert.match(afterFail.output?.summary ?? '', /forge-fails\.drv/, 'dependency-failed names the dependency');

  // --- The records a team lead reads, the CLI's --json being the API's shapes -----------------
  const cliJson = async (args: string[]) => JSON.parse((await cli([...args, '--json'])).stdout);
  assert.deepEqual(
    await cliJson(['eval', 'list', 'hello', '--branch', 'main']),
    (await api.get('/projects/hello/evaluations?jobset=main')).evaluations,
  );
  assert.deepEqual(await cliJson(['eval', 'show', String(ev.id)]), await api.get(`/evaluations/${ev.id}`));
  const after = ev.jobs.find((j: any) => j.attr.endsWith('.after-fail'));
  assert.equal(after.status, 'dependency-failed');
  assert.equal(after.failedDependency, fails.drvPath);
  const failsBuild = await cliJson(['build', 'show', fails.drvHash]);
  assert.deepEqual(
    failsBuild.requestedBy.map((r: any) => [r.evaluation, r.project, r.jobset, r.commit, r.attr]),
    [[ev.id, 'hello', 'main', mainSha, `checks.${SYSTEM}.fails`]],
  );
  const byAttr = await cliJson(['build', 'list', '--project', 'hello', '--attr', `checks.${SYSTEM}.fails`]);
  assert.deepEqual(
    byAttr.map((b: any) => b.drvHash),
    [fails.drvHash],
  );
  const bySpoke = await cliJson(['build', 'list', '--spoke', 'forge-spoke', '--branch', 'main']);
  assert.ok(bySpoke.length >= 3 && bySpoke.every((b: any) => b.spoke === 'forge-spoke'), JSON.stringify(bySpoke));
  assert.deepEqual(await cliJson(['build', 'list', '--spoke', 'no-such-spoke']), []);
  const spokes = await cliJson(['spoke', 'list']);
  assert.deepEqual(
    spokes.map((s: any) => s.id),
    ['forge-spoke'],
  );
  const history = await cliJson(['project', 'history', 'hello', `checks.${SYSTEM}.ok`]);
  assert.deepEqual(
    history.map((h: any) => [h.evaluation, h.outcome, h.commit, h.spoke]),
    [[ev.id, 'succeeded', mainSha, 'forge-spoke']],
  );
  assert.equal(typeof history[0].durationMs, 'number');
  // --ref SHA is recorded against the commit, not as a branch.
  const bare = await cliJson(['eval', 'hello', '--ref', mainSha]);
  assert.deepEqual([bare.jobset, bare.commit, bare.ref], [null, mainSha, null]);
  const bareDone = await done(bare.id);
  const again = bareDone.jobs.find((j: any) => j.attr.endsWith('.fails'));
  assert.equal(again.fromFailureCache, true, 'a failure taken from the failure cache says so');
  assert.equal(again.drvHash, fails.drvHash, 'and links the build that really failed');
  const shownWait = await runCli(['eval', 'show', String(bare.id), '--wait', '--server', url, '--token', token]);
  assert.equal(shownWait.code, 1, 'eval show --wait exits 1 for a failed evaluation');
  assert.match(shownWait.stdout, /failed before, not built again/);

  // --- A pull request from a fork waits for an admin; an approval evaluates it as pr-N ---------
  git(repo, 'checkout', '-q', '-b', 'fork-work');
  await writeFile(join(repo, 'flake.nix'), flake(`${nonce}-pr`, 30));
  git(repo, 'commit', '-q', '-am', 'from a fork');
  const prSha = git(repo, 'rev-parse', 'HEAD');
  git(repo, 'checkout', '-q', 'main');
  const pr = examplePayload('pull_request', (p) => p.action === 'opened');
  pr.number = 7;
  pr.pull_request.number = 7;
  pr.pull_request.user.login = 'stranger';
  pr.pull_request.head.sha = prSha;
  pr.pull_request.head.repo.full_name = 'stranger/Hello-World';
  pr.pull_request.base.repo.full_name = REPO;
  pr.repository.full_name = REPO;
  git(repo, 'update-ref', 'refs/pull/7/head', prSha);

  const waiting = await deliver(url, secret, 'pull_request', pr);
  assert.equal(waiting.status, 202);
  assert.equal(waiting.body.outcomes[0].action, 'waiting-for-approval');
  assert.ok(gh.requests.includes(`GET /repos/${REPO}/collaborators/stranger`), 'the collaborator check asked GitHub');
  assert.deepEqual(
    (await api.get('/projects/hello/evaluations?jobset=pr-7')).evaluations,
    [],
    "a fork's code never runs unasked",
  );
  const approvals = JSON.parse((await cli(['project', 'approvals', 'hello', '--json'])).stdout);
  assert.deepEqual(
    approvals.map((a: any) => [a.pr, a.status, a.author, a.headSha]),
    [[7, 'waiting', 'stranger', prSha]],
  );
  // Approving needs admin rights; a trigger token is not enough.
  const triggerToken = (
    await runCliOk(['token', 'create', '--perm', 'trigger', '--project', 'hello'], { dataDir })
  ).stdout.trim();
  const refused = await runCli(['project', 'approve', 'hello', '--pr', '7', '--server', url, '--token', triggerToken]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /FORBIDDEN/);
  const approved = JSON.parse((await cli(['project', 'approve', 'hello', '--pr', '7', '--json'])).stdout);
  assert.equal(approved.jobset, 'pr-7');
  assert.equal(approved.prNumber, 7);
  assert.equal(approved.trigger, 'approval');
  assert.equal(approved.commit, prSha);

  // --- Closing the pull request cancels the builds only it needs ------------------------------
  const prEval = await waitFor(
    'the slow PR build to run',
    async () => {
      const e = await api.get(`/evaluations/${approved.id}`);
      return e.jobs?.find((j: any) => j.attr.endsWith('.slow'))?.status === 'running' ? e : undefined;
    },
    180_000,
  );
  assert.equal(prEval.status, 'building');
  const closed = await deliver(url, secret, 'pull_request', { ...pr, action: 'closed' });
  assert.equal(closed.body.outcomes[0].action, 'cancelled');
  assert.deepEqual(closed.body.outcomes[0].cancelled, [approved.id]);
  const cancelled = await done(approved.id);
  assert.equal(cancelled.status, 'cancelled');
  const slow = cancelled.jobs.find((j: any) => j.attr.endsWith('.slow'));
  assert.equal(slow.status, 'cancelled');
  assert.equal((await api.get(`/builds/${slow.drvHash}`)).status, 'cancelled');

  // --- The trigger endpoint: a trigger token for this project, as a Gitea or GitLab webhook ----
  const triggered = await fetch(`${url}/api/v1/projects/hello/trigger`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitlab-token': triggerToken },
    body: JSON.stringify({ ref: 'refs/heads/main', after: mainSha, checkout_sha: mainSha }),
  });
  assert.equal(triggered.status, 202);
  const te = (await triggered.json()) as any;
  assert.equal(te.trigger, 'trigger');
  assert.equal(te.commit, mainSha);
  const wrong = await fetch(`${url}/api/v1/projects/hello/trigger`, {
    method: 'POST',
    headers: { authorization: 'Bearer nh_nope' },
  });
  assert.equal(wrong.status, 401);
  await runCliOk(['project', 'create', 'other', '--flake', `git+file://${repo}`, '--server', url, '--token', token]);
  const elsewhere = await fetch(`${url}/api/v1/projects/other/trigger`, {
    method: 'POST',
    headers: { authorization: `Bearer ${triggerToken}` },
  });
  assert.equal(elsewhere.status, 403, 'a trigger token is for its own project only');

  // --- A forge that is down, then rate-limiting, catches up without holding builds back --------
  gh.down = true;
  const retriggered = await deliver(url, secret, 'push', { ...push, after: mainSha });
  const downEval = await done(retriggered.body.outcomes[0].evaluation);
  assert.equal(downEval.status, 'failed', 'the evaluation ended while the forge was down');
  gh.rateLimitNext(1, 2);
  gh.down = false;
  const before = gh.writeTimes.length;
  await waitFor(
    'the checks to catch up',
    async () => {
      const evalCheck = [...gh.checkRuns.values()].filter(
        (c) => c.name === 'narhub: evaluation' && c.head_sha === mainSha,
      );
      return evalCheck.length === 4 && evalCheck.every((c) => c.status === 'completed');
    },
    60_000,
  );
  const times = gh.writeTimes.slice(before);
  assert.ok(times.length >= 2);
  assert.ok(times[1]! - times[0]! >= 1900, `sending waited for Retry-After: ${times[1]! - times[0]!} ms`);

  // --- The project's outgoing webhook: an evaluation's end and attributes fixed, signed ------
  const hooks: { event: string; signature: string; body: string }[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      hooks.push({
        event: String(req.headers['x-narhub-event']),
        signature: String(req.headers['x-narhub-signature-256']),
        body,
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => receiver.close(() => r())));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const withHook = await cliJson(['project', 'update', 'hello', '--notify-url', hookUrl]);
  assert.equal(withHook.notifyUrl, hookUrl);
  assert.match(withHook.notifySecret, /^[A-Za-z0-9_-]{40,}$/);
  assert.equal(withHook.notifySecretSet, true);
  await writeFile(join(repo, 'flake.nix'), flake(nonce, 1, false));
  git(repo, 'commit', '-q', '-am', 'fix the failing check');
  const fixSha = git(repo, 'rev-parse', 'HEAD');
  const fixPush = await deliver(url, secret, 'push', { ...push, after: fixSha });
  const fixEval = await done(fixPush.body.outcomes[0].evaluation);
  assert.equal(fixEval.status, 'succeeded');
  await waitFor(
    'the notifications',
    async () =>
      hooks.filter((h) => h.event === 'attribute.fixed').length >= 2 &&
      hooks.some((h) => h.event === 'evaluation.finished' && JSON.parse(h.body).evaluation.id === fixEval.id),
    30_000,
  );
  for (const h of hooks)
    assert.equal(h.signature, signWebhook(withHook.notifySecret, h.body), 'HMAC-SHA256 of the body');
  const fixed = hooks.filter((h) => h.event === 'attribute.fixed').map((h) => JSON.parse(h.body));
  assert.deepEqual(fixed.map((f) => f.attribute.name).sort(), [
    `checks.${SYSTEM}.after-fail`,
    `checks.${SYSTEM}.fails`,
  ]);
  assert.ok(
    fixed.every((f) => f.evaluation.id === fixEval.id && f.evaluation.commit === fixSha && f.project === 'hello'),
  );
  assert.ok(
    hooks.every((h) => JSON.parse(h.body).evaluation.id === fixEval.id),
    'nothing about evaluations that ended before the URL was set',
  );

  assert.deepEqual(gh.violations, [], 'every request matched the OpenAPI description');
});

test('GitHub "Re-run" (one, all): a failed attribute rebuilt, the commit re-evaluated, new runs shown', {
  timeout: 600_000,
}, async (t) => {
  const gh = await startGitHubStandIn(t);
  const dir = await makeTempDir(t, 'narhub-rerun-');
  const { configFile, secret } = await writeForgeConfig(dir, gh.url);
  const { repo, sha } = await flakeRepo(dir, flake(randomBytes(6).toString('hex'), 1));
  const { url, api, cli, evaluationEnd: done } = await startForgeHub(t, { configFile, spokeId: 'rerun-spoke' });
  await cli(['project', 'create', 'hello', '--flake', `git+file://${repo}`, '--ref', 'main', '--github', REPO]);
  const push = examplePayload('push', (p) => p.ref === 'refs/heads/master');
  Object.assign(push, { ref: 'refs/heads/main', after: sha });
  push.repository.full_name = REPO;
  const first = await done((await deliver(url, secret, 'push', push)).body.outcomes[0].evaluation);
  assert.equal(first.status, 'failed');
  const check = (attr: string) => `narhub: checks.${SYSTEM}.${attr}`;
  const runsNamed = (name: string) => [...gh.checkRuns.values()].filter((c) => c.name === name && c.head_sha === sha);
  await waitFor('the first check runs to complete', async () =>
    [check('fails'), check('ok'), 'narhub: evaluation'].every((n) => runsNamed(n).at(-1)?.status === 'completed')
      ? true
      : undefined,
  );
  const fails = first.jobs.find((j: any) => j.attr.endsWith('.fails'));
  assert.equal((await api.get(`/builds/${fails.drvHash}`)).attempt, 1);

  // "Re-run" of the failed check: GitHub's own check_run example, naming narhub's check run.
  const rerun = (name: string, externalId: string) => {
    const p = examplePayload('check_run', (x) => x.action === 'rerequested');
    Object.assign(p.check_run, { name, external_id: externalId, head_sha: sha });
    p.repository.full_name = REPO;
    return deliver(url, secret, 'check_run', p);
  };
  const rerunFails = await rerun(check('fails'), `${first.id}/checks.${SYSTEM}.fails`);
  assert.equal(rerunFails.status, 202, JSON.stringify(rerunFails.body));
  assert.equal(rerunFails.body.outcomes[0].action, 'restarted', JSON.stringify(rerunFails.body));
  await waitFor('the failed build to be built again and fail again', async () => {
    const b = await api.get(`/builds/${fails.drvHash}`);
    return b.attempt === 2 && b.status === 'failed' ? true : undefined;
  });
  await waitFor('a new check run for it', async () =>
    runsNamed(check('fails')).length === 2 && runsNamed(check('fails')).at(-1)!.status === 'completed'
      ? true
      : undefined,
  );
  assert.equal(runsNamed(check('fails')).at(-1)!.conclusion, 'failure');
  assert.equal(runsNamed(check('ok')).length, 1, 'the other checks are left alone');
  // A check that succeeded has nothing to re-run.
  const rerunOk = await rerun(check('ok'), `${first.id}/checks.${SYSTEM}.ok`);
  assert.equal(rerunOk.body.outcomes[0].action, 'ignored');
  // One that is not narhub's (GitHub's example as it is) is ignored too.
  const foreign = examplePayload('check_run', (x) => x.action === 'rerequested');
  foreign.repository.full_name = REPO;
  assert.equal((await deliver(url, secret, 'check_run', foreign)).body.outcomes[0].action, 'ignored');

  // "Re-run all checks": GitHub's check_suite example on this commit evaluates it again.
  const suite = examplePayload('check_suite', (x) => x.action === 'rerequested');
  suite.check_suite.head_sha = sha;
  suite.repository.full_name = REPO;
  const rerunAll = await deliver(url, secret, 'check_suite', suite);
  assert.equal(rerunAll.body.outcomes[0].action, 'evaluated', JSON.stringify(rerunAll.body));
  const second = await done(rerunAll.body.outcomes[0].evaluation);
  assert.deepEqual([second.commit, second.jobset], [sha, 'main']);
  assert.notEqual(second.id, first.id);
  assert.equal(second.trigger, 'manual');
  assert.equal(second.triggeredBy, `${suite.sender.login} (re-run on the forge)`);
  await waitFor('the re-run evaluation check runs', async () =>
    runsNamed('narhub: evaluation').length === 2 && runsNamed('narhub: evaluation').at(-1)!.status === 'completed'
      ? true
      : undefined,
  );
  assert.deepEqual(gh.violations, [], 'every request matched the OpenAPI description');
});
