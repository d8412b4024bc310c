import { command } from '../command-spec.js';
import { DATA_FLAGS } from './common.js';

export const REINDEX = command({
  name: 'reindex',
  positionals: { min: 0, max: 0 },
  summary: 'Rebuild the database from the blob store (local or S3), e.g. after losing it.',
  description: `Safe to run again, and while the server runs. Caches the database does not know come back as the
config declares them, else private: storage does not record visibility. Tokens cannot be restored.`,
  flags: {
    cache: { type: 'string', value: 'NAME', default: 'every cache found', help: 'Reindex this cache only' },
    public: { type: 'boolean', help: 'Recreate caches the config does not declare as public' },
    ...DATA_FLAGS,
  },
  examples: ['narhub reindex --data-dir /var/lib/narhub --cache main'],
});
