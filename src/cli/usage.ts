// Every command's usage, apart from the commands themselves: printing it (`narhub push --help`,
// a usage error) must not load what the commands need (Fastify, the AWS SDK, BullMQ…).

/** Flags of the commands that talk to a running server's hub API. */
export const CLIENT_USAGE = '[--server URL] [--token TOKEN]';

export const CACHE_USAGE = `narhub cache create NAME [--private] [--priority N]
narhub cache list [--json]
narhub cache info NAME [--json]`;

export const TOKEN_USAGE = `narhub token create --cache NAME|GLOB --perm read|write|admin [--name LABEL] [--expires 30d] [--json]
narhub token list [--json]
narhub token revoke ID`;

export const REINDEX_USAGE = 'narhub reindex [--cache NAME] [--public]';

export const KEYGEN_USAGE = 'narhub keygen NAME --secret-key-file F --public-key-file G';

export const PUSH_USAGE = 'narhub push CACHE_URL PATH… [--jobs N] [--retries N] [--token TOKEN] [--netrc FILE]';

export const SPOKE_USAGE = `narhub spoke --hub URL --redis-url URL --systems SYSTEM[,…] [--token-file F | --token TOKEN] [--features F,…]
             [--max-jobs N] [--store STORE] [--timeout SECONDS] [--max-silent SECONDS] [--id NAME]`;

export const PROJECT_USAGE = `narhub project create NAME --flake URL [--ref BRANCH] [--systems S,…] [--attrs checks,packages,nixosConfigurations] [--cache NAME] [--priority N] ${CLIENT_USAGE}
narhub project update NAME [--flake URL] [--ref BRANCH] [--systems S,…] [--attrs …] [--cache NAME] [--priority N] ${CLIENT_USAGE}
narhub project list [--json] ${CLIENT_USAGE}
narhub project show NAME [--json] ${CLIENT_USAGE}
narhub project delete NAME ${CLIENT_USAGE}`;

export const EVAL_USAGE = `narhub eval PROJECT [--ref REF] [--priority N] [--wait [--timeout SECONDS] [--interval SECONDS]] [--json] ${CLIENT_USAGE}`;

export const BUILD_USAGE = `narhub build show DRV_HASH|DRV_PATH [--json] ${CLIENT_USAGE}
narhub build restart DRV_HASH|DRV_PATH [--json] ${CLIENT_USAGE}
narhub build cancel DRV_HASH|DRV_PATH [--json] ${CLIENT_USAGE}
narhub build log DRV_HASH|DRV_PATH [--follow] ${CLIENT_USAGE}
narhub build list [--status STATUS] [--out-path PATH] [--json] ${CLIENT_USAGE}`;

export const CHECK_CONFIG_USAGE = 'narhub check-config FILE [--no-secrets]';

const COMMON = '[--data-dir DIR] [--config FILE]';

export const USAGE = `usage:
narhub serve ${COMMON} [--listen HOST:PORT] [--redis-url URL]
${CACHE_USAGE.split('\n')
  .map((l) => `${l} ${COMMON}`)
  .join('\n')}
${TOKEN_USAGE.split('\n')
  .map((l) => `${l} ${COMMON}`)
  .join('\n')}
${REINDEX_USAGE} ${COMMON}
${KEYGEN_USAGE}
${PUSH_USAGE}
${SPOKE_USAGE}
${PROJECT_USAGE}
${EVAL_USAGE}
${BUILD_USAGE}
${CHECK_CONFIG_USAGE}

--data-dir defaults to $NARHUB_DATA_DIR, else ./narhub-data.`;
