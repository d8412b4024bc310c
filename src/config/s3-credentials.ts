import { readFileSync } from 'node:fs';
import { NarhubError } from '../errors.js';

/** Static S3 credentials, as the AWS SDK takes them. */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

/** The config's `storage.*File` keys naming the files that hold them. */
export interface S3CredentialFiles {
  accessKeyIdFile?: string | undefined;
  secretAccessKeyFile?: string | undefined;
  sessionTokenFile?: string | undefined;
}

/**
 * Reads static credentials from the files named in the config, once, trimmed; undefined when
 * the config names none (the SDK's default provider chain then). The values are never logged
 * nor put in an error message; only the file names are.
 */
export function readS3CredentialFiles(files: S3CredentialFiles): S3Credentials | undefined {
  const { accessKeyIdFile, secretAccessKeyFile, sessionTokenFile } = files;
  if (accessKeyIdFile === undefined && secretAccessKeyFile === undefined) {
    if (sessionTokenFile !== undefined) {
      throw new NarhubError('CONFIG_INVALID', 'storage.sessionTokenFile needs accessKeyIdFile and secretAccessKeyFile');
    }
    return undefined;
  }
  if (accessKeyIdFile === undefined || secretAccessKeyFile === undefined) {
    throw new NarhubError('CONFIG_INVALID', 'storage.accessKeyIdFile and storage.secretAccessKeyFile go together');
  }
  return {
    accessKeyId: readSecret(accessKeyIdFile, 'access key id'),
    secretAccessKey: readSecret(secretAccessKeyFile, 'secret access key'),
    ...(sessionTokenFile !== undefined ? { sessionToken: readSecret(sessionTokenFile, 'session token') } : {}),
  };
}

function readSecret(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NarhubError(
      'CONFIG_INVALID',
      `cannot read ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const value = text.trim();
  if (value === '') throw new NarhubError('CONFIG_INVALID', `${what} file ${file} is empty`);
  return value;
}
