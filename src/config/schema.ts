import { Type, type Static } from '@sinclair/typebox';

/**
 * The one source of truth for narhub's settings. A JSON config file (what the NixOS module
 * writes) is checked against this schema; unknown keys are errors, so a typo fails loudly.
 * Secrets are never values here: only paths to files holding them (`*File`).
 */
const CacheDecl = Type.Object(
  {
    name: Type.String({ description: 'Cache name, the first path segment of its URL.' }),
    private: Type.Boolean({ default: false, description: 'Require a read token to read.' }),
    priority: Type.Integer({ default: 40, minimum: 0, description: 'nix-cache-info Priority; lower is preferred.' }),
    signingKeyFile: Type.Optional(
      Type.String({ description: 'Nix secret key file (`name:base64`) to sign with instead of a generated key.' }),
    ),
  },
  { additionalProperties: false },
);

const LocalStorage = Type.Object(
  {
    type: Type.Literal('local'),
    path: Type.Optional(Type.String({ description: 'Directory for blobs; defaults to <dataDir>/store.' })),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    dataDir: Type.String({ default: './narhub-data', description: 'Database, keys and local blobs.' }),
    listen: Type.String({ default: '127.0.0.1:8080', description: 'HOST:PORT to listen on.' }),
    publicUrl: Type.Optional(Type.String({ description: 'Base URL clients use, for printed substituter URLs.' })),
    logLevel: Type.Union(
      [Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')],
      { default: 'info' },
    ),
    maxNarSize: Type.Integer({ default: 64 * 1024 ** 3, minimum: 1, description: 'Largest accepted NAR upload, in bytes.' }),
    maxSmallFileSize: Type.Integer({ default: 64 * 1024 ** 2, minimum: 1, description: 'Largest narinfo, log, listing or realisation upload.' }),
    pendingGracePeriod: Type.Integer({ default: 86_400, minimum: 0, description: 'Seconds an unclaimed NAR upload is kept.' }),
    gcInterval: Type.Integer({ default: 3_600, minimum: 1, description: 'Seconds between sweeps of unclaimed uploads.' }),
    caches: Type.Array(CacheDecl, { default: [], description: 'Caches to create (or update) at start.' }),
    storage: LocalStorage,
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;
export type CacheDeclaration = Static<typeof CacheDecl>;
