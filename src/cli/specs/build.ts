import { command, type Flags } from '../command-spec.js';
import { CLIENT_FLAGS, JSON_FLAG } from './common.js';

const ONE_BUILD = { args: 'DRV_HASH|DRV_PATH', positionals: { min: 1, max: 1 } } as const;
const DRV = '/nix/store/5a0q2ks0bpl3wdz4hgllh6yw7ja0j9n1-hello-2.12.drv';

export const BUILD_SHOW = command({
  name: 'build show',
  ...ONE_BUILD,
  summary: "Show a derivation's build: status, attempts, outputs, spoke and error.",
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: [`narhub build show ${DRV}`],
});

export const BUILD_RESTART = command({
  name: 'build restart',
  ...ONE_BUILD,
  summary: 'Build a derivation again: a new attempt of a failed or cancelled build.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub build restart 5a0q2ks0bpl3wdz4hgllh6yw7ja0j9n1'],
});

export const BUILD_CANCEL = command({
  name: 'build cancel',
  ...ONE_BUILD,
  summary: 'Cancel a queued or running build.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub build cancel 5a0q2ks0bpl3wdz4hgllh6yw7ja0j9n1'],
});

export const BUILD_LOG = command({
  name: 'build log',
  ...ONE_BUILD,
  summary: "Print a build's log.",
  flags: { follow: { type: 'boolean', help: 'Keep printing while the build runs' }, ...CLIENT_FLAGS },
  examples: [`narhub build log ${DRV} --follow`],
});

const LIST_FLAGS = {
  status: {
    type: 'string',
    value: 'STATUS',
    default: 'any',
    help: 'Only builds in this state: queued, running, succeeded, failed, dependency-failed or cancelled',
  },
  'out-path': { type: 'string', value: 'PATH', help: 'Only the build that produces this output path' },
  project: { type: 'string', value: 'NAME', help: 'Only builds this project asked for' },
  branch: { type: 'string', value: 'JOBSET', help: 'Only builds asked for on this branch (or pr-N)' },
  attr: { type: 'string', value: 'ATTR', help: 'Only builds of this attribute, e.g. checks.x86_64-linux.test' },
  spoke: { type: 'string', value: 'ID', help: 'Only builds this spoke ran' },
  limit: { type: 'string', value: 'N', default: '100', help: 'At most this many, most recently changed first' },
} as const satisfies Flags;

export const BUILD_LIST = command({
  name: 'build list',
  positionals: { min: 0, max: 0 },
  summary: 'List builds: status, derivation, spoke and duration, and what a queued build waits for.',
  flags: { ...LIST_FLAGS, ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub build list --status failed', 'narhub build list --project web --branch main --spoke builder-1'],
});
