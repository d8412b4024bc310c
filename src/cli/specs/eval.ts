import { command } from '../command-spec.js';
import { CLIENT_FLAGS, JSON_FLAG } from './common.js';

export const EVAL = command({
  name: 'eval',
  args: 'PROJECT',
  positionals: { min: 1, max: 1 },
  summary: 'Start an evaluation of a project; with --wait, follow its builds until they end.',
  description: 'With --wait it exits 0 when every build succeeded, else 1 (also when --timeout passes first).',
  flags: {
    ref: { type: 'string', value: 'REF', default: "the project's branch", help: 'Branch or revision to evaluate' },
    priority: { type: 'string', value: 'N', default: "the project's", help: 'Queue priority of its builds' },
    wait: { type: 'boolean', help: 'Wait until every build has ended' },
    timeout: { type: 'string', value: 'DURATION', default: 'none', help: 'With --wait: give up after this long' },
    interval: { type: 'string', value: 'DURATION', default: '1s', help: 'With --wait: time between polls' },
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub eval web --wait --timeout 2h'],
});

export const EVAL_LIST = command({
  name: 'eval list',
  args: 'PROJECT',
  positionals: { min: 1, max: 1 },
  summary: "A project's evaluations, newest first: status, jobset, commit, trigger and builds.",
  flags: {
    branch: { type: 'string', value: 'JOBSET', default: 'all', help: 'Only this branch (or pr-N)' },
    limit: { type: 'string', value: 'N', default: '20', help: 'At most this many' },
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub eval list web --branch main'],
});

export const EVAL_CANCEL = command({
  name: 'eval cancel',
  args: 'ID',
  positionals: { min: 1, max: 1 },
  summary: 'Cancel an evaluation, while it evaluates or builds: its builds that nothing else needs are cancelled.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub eval cancel 42'],
});

export const EVAL_SHOW = command({
  name: 'eval show',
  args: 'ID',
  positionals: { min: 1, max: 1 },
  summary: 'Show an evaluation and its attributes; with --wait, follow it (e.g. one a push started) until it ends.',
  description: 'With --wait it exits 0 when every build succeeded, else 1 (also when --timeout passes first).',
  flags: {
    wait: { type: 'boolean', help: 'Wait until every build has ended' },
    timeout: { type: 'string', value: 'DURATION', default: 'none', help: 'With --wait: give up after this long' },
    interval: { type: 'string', value: 'DURATION', default: '1s', help: 'With --wait: time between polls' },
    ...JSON_FLAG,
    ...CLIENT_FLAGS,
  },
  examples: ['narhub eval show 42 --wait'],
});
