import { NarhubError } from '../errors.js';
import type { ProjectAttrSet, ProjectFields, ProjectRow, ProjectsRepo } from '../db/projects-repo.js';

export const ATTR_SETS: readonly ProjectAttrSet[] = ['checks', 'packages', 'nixosConfigurations'];

export interface ProjectInput {
  flake: string;
  ref?: string | null | undefined;
  systems?: string[] | undefined;
  attrs?: ProjectAttrSet[] | undefined;
  cache: string;
  priority?: number | undefined;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const FLAKE = /^(git\+(https?|ssh|file):\/\/|path:|github:|gitlab:|sourcehut:)[^\s#]+$/;
const REF = /^(?!.*\.\.)[A-Za-z0-9._/+-]{1,200}$/;
const SYSTEM = /^[a-z0-9_]+-[a-z0-9_]+$/;

export function assertValidProjectName(name: string): void {
  if (!NAME.test(name))
    throw new NarhubError(
      'BAD_REQUEST',
      `invalid project name ${JSON.stringify(name.slice(0, 80))}: 1-63 of a-z, 0-9, - and _, starting with a letter or digit`,
    );
}

/** Checks a project's settings and fills in the defaults (checks of x86_64-linux, priority 0). */
export function projectFields(input: ProjectInput, cacheId: number): ProjectFields {
  if (!FLAKE.test(input.flake)) {
    throw new NarhubError(
      'BAD_REQUEST',
      `unsupported flake reference ${JSON.stringify(input.flake.slice(0, 200))}: use git+https://, git+file://, path: (or github:, gitlab:)`,
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
  return { flake: input.flake, ref, systems, attrs, cacheId, priority };
}

export function requireProject(projects: ProjectsRepo, name: string): ProjectRow {
  const p = projects.get(name);
  if (!p) throw new NarhubError('NOT_FOUND', `no project named ${name}`);
  return p;
}
