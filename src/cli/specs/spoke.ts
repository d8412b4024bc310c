import { SPOKE_DEFAULTS } from '../../spoke/options.js';
import { formatDuration } from '../../units.js';
import { command } from '../command-spec.js';
import { CLIENT_FLAGS, JSON_FLAG } from './common.js';

const ms = (value: number) => `${value} ms`;

export const SPOKE = command({
  name: 'spoke',
  positionals: { min: 0, max: 0 },
  summary: "Build the hub's jobs on this machine and push the outputs, until SIGTERM or SIGINT.",
  description: `A first signal drains (no new jobs; running builds finish and push); a second kills the builds
and exits at once, and their jobs go to other spokes.`,
  flags: {
    hub: { type: 'string', value: 'URL', required: true, help: "narhub's base URL" },
    'redis-url': { type: 'string', value: 'URL', default: '$NARHUB_REDIS_URL', help: "The hub's Redis" },
    systems: {
      type: 'string',
      value: 'SYSTEM[,…]',
      required: true,
      help: 'Systems this machine builds for, e.g. x86_64-linux',
    },
    'token-file': { type: 'string', value: 'FILE', help: 'File holding the write token outputs are pushed with' },
    token: { type: 'string', value: 'TOKEN', default: '$NARHUB_TOKEN', help: 'The write token itself' },
    features: {
      type: 'string',
      value: 'F,…',
      default: 'none',
      help: 'System features offered, e.g. kvm,big-parallel',
    },
    'max-jobs': { type: 'string', value: 'N', default: String(SPOKE_DEFAULTS.maxJobs), help: 'Builds run at once' },
    store: {
      type: 'string',
      value: 'STORE',
      default: SPOKE_DEFAULTS.store,
      help: "Nix store to build in: auto (the machine's), or a directory for a chroot store",
    },
    timeout: {
      type: 'string',
      value: 'DURATION',
      default: formatDuration(SPOKE_DEFAULTS.timeout),
      help: 'Wall-clock limit of a build whose job sets none; 0 for none',
    },
    'max-silent': {
      type: 'string',
      value: 'DURATION',
      default: formatDuration(SPOKE_DEFAULTS.maxSilent),
      help: 'Limit on a build printing nothing, when its job sets none; 0 for none',
    },
    'push-retry-for': {
      type: 'string',
      value: 'DURATION',
      default: formatDuration(SPOKE_DEFAULTS.pushRetryFor),
      help: "How long a built job's outputs wait for an unreachable narhub before the job fails",
    },
    id: { type: 'string', value: 'NAME', default: 'the host name', help: 'Name in heartbeats and build records' },
    'lock-duration': {
      type: 'string',
      value: 'MS',
      default: ms(SPOKE_DEFAULTS.lockDuration),
      help: "How soon a dead spoke's job can go to another",
      hidden: true,
    },
    'stalled-interval': {
      type: 'string',
      value: 'MS',
      default: ms(SPOKE_DEFAULTS.stalledInterval),
      help: 'How often stalled jobs are looked for',
      hidden: true,
    },
    'discover-interval': {
      type: 'string',
      value: 'MS',
      default: ms(SPOKE_DEFAULTS.discoverInterval),
      help: 'How often new feature queues are looked for',
      hidden: true,
    },
    'retry-delay': {
      type: 'string',
      value: 'MS',
      default: ms(SPOKE_DEFAULTS.retryDelay),
      help: 'First delay between tries of a network step (doubles)',
      hidden: true,
    },
    'network-retries': {
      type: 'string',
      value: 'N',
      default: String(SPOKE_DEFAULTS.networkRetries),
      help: 'Extra tries of a network step',
      hidden: true,
    },
  },
  examples: [
    'narhub spoke --hub http://hub:8080 --redis-url redis://hub:6379 --systems x86_64-linux --token-file /run/token',
  ],
});

export const SPOKE_LIST = command({
  name: 'spoke list',
  positionals: { min: 0, max: 0 },
  summary: 'The connected spokes: systems, features, load, and how many builds each runs.',
  flags: { ...JSON_FLAG, ...CLIENT_FLAGS },
  examples: ['narhub spoke list'],
});
