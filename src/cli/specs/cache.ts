import { command } from '../command-spec.js';
import { ADMIN_FLAGS, JSON_FLAG, POLICY_FLAGS, SIGNATURE_FLAGS } from './common.js';

export const CACHE_CREATE = command({
  name: 'cache create',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Create a cache and its signing key; prints the name and the public key.',
  flags: {
    private: { type: 'boolean', help: 'Reading needs a read token' },
    priority: { type: 'string', value: 'N', default: '40', help: 'Priority in nix-cache-info; lower is preferred' },
    ...POLICY_FLAGS,
    ...SIGNATURE_FLAGS,
    ...ADMIN_FLAGS,
  },
  examples: [
    'narhub cache create team --private --priority 30',
    'narhub cache create ci --retention 30d --quota 200G',
    'narhub cache create ci --uploader-key "$(cat ci-key.pub)" --unknown-signatures refuse',
  ],
});

export const CACHE_LIST = command({
  name: 'cache list',
  positionals: { min: 0, max: 0 },
  summary: 'List the caches: name, visibility, priority and public keys.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub cache list --json'],
});

export const CACHE_INFO = command({
  name: 'cache info',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Show one cache: visibility, priority, GC policy, and its keys with their re-signing progress.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub cache info main'],
});

export const CACHE_STATS = command({
  name: 'cache stats',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'Paths and NAR bytes a cache holds, pending uploads, and (from a server) narinfo hits and misses.',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub cache stats main --server https://cache.example.org --json'],
});
