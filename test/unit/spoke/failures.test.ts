import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnrecoverableError } from 'bullmq';
import { parseFailure } from '../../../src/protocol/build-jobs.js';
import { jobFailure, lastNixError, stripAnsi } from '../../../src/spoke/failures.js';

test('jobFailure: only infrastructure failures are retried', () => {
  for (const kind of ['build', 'timeout', 'cancelled'] as const) {
    const err = jobFailure(kind, 'why\nmore');
    assert.ok(err instanceof UnrecoverableError, kind);
    assert.equal(err.message, `${kind}: why`);
    assert.equal(parseFailure(err.message).kind, kind);
  }
  const infra = jobFailure('infrastructure', 'network down');
  assert.ok(!(infra instanceof UnrecoverableError));
  assert.equal(infra.message, 'infrastructure: network down');
  assert.ok(jobFailure('infrastructure', 'bad job', { retry: false }) instanceof UnrecoverableError);
});

test('lastNixError strips colours and the prefix', () => {
  assert.equal(lastNixError('a\n\u001b[31;1merror:\u001b[0m first\nb\nerror: second;\n'), 'second');
  assert.equal(lastNixError('no errors here'), undefined);
});

test('stripAnsi removes the colours Nix puts in its messages', () => {
  assert.equal(
    stripAnsi("\u001b[0mbuilder for '\u001b[35;1m/nix/store/x.drv\u001b[0m' failed"),
    "builder for '/nix/store/x.drv' failed",
  );
});
