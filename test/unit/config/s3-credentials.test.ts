import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readS3CredentialFiles } from '../../../src/config/s3-credentials.js';
import { NarhubError } from '../../../src/errors.js';
import { removeTree } from '../../helpers/tmp.js';

describe('S3 credentials from files', () => {
  it('reads each file once, trimmed, and never echoes a value', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'narhub-creds-'));
    t.after(() => removeTree(dir));
    const id = join(dir, 'id');
    const secret = join(dir, 'secret');
    const token = join(dir, 'token');
    await writeFile(id, '  AKIDEXAMPLE\n');
    await writeFile(secret, 'c2VjcmV0\n\n');
    await writeFile(token, 'tok\n');
    assert.equal(readS3CredentialFiles({}), undefined, 'the SDK default chain');
    assert.deepEqual(readS3CredentialFiles({ accessKeyIdFile: id, secretAccessKeyFile: secret }), {
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'c2VjcmV0',
    });
    assert.deepEqual(
      readS3CredentialFiles({ accessKeyIdFile: id, secretAccessKeyFile: secret, sessionTokenFile: token }),
      {
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: 'c2VjcmV0',
        sessionToken: 'tok',
      },
    );
    const invalid = (err: unknown) =>
      err instanceof NarhubError && err.code === 'CONFIG_INVALID' && !/c2VjcmV0|AKIDEXAMPLE/.test(err.message);
    assert.throws(() => readS3CredentialFiles({ accessKeyIdFile: id }), invalid);
    assert.throws(() => readS3CredentialFiles({ sessionTokenFile: token }), invalid);
    assert.throws(
      () => readS3CredentialFiles({ accessKeyIdFile: id, secretAccessKeyFile: join(dir, 'missing') }),
      invalid,
    );
    await writeFile(join(dir, 'empty'), '\n');
    assert.throws(
      () => readS3CredentialFiles({ accessKeyIdFile: id, secretAccessKeyFile: join(dir, 'empty') }),
      invalid,
    );
  });
});
