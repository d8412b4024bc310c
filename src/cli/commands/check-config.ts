import { readFileSync } from 'node:fs';
import { loadConfig } from '../../config/load.js';
import type { Config } from '../../config/schema.js';
import { readS3CredentialFiles } from '../../config/s3-credentials.js';
import { NarhubError, isNarhubError } from '../../errors.js';
import { parseSecretKey } from '../../nix/signing.js';
import { parseCommand } from '../command-spec.js';
import { CHECK_CONFIG } from '../specs/check-config.js';
import { UsageError } from '../usage-error.js';

/**
 * `narhub check-config FILE`: validates a config file exactly as `serve` would load it (unknown
 * keys, types, ranges, duplicate caches, the listen address) and prints `ok`. Without
 * `--no-secrets` it also reads every secret file the config names (signing keys, S3
 * credentials, the Redis URL file) and checks that each is readable and well-formed; with it,
 * secret files are not touched, which is what a build-time check needs (the NixOS module runs
 * `check-config --no-secrets` while building the system, when the secrets do not exist yet).
 * Nothing is opened or created in the data directory. A problem is a CONFIG_INVALID error
 * naming the key at fault (stderr, exit 1).
 */
export async function checkConfigCommand(argv: string[], out: NodeJS.WritableStream): Promise<void> {
  const { values, positionals } = parseCommand(CHECK_CONFIG, argv);
  const configFlag = values.config;
  if (positionals.length === 1 && configFlag !== undefined)
    throw new UsageError('give the config FILE once, either as an argument or as --config');
  const file = positionals[0] ?? configFlag;
  if (file === undefined) throw new UsageError('missing FILE');
  // The environment must not change the verdict: check the file as written.
  const config = loadConfig({ file, env: {} });
  if (!values['no-secrets']) await checkSecretFiles(config);
  out.write('ok\n');
}

/** Reads every secret file the config names; collects all problems, never prints a secret. */
async function checkSecretFiles(config: Config): Promise<void> {
  const problems: string[] = [];
  const readable = (key: string, file: string): string | undefined => {
    try {
      const text = readFileSync(file, 'utf8');
      if (text.trim() === '') {
        problems.push(`${key}: file ${file} is empty`);
        return undefined;
      }
      return text;
    } catch (err) {
      problems.push(`${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      return undefined;
    }
  };
  config.caches.forEach((cache, i) => {
    if (cache.signingKeyFile === undefined) return;
    const key = `caches.${i}.signingKeyFile`;
    const text = readable(key, cache.signingKeyFile);
    if (text === undefined) return;
    try {
      parseSecretKey(text.trim());
    } catch (err) {
      problems.push(`${key}: ${cache.signingKeyFile}: ${isNarhubError(err) ? err.message : 'not a Nix secret key'}`);
    }
  });
  if (config.storage.type === 's3') {
    try {
      readS3CredentialFiles(config.storage);
    } catch (err) {
      problems.push(isNarhubError(err) ? err.message : String(err));
    }
  }
  if (config.hub.redisUrlFile !== undefined) readable('hub.redisUrlFile', config.hub.redisUrlFile);
  const gh = config.github;
  if (gh) {
    for (const key of ['privateKeyFile', 'tokenFile', 'webhookSecretFile'] as const)
      if (gh[key] !== undefined) readable(`github.${key}`, gh[key]);
    if (gh.appId !== undefined && gh.privateKeyFile === undefined)
      problems.push('github.appId needs github.privateKeyFile');
  }
  if (problems.length > 0) throw new NarhubError('CONFIG_INVALID', `invalid config: ${problems.join('; ')}`);
}
