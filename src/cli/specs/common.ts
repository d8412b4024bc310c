import type { Flags } from '../command-spec.js';

/** The data directory and config file, for every command that opens them. */
export const DATA_FLAGS = {
  'data-dir': {
    type: 'string',
    value: 'DIR',
    default: '$NARHUB_DATA_DIR, else dataDir in the config, else ./narhub-data',
    help: 'Data directory: database, signing keys and local blobs',
  },
  config: { type: 'string', value: 'FILE', help: 'JSON config file (check it with narhub check-config)' },
} as const satisfies Flags;

/** The admin commands work on the data directory, or on a running narhub when given a server. */
export const ADMIN_FLAGS = {
  server: {
    type: 'string',
    value: 'URL',
    default: '$NARHUB_SERVER, else none: the data directory',
    help: 'Run against this narhub server through its admin API instead of the data directory',
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    default: '$NARHUB_TOKEN, else the file admin-token in the data directory',
    help: 'Admin token, with --server',
  },
  ...DATA_FLAGS,
} as const satisfies Flags;

/** A cache's GC policy (`cache create`, `cache update`). */
export const POLICY_FLAGS = {
  retention: {
    type: 'string',
    value: '30d',
    help: 'GC removes paths not read or uploaded for this long (with everything only they need); none: keep',
  },
  quota: {
    type: 'string',
    value: '50G',
    help: 'GC removes the least recently read paths while the NAR files exceed this; none: no limit',
  },
} as const satisfies Flags;

/** What a cache does with signatures under other names than its own keys' (`cache create`, `cache update`). */
export const SIGNATURE_FLAGS = {
  'uploader-key': {
    type: 'string',
    value: 'NAME:BASE64',
    multiple: true,
    help: 'Accept signatures by this public key (a CI’s secret-key=), verified at upload; none: no such keys',
  },
  'unknown-signatures': {
    type: 'string',
    value: 'keep|refuse',
    help: 'Signatures under any other name than the cache’s keys and the uploader keys: kept as sent, or refused',
  },
  'max-uploader-signatures': {
    type: 'string',
    value: 'N',
    help: 'Most signatures under other names than the cache’s one path may carry (default 8)',
  },
} as const satisfies Flags;

/** Where the commands that talk to a running narhub find it, and the token they present. */
export const CLIENT_FLAGS = {
  server: {
    type: 'string',
    value: 'URL',
    default: '$NARHUB_SERVER, else http://127.0.0.1:8080',
    help: 'Base URL of the narhub server',
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    default: '$NARHUB_TOKEN, else the file admin-token in the data directory',
    help: 'Admin token',
  },
  ...DATA_FLAGS,
} as const satisfies Flags;

export const JSON_FLAG = { json: { type: 'boolean', help: 'Print JSON instead of text' } } as const satisfies Flags;

/** Whether a push uploads what the cache's upstreams sign (push, push-daemon, watch-store). */
export const UPSTREAM_PATHS_FLAG = {
  'upload-upstream-paths': {
    type: 'boolean',
    help:
      'Upload paths the cache lacks even when one of its upstreams signs them (by default they are skipped: narhub ' +
      'fetches them from that upstream when needed)',
  },
} as const satisfies Flags;
