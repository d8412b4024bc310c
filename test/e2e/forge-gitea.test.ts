// The hub as the CI of a Gitea or Forgejo repository, end to end without the internet: their
// push and pull_request webhooks (signed with X-Gitea-Signature / X-Forgejo-Signature) delivered
// to a real `narhub serve` with a real Redis and a real spoke; narhub reports commit statuses to
// a local stand-in for the Gitea API that checks every request against Gitea's description of it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { checksFlake, flakeRepo, git, startForgeHub, writeForgeConfig } from '../helpers/forge-hub.js';
import { signGitea, startGiteaStandIn } from '../helpers/gitea-standin.js';
import { waitFor } from '../helpers/hub.js';
import { runCli, runCliOk } from '../helpers/server.js';
import { makeTempDir } from '../helpers/tmp.js';

const SYSTEM = 'x86_64-linux';
const REPO = 'team/hello';

/**
 * Checks that pass, fail, or sleep. With `slowEvalSecs`, listing the checks needs a derivation
 * built while evaluating (import from derivation), which holds the evaluation that long.
 */
function flake(nonce: string, o: { sleepSecs?: number; slowEvalSecs?: number } = {}): string {
  const checks = `{
        ok = mk "gitea-ok" "echo ok > $out" { };
        fails = mk "gitea-fails" "echo failing on purpose >&2; exit 1" { };
        slow = mk "gitea-slow" "sleep ${o.sleepSecs ?? 1}; echo slow > $out" { };
      }`;
  const slowEval = o.slowEvalSecs
    ? `import (derivation { name = "gitea-slow-eval-${nonce}"; system = "${SYSTEM}"; builder = "/bin/sh";
        args = [ "-c" "/bin/sleep ${o.slowEvalSecs}; echo '{ }' > $out" ]; }) // `
    : '';
  return checksFlake({ nonce, tag: 'gitea', checks: `${slowEval}${checks}` });
}

/** A delivery as Gitea sends it, or as Forgejo does (its own headers, on its own route). */
async function deliver(url: string, secret: string, forge: 'gitea' | 'forgejo', event: string, payload: unknown) {
  const body = JSON.stringify(payload);
  const res = await fetch(`${url}/api/v1/webhooks/${forge}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      [`x-${forge}-event`]: event,
      [`x-${forge}-delivery`]: randomBytes(8).toString('hex'),
      [`x-${forge}-signature`]: signGitea(secret, body),
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as any };
}

const user = (login: string) => ({ id: 1, login, username: login, full_name: '', email: `${login}@example.org` });
const repository = (dir: string) => ({
  id: 7,
  name: 'hello',
  full_name: REPO,
  owner: user('team'),
  default_branch: 'main',
  clone_url: `file://${dir}`,
  private: false,
});

/** Gitea's push payload (modules/structs: PushPayload). */
function pushPayload(dir: string, before: string, after: string) {
  return {
    ref: 'refs/heads/main',
    before,
    after,
    compare_url: '',
    commits: [{ id: after, message: 'a change\n', url: '' }],
    head_commit: { id: after, message: 'a change\n', url: '' },
    repository: repository(dir),
    pusher: user('alice'),
    sender: user('alice'),
  };
}

/** Gitea's pull_request payload (PullRequestPayload), a branch of the same repository. */
function prPayload(dir: string, action: string, n: number, sha: string) {
  return {
    action,
    number: n,
    pull_request: {
      id: 100 + n,
      number: n,
      title: 'a pull request',
      user: user('alice'),
      state: action === 'closed' ? 'closed' : 'open',
      head: { label: 'work', ref: 'work', sha, repo: repository(dir) },
      base: { label: 'main', ref: 'main', sha, repo: repository(dir) },
    },
    repository: repository(dir),
    sender: user('alice'),
  };
}

test('Gitea/Forgejo: signed webhooks evaluate pushes and PRs, statuses reported; close or cancel stops', {
  timeout: 600_000,
}, async (t) => {
  const gitea = await startGiteaStandIn(t);
  const dir = await makeTempDir(t, 'narhub-gitea-');
  const { configFile, secret } = await writeForgeConfig(dir, gitea.url, { report: 'statuses' });
  const nonce = randomBytes(6).toString('hex');
  const { repo, sha: mainSha } = await flakeRepo(dir, flake(nonce));
  const {
    url,
    token,
    api,
    cli,
    dataDir,
    evaluationEnd: done,
  } = await startForgeHub(t, { configFile, spokeId: 'gitea-spoke' });
  await cli(['project', 'create', 'hello', '--flake', `git+file://${repo}`, '--ref', 'main', '--github', REPO]);

  // --- A bad signature does nothing; a signed push evaluates its commit ------------------------
  const push = pushPayload(repo, '0'.repeat(40), mainSha);
  const forged = await fetch(`${url}/api/v1/webhooks/gitea`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-gitea-event': 'push',
      'x-gitea-signature': signGitea('not-the-secret', JSON.stringify(push)),
    },
    body: JSON.stringify(push),
  });
  assert.equal(forged.status, 401);
  assert.match(((await forged.json()) as { message: string }).message, /signature/);
  const unsigned = await fetch(`${url}/api/v1/webhooks/gitea`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitea-event': 'push' },
    body: JSON.stringify(push),
  });
  assert.equal(unsigned.status, 401);
  assert.deepEqual((await api.get('/projects/hello/evaluations')).evaluations, [], 'nothing from unsigned deliveries');

  const pushed = await deliver(url, secret, 'gitea', 'push', push);
  assert.equal(pushed.status, 202, JSON.stringify(pushed.body));
  assert.equal(pushed.body.outcomes[0].action, 'evaluated');
  const ev = await done(pushed.body.outcomes[0].evaluation);
  assert.deepEqual([ev.status, ev.jobset, ev.commit, ev.trigger], ['failed', 'main', mainSha, 'push']);

  // --- Commit statuses, one per attribute plus the evaluation's, on that commit ---------------
  const ctx = (attr: string) => `narhub: checks.${SYSTEM}.${attr}`;
  await waitFor(
    'the final statuses',
    async () =>
      gitea.latest(mainSha, ctx('ok'))?.state === 'success' &&
      gitea.latest(mainSha, ctx('fails'))?.state === 'failure' &&
      gitea.latest(mainSha, 'narhub: evaluation')?.state === 'success',
    60_000,
  );
  const okStatuses = gitea.statuses.filter((s) => s.sha === mainSha && s.context === ctx('ok'));
  // States only move forward. A build that ends between two of the reporter's syncs has its
  // pending coalesced away (by design), so pending is asserted on the slow build below.
  assert.match(okStatuses.map((s) => s.state).join(' '), /^(pending )*success( success)*$/, 'pending, then success');
  assert.equal(okStatuses.at(-1)!.repo, REPO);
  assert.match(gitea.latest(mainSha, ctx('fails'))!.target_url ?? '', new RegExp(`^${url}/ui/builds/[0-9a-z]{32}$`));

  // --- Forgejo's pull request webhooks: opened, synchronized (Gitea's word), closed ------------
  git(repo, 'checkout', '-q', '-b', 'work');
  await writeFile(join(repo, 'flake.nix'), flake(`${nonce}-pr`, { sleepSecs: 60 }));
  git(repo, 'commit', '-q', '-am', 'pr');
  const prSha = git(repo, 'rev-parse', 'HEAD');
  git(repo, 'update-ref', 'refs/pull/3/head', prSha);
  const opened = await deliver(url, secret, 'forgejo', 'pull_request', prPayload(repo, 'opened', 3, prSha));
  assert.equal(opened.status, 202, JSON.stringify(opened.body));
  assert.equal(opened.body.outcomes[0].action, 'evaluated', JSON.stringify(opened.body));
  const prEval = await api.get(`/evaluations/${opened.body.outcomes[0].evaluation}`);
  assert.deepEqual([prEval.jobset, prEval.commit, prEval.prNumber], ['pr-3', prSha, 3]);

  // A cancel from the CLI while its slow build runs: the evaluation and that build end cancelled.
  const building = await waitFor(
    'the slow PR build to run',
    async () => {
      const e = await api.get(`/evaluations/${prEval.id}`);
      return e.jobs?.find((j: any) => j.attr.endsWith('.slow'))?.status === 'running' ? e : undefined;
    },
    180_000,
  );
  await waitFor('the running slow build to show as pending on the PR head', async () =>
    gitea.latest(prSha, ctx('slow'))?.state === 'pending' ? true : undefined,
  );
  // Cancelling needs admin rights on the project's cache; a trigger token is not enough.
  const triggerToken = (
    await runCliOk(['token', 'create', '--perm', 'trigger', '--project', 'hello'], { dataDir })
  ).stdout.trim();
  const refused = await runCli(['eval', 'cancel', String(prEval.id), '--server', url, '--token', triggerToken]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /FORBIDDEN/);
  assert.equal((await api.get(`/evaluations/${prEval.id}`)).status, 'building', 'still building');
  const cancelled = JSON.parse((await cli(['eval', 'cancel', String(prEval.id), '--json'])).stdout);
  assert.equal(cancelled.status, 'cancelled');
  const slowJob = building.jobs.find((j: any) => j.attr.endsWith('.slow'));
  await waitFor('the slow build to be cancelled', async () =>
    (await api.get(`/builds/${slowJob.drvHash}`)).status === 'cancelled' ? true : undefined,
  );
  const again = await runCli(['eval', 'cancel', String(prEval.id), '--server', url, '--token', token]);
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /already ended/);

  // synchronized (a new head), evaluated as pr-3 again; it holds in `evaluating` while the
  // flake's import-from-derivation builds, and a close then cancels it before any build starts.
  await writeFile(join(repo, 'flake.nix'), flake(`${nonce}-pr2`, { slowEvalSecs: 20 }));
  git(repo, 'commit', '-q', '-am', 'pr, slow to evaluate');
  const prSha2 = git(repo, 'rev-parse', 'HEAD');
  git(repo, 'update-ref', 'refs/pull/3/head', prSha2);
  const synced = await deliver(url, secret, 'gitea', 'pull_request', prPayload(repo, 'synchronized', 3, prSha2));
  assert.equal(synced.body.outcomes[0].action, 'evaluated', JSON.stringify(synced.body));
  const slowEvalId = synced.body.outcomes[0].evaluation as number;
  await waitFor('the evaluation to be evaluating', async () =>
    (await api.get(`/evaluations/${slowEvalId}`)).status === 'evaluating' ? true : undefined,
  );
  const closed = await deliver(url, secret, 'forgejo', 'pull_request', prPayload(repo, 'closed', 3, prSha2));
  assert.equal(closed.body.outcomes[0].action, 'cancelled');
  assert.deepEqual(closed.body.outcomes[0].cancelled, [slowEvalId]);
  // Longer than the evaluation would have taken: it stays cancelled and started no build.
  await sleep(30_000);
  const afterClose = await api.get(`/evaluations/${slowEvalId}`);
  assert.equal(afterClose.status, 'cancelled');
  assert.deepEqual(afterClose.builds, {}, 'no build was recorded for it');
  assert.deepEqual(afterClose.jobs ?? [], [], 'nor any job');
  assert.deepEqual((await api.get('/builds?status=running')).builds, [], 'nothing runs');
  assert.deepEqual((await api.get('/builds?status=queued')).builds, [], 'nothing waits');
  assert.deepEqual(gitea.violations, [], "every request matched Gitea's description");
});
