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
  github: {
    type: 'string',
    value: 'OWNER/REPO',
    help: "The forge repository whose webhooks and checks are this project's ('' unbinds)",
  },
  'fork-policy': {
    type: 'string',
    value: 'collaborators|users|everyone',
    default: 'collaborators',
    help: "Whose pull requests from forks run without an admin's approval",
  },
  'fork-users': { type: 'string', value: 'LOGIN,…', help: 'With --fork-policy users: the forge logins trusted' },
  'poll-interval': {
    type: 'string',
    value: 'SECONDS',
    default: 'no polling',
    help: "Poll the flake's git remote this often and evaluate a new head ('' stops)",
  },
  'notify-url': {
    type: 'string',
    value: 'URL',
    help:
      "Outgoing webhook for evaluation ends and attributes breaking or being fixed ('' stops); " +
      'its HMAC key is printed once',
  },
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

export const PROJECT_HISTORY = command({
  name: 'project history',
  args: 'NAME ATTR',
  positionals: { min: 2, max: 2 },
  summary: "An attribute's outcome, commit, duration and spoke in each evaluation, newest first.",
  flags: {
    limit: { type: 'string', value: 'N', default: '50', help: 'At most this many evaluations' },
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub project history web checks.x86_64-linux.test'],
});

export const PROJECT_APPROVALS = command({
  name: 'project approvals',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Pull requests from forks waiting for an admin to approve them (and those approved).',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub project approvals web'],
});

export const PROJECT_APPROVE = command({
  name: 'project approve',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: "Approve a fork's pull request: its current head is evaluated as jobset pr-N.",
  description: 'A new push to the pull request needs a new approval: an approval is of one commit.',
  flags: {
    pr: { type: 'string', value: 'N', required: true, help: 'The pull request' },
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub project approve web --pr 42'],
});

export const PROJECT_NOTIFY_SECRET = command({
  name: 'project notify-secret',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: "Make a new HMAC key for the project's outgoing webhook and print it (shown once).",
  flags: { ...CLIENT_FLAGS },
  examples: ['narhub project notify-secret web'],
});
