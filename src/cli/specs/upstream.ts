import { command } from '../command-spec.js';
import { DATA_FLAGS, JSON_FLAG } from './common.js';

export const UPSTREAM_ADD = command({
  name: 'upstream add',
  args: 'CACHE URL',
  positionals: { min: 2, max: 2 },
  summary: 'Add an upstream a cache pulls missing paths through from, or change its keys and priority.',
  description:
    'On a narinfo miss the cache asks its upstreams in priority order and accepts a narinfo only if it is ' +
    "signed by one of that upstream's keys; it serves the path under its own URL and signature, and keeps it. " +
    'Upstreams declared in the config file are changed there.',
  flags: {
    'public-key': {
      type: 'string',
      value: 'KEY',
      multiple: true,
      required: true,
      help: 'A key the upstream is trusted under (name:base64); give it once per key',
    },
    priority: { type: 'string', value: 'N', default: '50', help: 'Upstreams are asked in this order, lower first' },
    ...DATA_FLAGS,
  },
  examples: [
    // The key from a file: cache.nixos.org's in full would pass the 120 columns of a help line.
    'narhub upstream add main https://cache.nixos.org --public-key "$(cat cache.nixos.org.pub)" --priority 40',
  ],
});

export const UPSTREAM_LIST = command({
  name: 'upstream list',
  args: 'CACHE',
  positionals: { min: 1, max: 1 },
  summary: "List a cache's upstreams in the order a miss asks them: priority, URL, keys.",
  flags: { ...JSON_FLAG, ...DATA_FLAGS },
  examples: ['narhub upstream list main --json'],
});

export const UPSTREAM_REMOVE = command({
  name: 'upstream remove',
  args: 'CACHE URL',
  positionals: { min: 2, max: 2 },
  summary: 'Remove an upstream of a cache; the paths already fetched from it stay.',
  flags: { ...DATA_FLAGS },
  examples: ['narhub upstream remove main https://cache.nixos.org'],
});
