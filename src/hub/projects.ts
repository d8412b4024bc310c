import { NarhubError } from '../errors.js';
import type { ForkPolicy, ProjectAttrSet, ProjectFields, ProjectRow, ProjectsRepo } from '../db/projects-repo.js';

const ATTR_SETS: readonly ProjectAttrSet[] = ['checks', 'packages', 'nixosConfigurations'];

export interface ProjectInput {
  flake: string;
  ref?: string | null | undefined;
  systems?: string[] | undefined;
  attrs?: ProjectAttrSet[] | undefined;
  cache: string;
  priority?: number | undefined;
  /** OWNER/REPO on the configured forge (null unbinds). */
  github?: string | null | undefined;
  forkPolicy?: ForkPolicy | undefined;
  forkUsers?: string[] | undefined;
  /** Seconds between `git ls-remote` polls of the flake's remote (null: none). */
  pollInterval?: number | null | undefined;
  /** Outgoing webhook URL (null: none). */
  notifyUrl?: string | null | undefined;
}

const FORK_POLICIES: readonly ForkPolicy[] = ['collaborators', 'users', 'everyone'];
const FORGE_REPO = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
const FORGE_LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/;

/** A project's stored settings as input, for merging an update over them. */
function inputOf(p: ProjectRow): ProjectInput {
  return {
    flake: p.flake,
    ref: p.ref,
    systems: p.systems,
    attrs: p.attrs,
    cache: p.cacheName,
    priority: p.priority,
    github: p.forgeRepo,
    forkPolicy: p.forkPolicy,
    forkUsers: p.forkUsers,
    pollInterval: p.pollInterval,
    notifyUrl: p.notifyUrl,
  };
}

/** An update over a project's settings: a key left out keeps its value, null clears it. */
export function mergeInput(p: ProjectRow, update: Partial<ProjectInput>): ProjectInput {
  const merged: Record<string, unknown> = { ...inputOf(p) };
  for (const [k, v] of Object.entries(update)) if (v !== undefined) merged[k] = v;
  return merged as unknown as ProjectInput;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const FLAKE = /^(git\+(https?|ssh|file):\/\/|path:|github:|gitlab:|sourcehut:)[^\s#]+$/;
const REF = /^(?!.*\.\.)[A-Za-z0-9._/+-]{1,200}$/;
const SYSTEM = /^[a-z0-9_]+-[a-z0-9_]+$/;

export function assertValidProjectName(name: string): void {
  if (!NAME.test(name))
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid project name ${JSON.stringify(name.slice(0, 80))}: ` +
        '1-63 of a-z, 0-9, - and _, starting with a letter or digit',
    );
}

/** Checks a project's settings and fills in the defaults (checks of x86_64-linux, priority 0). */
export function projectFields(input: ProjectInput, cacheId: number): ProjectFields {
  if (!FLAKE.test(input.flake)) {
    throw new NarhubError(
      'BAD_REQUEST',
      `unsupported flake reference ${JSON.stringify(input.flake.slice(0, 200))}: ` +
        'use git+https://, git+file://, path: (or github:, gitlab:)',
    );
  }
  const ref = input.ref ?? null;
  if (ref !== null && !REF.test(ref))
    throw new NarhubError('BAD_REQUEST', `invalid ref ${JSON.stringify(ref.slice(0, 200))}`);
  if (ref !== null && input.flake.startsWith('path:'))
    throw new NarhubError('BAD_REQUEST', 'a path: flake has no branches or refs');
  const systems = [...new Set(input.systems ?? ['x86_64-linux'])];
  if (systems.length === 0 || !systems.every((s) => SYSTEM.test(s)))
    throw new NarhubError('BAD_REQUEST', `invalid systems ${JSON.stringify(systems)}`);
  const attrs: ProjectAttrSet[] = [...new Set<ProjectAttrSet>(input.attrs ?? ['checks'])];
  if (attrs.length === 0 || !attrs.every((a) => ATTR_SETS.includes(a))) {
    throw new NarhubError('BAD_REQUEST', `invalid attrs ${JSON.stringify(attrs)}: any of ${ATTR_SETS.join(', ')}`);
  }
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < -1000 || priority > 1000)
    throw new NarhubError('BAD_REQUEST', 'priority must be a whole number from -1000 to 1000');
  const forgeRepo = input.github ?? null;
  if (forgeRepo !== null && !FORGE_REPO.test(forgeRepo))
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid forge repository ${JSON.stringify(forgeRepo.slice(0, 200))}: OWNER/REPO`,
    );
  const forkPolicy = input.forkPolicy ?? 'collaborators';
  if (!FORK_POLICIES.includes(forkPolicy))
    throw new NarhubError('BAD_REQUEST', `fork policy must be one of ${FORK_POLICIES.join(', ')}`);
  const forkUsers = [...new Set(input.forkUsers ?? [])];
  const badUser = forkUsers.find((u) => !FORGE_LOGIN.test(u));
  if (badUser !== undefined) throw new NarhubError('BAD_REQUEST', `invalid forge login ${JSON.stringify(badUser)}`);
  const pollInterval = input.pollInterval ?? null;
  if (pollInterval !== null && (!Number.isInteger(pollInterval) || pollInterval < 10 || pollInterval > 86_400))
    throw new NarhubError('BAD_REQUEST', 'poll interval must be a whole number of seconds from 10 to 86400');
  if (pollInterval !== null && input.flake.startsWith('path:'))
    throw new NarhubError('BAD_REQUEST', 'a path: flake has no remote to poll');
  const notifyUrl = input.notifyUrl ?? null;
  if (notifyUrl !== null && !/^https?:\/\/[^\s]{1,2000}$/.test(notifyUrl))
    throw new NarhubError('BAD_REQUEST', 'the notification URL must be an http:// or https:// URL');
  return {
    flake: input.flake,
    ref,
    systems,
    attrs,
    cacheId,
    priority,
    forgeRepo,
    forkPolicy,
    forkUsers,
    pollInterval,
    notifyUrl,
  };
}

export function requireProject(projects: ProjectsRepo, name: string): ProjectRow {
  const p = projects.get(name);
  if (!p) throw new NarhubError('NOT_FOUND', `no project named ${name}`);
  return p;
}
