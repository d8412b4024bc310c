import { command, type Flags } from '../command-spec.js';
import { CLIENT_FLAGS, JSON_FLAG } from './common.js';

const SETTINGS = {
  ref: { type: 'string', value: 'BRANCH', default: "the flake's default branch", help: 'Branch to evaluate' },
  systems: { type: 'string', value: 'S,…', default: 'x86_64-linux', help: 'Systems whose outputs are built' },
  attrs: {
    type: 'string',
    value: 'checks,packages,nixosConfigurations',
    default: 'checks',
    help: 'Flake outputs to build',
  },
  cache: { type: 'string', value: 'NAME', default: 'main', help: 'Cache the results are pushed to' },
  priority: { type: 'string', value: 'N', default: '0', help: "Queue priority of the project's builds" },
} as const satisfies Flags;

export const PROJECT_CREATE = command({
  name: 'project create',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Register a flake with the hub, to evaluate and build.',
  flags: {
    flake: { type: 'string', value: 'URL', required: true, help: 'Flake reference, e.g. github:owner/repo' },
    ...SETTINGS,
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub project create web --flake git+https://git.example.org/web --systems x86_64-linux,aarch64-linux'],
});

export const PROJECT_UPDATE = command({
  name: 'project update',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: "Change a project's settings; what is not given stays as it was (--ref '' clears the branch).",
  flags: {
    flake: { type: 'string', value: 'URL', help: 'Flake reference' },
    ...SETTINGS,
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub project update web --attrs checks,packages'],
});

export const PROJECT_LIST = command({
  name: 'project list',
  positionals: { min: 0, max: 0 },
  summary: 'List the projects: name, flake, systems and cache.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub project list'],
});

export const PROJECT_SHOW = command({
  name: 'project show',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Show a project and its last ten evaluations.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub project show web'],
});

export const PROJECT_DELETE = command({
  name: 'project delete',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Delete a project; its builds stay in the cache.',
  flags: { ...CLIENT_FLAGS },
  examples: ['narhub project delete web'],
});
