import { command } from '../command-spec.js';
import { UPSTREAM_PATHS_FLAG } from './common.js';

export const PUSH = command({
  name: 'push',
  args: 'CACHE_URL PATH…',
  positionals: { min: 2, max: Number.MAX_SAFE_INTEGER },
  summary: 'Upload the closures of store paths to a cache, skipping what it already has.',
  description: `Uses narhub's native upload (one request per path). Each NAR is compressed here, with zstd
on up to 4 threads, and the server keeps the frame once it decoded it to the path's NAR
(--compression none leaves compressing to the server). Paths signed by a key the cache's upstreams
are trusted under are skipped (narhub fetches them itself when needed). Progress goes to stderr.
Exits 0 when every path is in the cache or its upstreams afterwards, 1 when any could not be pushed.`,
  flags: {
    jobs: { type: 'string', short: 'j', value: 'N', default: '4', help: 'Paths uploaded at once (1-64)' },
    compression: { type: 'string', value: 'zstd|none', default: 'zstd', help: 'How NARs are sent' },
    'zstd-level': { type: 'string', value: 'N', default: '3', help: 'zstd level of the NARs sent (1-19)' },
    retries: {
      type: 'string',
      value: 'N',
      default: '4',
      help: 'Tries again after a connection error, 5xx or 429 (0-20)',
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
    ...UPSTREAM_PATHS_FLAG,
  },
  examples: ['narhub push http://127.0.0.1:8080/main ./result --jobs 8'],
});
