import { command } from '../command-spec.js';

export const CHECK_CONFIG = command({
  name: 'check-config',
  args: '[FILE]',
  positionals: { min: 0, max: 1 },
  summary: 'Check a config file exactly as serve would load it, and print ok.',
  description: `Also reads every secret file it names (signing keys, S3 credentials, the Redis URL file), unless
--no-secrets is given: the NixOS module checks with it at build time, before the secrets exist.
Nothing in the data directory is opened or created.`,
  flags: {
    'no-secrets': { type: 'boolean', help: 'Do not read the secret files' },
    config: { type: 'string', value: 'FILE', help: 'The config file, instead of FILE' },
  },
  examples: ['narhub check-config /etc/narhub/config.json'],
});
