import { command } from '../command-spec.js';
import { ADMIN_FLAGS, JSON_FLAG, POLICY_FLAGS, SIGNATURE_FLAGS } from './common.js';

export const CACHE_UPDATE = command({
  name: 'cache update',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary:
    'Change a cache’s visibility, priority, GC or signature policy; a running server applies it within a second.',
  flags: {
    private: { type: 'boolean', help: 'Reading needs a read token' },
    public: { type: 'boolean', help: 'Anyone may read' },
    priority: { type: 'string', value: 'N', help: 'Priority in nix-cache-info; lower is preferred' },
    ...POLICY_FLAGS,
    ...SIGNATURE_FLAGS,
    ...JSON_FLAG,
    ...ADMIN_FLAGS,
  },
  examples: [
    'narhub cache update main --retention 30d --quota 500G',
    'narhub cache update team --public --quota none',
    'narhub cache update main --uploader-key "$(cat ci-key.pub)" --max-uploader-signatures 4',
  ],
});

export const PIN_ADD = command({
  name: 'pin add',
  args: 'CACHE STORE_PATH',
  positionals: { min: 2, max: 2 },
  summary: 'Pin a path of the cache: GC keeps it and its whole closure until the pin expires.',
  flags: {
    name: {
      type: 'string',
      value: 'LABEL',
      default: 'the path’s name',
      help: 'What pin list shows and pin remove takes',
    },
    expires: {
      type: 'string',
      value: '30d',
      default: 'never',
      help: 'When the pin stops protecting: a duration from now (12h, 30d, 1y) or an ISO date',
    },
    ...JSON_FLAG,
    ...ADMIN_FLAGS,
  },
  examples: ['narhub pin add main /nix/store/…-hello-2.12 --name release-24.05 --expires 90d'],
});

export const PIN_LIST = command({
  name: 'pin list',
  args: 'CACHE',
  positionals: { min: 1, max: 1 },
  summary: 'List the cache’s pins: name, path, expiry.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub pin list main --json'],
});

export const PIN_REMOVE = command({
  name: 'pin remove',
  args: 'CACHE NAME',
  positionals: { min: 2, max: 2 },
  summary: 'Remove a pin; its closure is then subject to the cache’s GC policy.',
  flags: { ...ADMIN_FLAGS },
  examples: ['narhub pin remove main release-24.05'],
});

export const KEY_LIST = command({
  name: 'key list',
  args: 'CACHE',
  positionals: { min: 1, max: 1 },
  summary: 'List the cache’s signing keys: state (active, previous, retired) and rewrite progress.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub key list main'],
});

export const KEY_ROTATE = command({
  name: 'key rotate',
  args: 'CACHE',
  positionals: { min: 1, max: 1 },
  summary: 'Make a new key generation (main-1 → main-2) active; the server re-signs every path in the background.',
  description:
    'The old key becomes previous: its signatures stay and new paths are signed by both, so clients trusting either ' +
    'key substitute every path. Retire it once re-signing is complete (key list shows progress).',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub key rotate main'],
});

export const KEY_RETIRE = command({
  name: 'key retire',
  args: 'CACHE KEY_NAME',
  positionals: { min: 2, max: 2 },
  summary:
    'Retire a previous key: refused until re-signing with the active key is complete; then its signatures are removed.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub key retire main main-1'],
});

export const KEY_IMPORT = command({
  name: 'key import',
  args: 'CACHE',
  positionals: { min: 1, max: 1 },
  summary: 'Adopt an existing Nix secret key (one clients already trust) as the active key; every path is re-signed.',
  flags: {
    'secret-key-file': {
      type: 'string',
      value: 'FILE',
      required: true,
      help: 'The key, as nix-store --generate-binary-cache-key writes it (name:base64)',
    },
    ...JSON_FLAG,
    ...ADMIN_FLAGS,
  },
  examples: ['narhub key import main --secret-key-file /run/keys/cache.example.org-1'],
});

export const GC = command({
  name: 'gc',
  positionals: { min: 0, max: 0 },
  summary: 'Collect garbage: each cache by its retention, quota and pins, plus orphaned files; prints what it removes.',
  description:
    'A path goes only together with every path that refers to it. narhub serve also runs this every gc.interval ' +
    '(default 1h).',
  flags: {
    cache: { type: 'string', value: 'NAME', default: 'every cache', help: 'Only this cache' },
    'dry-run': { type: 'boolean', help: 'Print what would be removed, remove nothing' },
    ...JSON_FLAG,
    ...ADMIN_FLAGS,
  },
  examples: ['narhub gc --dry-run', 'narhub gc --cache main --json --server https://cache.example.org'],
});
