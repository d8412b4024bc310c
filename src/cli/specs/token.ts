import { command } from '../command-spec.js';
import { ADMIN_FLAGS, JSON_FLAG } from './common.js';

export const TOKEN_CREATE = command({
  name: 'token create',
  positionals: { min: 0, max: 0 },
  summary: 'Create a token and print it; it is shown only this once (only its hash is kept).',
  flags: {
    cache: {
      type: 'string',
      value: 'NAME|GLOB',
      help: 'Caches it applies to: a name, or a glob such as team-* or * (for read, write and admin)',
    },
    perm: {
      type: 'string',
      value: 'read|write|admin|trigger',
      required: true,
      help: 'What it may do; trigger: start evaluations of one project (--project), nothing else',
    },
    project: { type: 'string', value: 'NAME', help: 'With --perm trigger: the project it may trigger' },
    name: { type: 'string', value: 'LABEL', help: 'A label to recognise it by in token list' },
    expires: {
      type: 'string',
      value: '30d',
      default: 'never',
      help: 'When it stops working: a duration from now (12h, 30d, 1y) or an ISO date',
    },
    ...JSON_FLAG,
    ...ADMIN_FLAGS,
  },
  examples: [
    'narhub token create --cache main --perm write --name ci --expires 90d',
    'narhub token create --perm trigger --project web --name gitea-webhook',
  ],
});

export const TOKEN_LIST = command({
  name: 'token list',
  positionals: { min: 0, max: 0 },
  summary: 'List the tokens: id, permission, caches, status and label (never the token itself).',
  flags: { ...JSON_FLAG, ...ADMIN_FLAGS },
  examples: ['narhub token list'],
});

export const TOKEN_REVOKE = command({
  name: 'token revoke',
  args: 'ID',
  positionals: { min: 1, max: 1 },
  summary: 'Revoke a token; it stops working at the next request.',
  flags: { ...ADMIN_FLAGS },
  examples: ['narhub token revoke 3f2a9c'],
});
