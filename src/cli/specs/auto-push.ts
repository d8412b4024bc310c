import { DEFAULT_QUEUE_DIR } from '../../push/push-queue.js';
import { type Flags, command } from '../command-spec.js';
import { UPSTREAM_PATHS_FLAG } from './common.js';

/** Where watch-store keeps its cursor and its queue unless told otherwise. */
export const DEFAULT_WATCH_STATE_DIR = '/var/lib/narhub-push/watch-store';

const QUEUE_FLAG = {
  queue: {
    type: 'string',
    value: 'DIR',
    default: `$NARHUB_PUSH_QUEUE, else ${DEFAULT_QUEUE_DIR}`,
    help: 'The push queue (the same default for queue-push and push-daemon)',
  },
} as const satisfies Flags;

/** Where and how the daemons push, and what they leave out. */
const DAEMON_FLAGS = {
  jobs: { type: 'string', short: 'j', value: 'N', default: '4', help: 'Paths uploaded at once (1-64)' },
  retries: {
    type: 'string',
    value: 'N',
    default: '4',
    help: 'Immediate tries again after a connection error, 5xx or 429, before the entry waits (0-20)',
  },
  'token-file': {
    type: 'string',
    value: 'FILE',
    help: 'File holding the write token (read once at start; e.g. a systemd credential)',
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    default: "$NARHUB_TOKEN, else the password of the cache's host in netrc",
    help: 'Write token',
  },
  netrc: {
    type: 'string',
    value: 'FILE',
    default: "Nix's: $NIX_CONF_DIR/netrc, ~/.config/nix/netrc, /etc/nix/netrc",
    help: 'netrc file to take the token from',
  },
  include: {
    type: 'string',
    value: 'GLOB',
    multiple: true,
    default: 'every path',
    help: "Push only paths whose name (after the hash) matches one of these globs, e.g. 'myproject-*'",
  },
  exclude: {
    type: 'string',
    value: 'GLOB',
    multiple: true,
    help: "Leave out paths whose name matches, e.g. '*.drv' or '*-source'",
  },
  'only-built-here': {
    type: 'boolean',
    help: 'Only paths Nix built on this machine (marked ultimate), not substituted, copied or added ones',
  },
  'max-size': {
    type: 'string',
    value: 'SIZE',
    default: 'no limit',
    help:
      'Never upload a NAR bigger than SIZE (e.g. 2G): such a path the cache lacks, and every path needing it, ' +
      'is left out',
  },
  ...UPSTREAM_PATHS_FLAG,
  'max-backoff': {
    type: 'string',
    value: 'DURATION',
    default: '5m',
    help: 'Longest wait before an entry whose push failed is tried again (the wait doubles from 2 s)',
  },
} as const satisfies Flags;

const FILTERS = `A path taken goes with its whole closure, which the cache needs, less what the cache
already has and what its upstreams sign (unless --upload-upstream-paths); --include, --exclude
and --only-built-here choose the paths taken, --max-size holds back every path of the closure.
Paths no longer in the store when their turn comes are skipped.`;

export const QUEUE_PUSH = command({
  name: 'queue-push',
  args: '[PATH…]',
  positionals: { min: 0, max: Number.MAX_SAFE_INTEGER },
  summary: "Queue store paths for push-daemon; Nix's post-build-hook. Returns at once and never uploads.",
  description: `The paths become one entry of the queue, written whole and fsynced before it returns.
Without PATHs it takes $OUT_PATHS, or, where Nix leaves that empty (Nix 2.8.0), the outputs of
the derivation $DRV_PATH. Use it from the script nix.conf names as post-build-hook.`,
  flags: QUEUE_FLAG,
  examples: ['narhub queue-push $OUT_PATHS', 'narhub queue-push --queue /var/lib/narhub-push/queue ./result'],
});

export const PUSH_DAEMON = command({
  name: 'push-daemon',
  args: 'CACHE_URL',
  positionals: { min: 1, max: 1 },
  summary: 'Push what queue-push queued, closure by closure, until SIGTERM or SIGINT.',
  description: `An entry leaves the queue only once its whole closure is in the cache, so a daemon killed at any
moment loses nothing; a path queued twice is uploaded once. Failed pushes are tried again with a
backoff; an entry the cache refuses for good (a 4xx about the path) moves to failed/ in the
queue, with a .why file beside it. ${FILTERS}`,
  flags: {
    ...QUEUE_FLAG,
    drain: {
      type: 'boolean',
      help:
        'Push what is queued, each entry once, then exit: 1 when any entry is left or moved to failed/ (the end ' +
        'of a CI job)',
    },
    ...DAEMON_FLAGS,
  },
  examples: [
    'narhub push-daemon http://127.0.0.1:8080/main --token-file /run/credentials/narhub-push.service/token',
    'narhub push-daemon http://127.0.0.1:8080/main --drain',
  ],
});

export const WATCH_STORE = command({
  name: 'watch-store',
  args: 'CACHE_URL',
  positionals: { min: 1, max: 1 },
  summary: 'Push every path that becomes valid in the local Nix store, with its closure, until SIGTERM or SIGINT.',
  description: `New paths are read from Nix's database ($NIX_STATE_DIR/db/db.sqlite, read-only: run it as root),
whenever it changes and every --interval, and queued in the state directory, which is drained as
push-daemon drains its queue. The state directory remembers the last path seen, so paths added
while watch-store was stopped are pushed when it starts again; the first start begins with the
paths added from then on. ${FILTERS}`,
  flags: {
    state: {
      type: 'string',
      value: 'DIR',
      default: DEFAULT_WATCH_STATE_DIR,
      help: 'Where the last path seen (cursor) and the queue (queue/) are kept',
    },
    interval: {
      type: 'string',
      value: 'DURATION',
      default: '10s',
      help: "How often Nix's database is read even when no change was noticed",
    },
    ...DAEMON_FLAGS,
  },
  examples: ["narhub watch-store http://127.0.0.1:8080/main --token-file /run/secrets/narhub-token --exclude '*.drv'"],
});
