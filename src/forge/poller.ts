import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { ForgeRepo } from '../db/forge-repo.js';
import type { ProjectRow, ProjectsRepo } from '../db/projects-repo.js';
import type { Hub } from '../hub/hub-service.js';

/** The git remote behind a flake reference, or null when it has none (`path:`). */
export function remoteOf(flake: string): string | null {
  const url = flake.split('#', 1)[0]!.split('?', 1)[0]!;
  if (url.startsWith('git+file://')) return url.slice('git+file://'.length);
  if (/^git\+(https?|ssh):\/\//.test(url)) return url.slice('git+'.length);
  const gh = /^github:([^/]+)\/([^/]+)/.exec(url);
  if (gh) return `https://github.com/${gh[1]}/${gh[2]}.git`;
  const gl = /^gitlab:([^/]+)\/([^/]+)/.exec(url);
  if (gl) return `https://gitlab.com/${gl[1]}/${gl[2]}.git`;
  return null;
}

/** `git ls-remote URL REF`: the commit the ref points at. */
function lsRemote(remote: string, ref: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['ls-remote', '--exit-code', '--', remote, ref],
      { timeout: timeoutMs, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' }, maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          return reject(new Error(`git ls-remote ${remote} ${ref}: ${(stderr || err.message).trim().slice(0, 300)}`));
        const sha = /^([0-9a-f]{40})\t/m.exec(stdout)?.[1];
        if (!sha) return reject(new Error(`git ls-remote ${remote} ${ref}: no such ref`));
        resolve(sha);
      },
    );
  });
}

/**
 * Polls the git remote of every project with a poll interval (`git ls-remote`, which any forge
 * answers) and evaluates the branch's new head whenever it moves.
 */
export function createPoller(o: { hub: Hub; projects: ProjectsRepo; forge: ForgeRepo; logger: Logger }) {
  const { hub, projects, forge, logger } = o;
  const lastPoll = new Map<number, number>();
  const busy = new Set<number>();
  let timer: NodeJS.Timeout | undefined;

  async function poll(p: ProjectRow): Promise<number | null> {
    const remote = remoteOf(p.flake);
    if (!remote) return null;
    const ref = p.ref ?? 'HEAD';
    const sha = await lsRemote(remote, p.ref ? `refs/heads/${p.ref}` : 'HEAD').catch(async (err: unknown) => {
      // A ref that is not a branch (a tag, or refs/…) is asked for as given.
      if (p.ref) return lsRemote(remote, p.ref);
      throw err;
    });
    if (forge.polledHead(p.id, ref) === sha) return null;
    const e = hub.triggerEvaluation(p.name, { commit: sha, jobset: p.ref ?? 'default', trigger: 'poll' });
    forge.setPolledHead(p.id, ref, sha);
    logger.info({ project: p.name, ref, sha, evaluation: e.id }, 'polled remote moved; evaluating');
    return e.id;
  }

  function tick(): void {
    const now = Date.now();
    for (const p of projects.polled()) {
      if (busy.has(p.id) || now - (lastPoll.get(p.id) ?? 0) < (p.pollInterval ?? Infinity) * 1000) continue;
      lastPoll.set(p.id, now);
      busy.add(p.id);
      poll(p)
        .catch((err: unknown) => logger.warn({ err: (err as Error).message, project: p.name }, 'polling failed'))
        .finally(() => busy.delete(p.id));
    }
  }

  return {
    poll,
    start(everyMs = 1_000): void {
      timer = setInterval(tick, everyMs);
      timer.unref();
    },
    close(): void {
      if (timer) clearInterval(timer);
    },
  };
}
