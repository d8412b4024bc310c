import { command } from '../command-spec.js';
import { DATA_FLAGS } from './common.js';

export const SERVE = command({
  name: 'serve',
  positionals: { min: 0, max: 0 },
  summary: 'Run the binary cache (and the build hub, with Redis) until SIGTERM or SIGINT.',
  description: `The first start on an empty data directory creates a public cache "main" and an admin token,
and prints both. SIGTERM or SIGINT drains: new requests get 503, running ones finish.`,
  flags: {
    ...DATA_FLAGS,
    listen: { type: 'string', value: 'HOST:PORT', default: '127.0.0.1:8080', help: 'Address to listen on' },
    'redis-url': {
      type: 'string',
      value: 'URL',
      help: 'Run the build hub with this Redis (redis:// or rediss://)',
    },
  },
  examples: ['narhub serve --data-dir /var/lib/narhub --listen 0.0.0.0:8080'],
});
