import { command } from '../command-spec.js';

export const KEYGEN = command({
  name: 'keygen',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: "Write a signing key pair in Nix's formats (as nix-store --generate-binary-cache-key does).",
  description: 'Prints the public key. Neither file may exist yet; the secret one is written with mode 0600.',
  flags: {
    'secret-key-file': { type: 'string', value: 'FILE', required: true, help: 'Where to write the secret key' },
    'public-key-file': { type: 'string', value: 'FILE', required: true, help: 'Where to write the public key' },
  },
  examples: ['narhub keygen cache.example.org-1 --secret-key-file key.secret --public-key-file key.public'],
});
