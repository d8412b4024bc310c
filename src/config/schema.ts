import { Type, type Static } from '@sinclair/typebox';

/**
 * The one source of truth for narhub's settings. A JSON config file (what the NixOS module
 * writes) is checked against this schema; unknown keys are errors, so a typo fails loudly.
 * Secrets are never values here: only paths to files holding them (`*File`).
 * Integers marked `unit: 'size'` or `unit: 'duration'` may also be written as `64G` or `30d`
 * (src/units.ts); config/load.ts turns those into bytes or seconds before validating.
 */
const UpstreamDecl = Type.Object(
  {
    url: Type.String({
      pattern: '^https?://[^\\s]+$',
      description: 'Base URL of a binary cache to pull through, e.g. https://cache.nixos.org.',
    }),
    publicKeys: Type.Array(Type.String({ pattern: '^[^:\\s]+:[A-Za-z0-9+/]{43}=$' }), {
      minItems: 1,
      description:
        "Keys it is trusted under (`name:base64`, as in nix.conf's trusted-public-keys); a narinfo it sends must " +
        'carry a signature by one of them.',
    }),
    priority: Type.Integer({ default: 50, minimum: 0, description: 'Upstreams are asked in this order, lower first.' }),
  },
  { additionalProperties: false },
);

const CacheDecl = Type.Object(
  {
    name: Type.String({ description: 'Cache name, the first path segment of its URL.' }),
    private: Type.Boolean({ default: false, description: 'Require a read token to read.' }),
    priority: Type.Integer({ default: 40, minimum: 0, description: 'nix-cache-info Priority; lower is preferred.' }),
    signingKeyFile: Type.Optional(
      Type.String({ description: 'Nix secret key file (`name:base64`) to sign with instead of a generated key.' }),
    ),
    redirectNars: Type.Boolean({
      default: false,
      description: 'Answer NAR GETs with a redirect to a short-lived presigned storage URL (S3 only).',
    }),
    redirectExpiry: Type.Integer({
      default: 300,
      minimum: 1,
      maximum: 604_800,
      unit: 'duration',
      description: 'How long a presigned NAR URL stays valid: seconds, or a duration such as 5m.',
    }),
    recompressToZstd: Type.Boolean({
      default: false,
      description: 'Recompress xz and bzip2 NARs uploaded by stock Nix to zstd in the background.',
    }),
    retention: Type.Optional(
      Type.Integer({
        minimum: 1,
        unit: 'duration',
        description:
          'GC removes paths not read or uploaded for this long (with what only they need): seconds, or a duration ' +
          'such as 30d. Unset: the value set with narhub cache update, else keep everything.',
      }),
    ),
    quota: Type.Optional(
      Type.Integer({
        minimum: 0,
        unit: 'size',
        description:
          'GC removes the least recently read paths while the NAR files exceed this: bytes, or a size such as 500G. ' +
          'Unset: the value set with narhub cache update, else no limit.',
      }),
    ),
    uploaderKeys: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'Public keys (`name:base64`, as in trusted-public-keys) whose signatures uploads may carry, e.g. a CI ' +
          "signing with nix copy's secret-key=: each is verified at upload, and a bad one is refused. " +
          'Unset: the keys set with narhub cache update, else none.',
      }),
    ),
    refuseUnknownSignatures: Type.Optional(
      Type.Boolean({
        description:
          "Refuse uploads carrying a signature under a name that is neither one of the cache's keys nor an uploader " +
          'key (else such signatures are kept as sent). Unset: as set with narhub cache update, else false.',
      }),
    ),
    maxUploaderSignatures: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 64,
        description:
          "Most signatures under names other than the cache's one path may carry; an upload past it is refused. " +
          'Unset: as set with narhub cache update, else 8.',
      }),
    ),
    upstreams: Type.Array(UpstreamDecl, {
      default: [],
      description:
        'Caches asked, verified, on a narinfo miss (pull-through); what they have is fetched once and kept. ' +
        'These replace, at every start, the ones the config declared before; `narhub upstream add` adds others.',
    }),
  },
  { additionalProperties: false },
);

const Upstream = Type.Object(
  {
    narinfoTimeout: Type.Integer({
      default: 5,
      minimum: 1,
      maximum: 3_600,
      unit: 'duration',
      description: 'A narinfo miss asks the upstreams for at most this long, then answers 404: seconds, or a duration.',
    }),
    narTimeout: Type.Integer({
      default: 30,
      minimum: 1,
      maximum: 86_400,
      unit: 'duration',
      description: 'A NAR download from an upstream fails after this long without a byte: seconds, or a duration.',
    }),
    narMinRate: Type.Integer({
      default: 16 * 1024,
      minimum: 0,
      unit: 'size',
      description:
        'A NAR download from an upstream fails when it averages fewer bytes a second than this over a ' +
        'narTimeout window (an upstream that trickles a byte now and then): bytes, or a size such as 16K; ' +
        '0: only silence.',
    }),
    narMaxTime: Type.Integer({
      default: 6 * 3_600,
      minimum: 1,
      maximum: 24 * 86_400,
      unit: 'duration',
      description: 'A NAR download from an upstream fails after this long in all: seconds, or a duration such as 6h.',
    }),
    negativeTtl: Type.Integer({
      default: 30,
      minimum: 0,
      maximum: 86_400,
      unit: 'duration',
      description:
        'How long a path no upstream has, or an upstream that failed, is remembered: seconds, or a duration.',
    }),
    offerTtl: Type.Integer({
      default: 30 * 86_400,
      minimum: 60,
      maximum: 365 * 86_400,
      unit: 'duration',
      description:
        "How long an upstream's narinfo, served but whose NAR nobody fetched yet, stays fetchable " +
        '(Nix caches narinfos for 30 days): seconds, or a duration such as 30d.',
    }),
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

const S3Storage = Type.Object(
  {
    type: Type.Literal('s3'),
    bucket: Type.String({ minLength: 3, description: "Bucket holding the caches' files." }),
    region: Type.String({ default: 'us-east-1', description: 'S3 region.' }),
    endpoint: Type.Optional(Type.String({ description: 'S3-compatible endpoint URL; AWS when unset.' })),
    prefix: Type.String({ default: '', description: 'Key prefix inside the bucket, e.g. `narhub/`.' }),
    forcePathStyle: Type.Boolean({
      default: false,
      description: 'Path-style URLs (`endpoint/bucket/key`), which most self-hosted S3 servers need.',
    }),
    accessKeyIdFile: Type.Optional(
      Type.String({ description: 'File holding the access key id; the SDK default chain when unset.' }),
    ),
    secretAccessKeyFile: Type.Optional(Type.String({ description: 'File holding the secret access key.' })),
    sessionTokenFile: Type.Optional(
      Type.String({ description: 'File holding a session token (temporary credentials).' }),
    ),
    partSize: Type.Integer({
      default: 16 * 1024 ** 2,
      minimum: 5 * 1024 ** 2,
      unit: 'size',
      description: 'Multipart part size: bytes, or a size such as 16M.',
    }),
    queueSize: Type.Integer({ default: 4, minimum: 1, maximum: 64, description: 'Parts uploaded in parallel.' }),
  },
  { additionalProperties: false },
);

const Zstd = Type.Object(
  {
    level: Type.Integer({ default: 3, minimum: 1, maximum: 19, description: 'zstd compression level of stored NARs.' }),
    workers: Type.Integer({ default: 2, minimum: 0, maximum: 64, description: 'zstd worker threads (nbWorkers).' }),
  },
  { additionalProperties: false },
);

const Hub = Type.Object(
  {
    enable: Type.Boolean({ default: false, description: 'Run the build hub (needs Redis).' }),
    redisUrl: Type.Optional(Type.String({ description: 'redis://host:port/db without a password; see redisUrlFile.' })),
    redisUrlFile: Type.Optional(
      Type.String({ description: 'File holding the Redis URL (when it carries a password).' }),
    ),
    evalTimeout: Type.Integer({
      default: 600,
      minimum: 1,
      unit: 'duration',
      description: 'How long an evaluation may take: seconds, or a duration such as 10m.',
    }),
    evalMemoryMb: Type.Integer({
      default: 4096,
      minimum: 64,
      description: 'Address-space limit of an evaluator process, MiB.',
    }),
    evalWorkers: Type.Integer({
      default: 1,
      minimum: 1,
      maximum: 64,
      description: 'Evaluator processes run in parallel.',
    }),
    cancelSuperseded: Type.Boolean({
      default: true,
      description: 'A newer evaluation of a project and branch cancels builds only older ones still need.',
    }),
    buildTimeout: Type.Integer({
      default: 36_000,
      minimum: 1,
      unit: 'duration',
      description: 'Default wall-clock limit of a build: seconds, or a duration such as 10h.',
    }),
    maxSilent: Type.Integer({
      default: 3_600,
      minimum: 1,
      unit: 'duration',
      description: 'Default limit on a build printing nothing: seconds, or a duration such as 1h.',
    }),
    buildAttempts: Type.Integer({
      default: 3,
      minimum: 1,
      maximum: 20,
      description: 'Tries per build on infrastructure failures.',
    }),
  },
  { additionalProperties: false },
);

const GitHub = Type.Object(
  {
    apiUrl: Type.String({
      default: 'https://api.github.com',
      description: 'API base URL: GitHub Enterprise (`https://HOST/api/v3`), Gitea or Forgejo (`https://HOST/api/v1`).',
    }),
    appId: Type.Optional(Type.Integer({ minimum: 1, description: 'GitHub App id (with privateKeyFile).' })),
    privateKeyFile: Type.Optional(Type.String({ description: "File holding the GitHub App's private key (PEM)." })),
    tokenFile: Type.Optional(Type.String({ description: 'File holding a token, instead of an App.' })),
    webhookSecretFile: Type.Optional(Type.String({ description: 'File holding the secret webhooks are signed with.' })),
    report: Type.Union([Type.Literal('checks'), Type.Literal('statuses')], {
      default: 'checks',
      description: 'Check runs (GitHub), or commit statuses (forges without checks: Gitea, Forgejo).',
    }),
    minRequestInterval: Type.Integer({
      default: 1000,
      minimum: 0,
      description: "Milliseconds between two status updates (GitHub's secondary rate limits).",
    }),
  },
  { additionalProperties: false },
);

/** What one client may hold of the server: connections, slow bodies, and when to shed load. */
const Limits = Type.Object(
  {
    maxConnections: Type.Integer({
      default: 4096,
      minimum: 1,
      description: 'Open connections at most; further ones are closed at once.',
    }),
    bodyTimeout: Type.Integer({
      default: 60,
      minimum: 1,
      unit: 'duration',
      description:
        'A request body must deliver minBodyRate bytes a second over every window this long, or its ' +
        'connection is closed: seconds, or a duration such as 1m.',
    }),
    minBodyRate: Type.Integer({
      default: 1024,
      minimum: 0,
      unit: 'size',
      description: 'Least bytes a second a request body may average over a bodyTimeout window (0: only silence).',
    }),
    maxEventLoopDelay: Type.Integer({
      default: 1000,
      minimum: 0,
      description:
        'Shed load: while the event loop lags more than this many milliseconds, answer 503 with ' +
        'Retry-After (0: never).',
    }),
    xzDecodes: Type.Integer({
      default: 2,
      minimum: 1,
      description:
        'xz decodes (NAR uploads, and narinfos, logs and listings sent as xz) that run at once; each may ' +
        'hold up to 80 MiB. The others wait their turn, without reading their bodies.',
    }),
    xzDecodeQueue: Type.Integer({
      default: 64,
      minimum: 0,
      description:
        'xz decodes that may wait for a turn. One more, or one that waits past half of bodyTimeout, is ' +
        'answered 503 with Retry-After.',
    }),
    missingPathsPerMinute: Type.Integer({
      default: 60,
      minimum: 1,
      description: 'missing-paths requests a minute per address from callers without a token.',
    }),
  },
  { additionalProperties: false },
);

/** Garbage collection: how often serve runs it, and how long what no path claims is kept. */
const Gc = Type.Object(
  {
    interval: Type.Integer({
      default: 3_600,
      minimum: 1,
      // Node's timers hold at most 2^31 - 1 ms; a longer interval would fire every millisecond.
      maximum: 24 * 86_400,
      unit: 'duration',
      description:
        'Time between GC runs of serve (unclaimed uploads, superseded files, then every cache by its retention, ' +
        'quota and pins): seconds, or a duration such as 1h.',
    }),
    pendingGracePeriod: Type.Integer({
      default: 86_400,
      minimum: 0,
      unit: 'duration',
      description:
        'How long an unclaimed NAR upload (and any blob no row describes) is kept: seconds, or a duration such as 1d.',
    }),
    supersededGracePeriod: Type.Integer({
      default: 40 * 86_400,
      minimum: 0,
      unit: 'duration',
      description:
        'How long a NAR replaced by its zstd recompression stays served (Nix caches narinfos for 30 days): ' +
        'seconds, or a duration such as 40d.',
    }),
  },
  { additionalProperties: false },
);

/**
 * Keys of earlier versions and where they live now (`gcInterval` is `gc.interval`): the config
 * still takes them, with a warning (`config/load.ts`).
 */
export const MOVED_KEYS: Readonly<Record<string, readonly [string, string]>> = {
  gcInterval: ['gc', 'interval'],
  pendingGracePeriod: ['gc', 'pendingGracePeriod'],
  supersededGracePeriod: ['gc', 'supersededGracePeriod'],
};

export const ConfigSchema = Type.Object(
  {
    dataDir: Type.String({ default: './narhub-data', description: 'Database, keys and local blobs.' }),
    listen: Type.String({ default: '127.0.0.1:8080', description: 'HOST:PORT to listen on.' }),
    publicUrl: Type.Optional(Type.String({ description: 'Base URL clients use, for printed substituter URLs.' })),
    logLevel: Type.Union(
      [
        Type.Literal('fatal'),
        Type.Literal('error'),
        Type.Literal('warn'),
        Type.Literal('info'),
        Type.Literal('debug'),
        Type.Literal('trace'),
        Type.Literal('silent'),
      ],
      { default: 'info', description: 'Log level (JSON lines on stdout).' },
    ),
    metricsListen: Type.Optional(
      Type.String({
        description:
          'HOST:PORT of a second listener serving only GET /metrics, without a token (e.g. a private interface for ' +
          'Prometheus). /metrics on the main address stays: open on loopback, an admin token otherwise.',
      }),
    ),
    logRequests: Type.Boolean({
      default: false,
      description: 'Log every HTTP request at info (two lines per request; costly at high request rates).',
    }),
    maxNarSize: Type.Integer({
      default: 64 * 1024 ** 3,
      minimum: 1,
      unit: 'size',
      description:
        'Largest accepted NAR, both as uploaded and decoded (a compressed file counts as the NAR it expands to): ' +
        'bytes, or a size such as 64G.',
    }),
    maxSmallFileSize: Type.Integer({
      default: 64 * 1024 ** 2,
      minimum: 1,
      unit: 'size',
      description: 'Largest narinfo, log, listing or realisation upload: bytes, or a size such as 64M.',
    }),
    gc: Gc,
    caches: Type.Array(CacheDecl, { default: [], description: 'Caches to create (or update) at start.' }),
    storage: Type.Union([LocalStorage, S3Storage]),
    zstd: Zstd,
    upstream: Upstream,
    hub: Hub,
    github: Type.Optional(GitHub),
    limits: Limits,
  },
  { additionalProperties: false },
);

export type LimitsConfig = Static<typeof Limits>;
export type Config = Static<typeof ConfigSchema>;
export type HubConfig = Static<typeof Hub>;
export type GitHubConfig = Static<typeof GitHub>;
