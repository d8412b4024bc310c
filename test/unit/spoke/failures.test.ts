import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnrecoverableError } from 'bullmq';
import { parseFailure } from '../../../src/protocol/build-jobs.js';
import { classifyRealise, jobFailure, lastNixError, substituterTrouble } from '../../../src/spoke/failures.js';
import type { ProcessResult } from '../../../src/spoke/run-process.js';

const limits = { timeout: 10, maxSilent: 5 };
const drv = '/nix/store/qka82vmi58854v7ki6yqlinqn8c6yd1a-fail.drv';

function res(over: Partial<ProcessResult>): ProcessResult {
  return { code: 0, signal: null, stdout: '', stderr: '', killed: undefined, abortReason: undefined, ...over };
}

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

test('classifyRealise: Nix exit statuses (2.8 output)', () => {
  assert.equal(classifyRealise(res({ code: 0 }), limits), undefined);
  const failed = classifyRealise(res({ code: 100, stderr: `building '${drv}'...\nfailing\nerror: builder for '${drv}' failed with exit code 3\n` }), limits);
  assert.deepEqual(failed, { kind: 'build', message: `builder for '${drv}' failed with exit code 3` });
  const timedOut = classifyRealise(res({ code: 101, stderr: `error: building of '${drv}!*' from .drv file timed out after 2 seconds\n` }), limits);
  assert.equal(timedOut?.kind, 'timeout');
  assert.equal(classifyRealise(res({ code: 102, stderr: 'error: hash mismatch in fixed-output derivation' }), limits)?.kind, 'build');
  assert.equal(classifyRealise(res({ code: 104 }), limits)?.kind, 'build');
});

test('classifyRealise: status 1 is infrastructure unless Nix says a builder failed', () => {
  const net = classifyRealise(res({ code: 1, stderr: "error: unable to download 'http://h/main/x.narinfo': Couldn't connect to server (7)\n" }), limits);
  assert.equal(net?.kind, 'infrastructure');
  assert.match(net!.message, /unable to download/);
  // The builder's own output never decides: only Nix's error line does.
  const echoed = classifyRealise(res({ code: 1, stderr: "builder for 'x' failed\nerror: cannot open connection to remote store 'daemon'\n" }), limits);
  assert.equal(echoed?.kind, 'infrastructure');
  assert.equal(classifyRealise(res({ code: 1, stderr: `error: builder for '${drv}' failed with exit code 1\n` }), limits)?.kind, 'build');
  assert.equal(classifyRealise(res({ code: 1, stderr: '\u001b[31;1merror:\u001b[0m building of \'x\' timed out after 5 seconds of silence\n' }), limits)?.kind, 'timeout');
  assert.equal(classifyRealise(res({ code: null, signal: 'SIGKILL' }), limits)?.kind, 'infrastructure');
});

test('classifyRealise: what the spoke killed', () => {
  assert.equal(classifyRealise(res({ code: null, signal: 'SIGKILL', killed: 'timeout' }), limits)?.kind, 'timeout');
  assert.equal(classifyRealise(res({ code: null, signal: 'SIGKILL', killed: 'silence' }), limits)?.kind, 'timeout');
  assert.deepEqual(classifyRealise(res({ code: null, killed: 'aborted', abortReason: { kind: 'cancelled', message: 'on request' } }), limits), {
    kind: 'cancelled',
    message: 'on request',
  });
  assert.equal(classifyRealise(res({ code: null, killed: 'aborted', abortReason: 'whatever' }), limits)?.kind, 'cancelled');
});

test('lastNixError strips colours and the prefix', () => {
  assert.equal(lastNixError('a\n\u001b[31;1merror:\u001b[0m first\nb\nerror: second;\n'), 'second');
  assert.equal(lastNixError('no errors here'), undefined);
});

test('substituterTrouble: the cache failing, not retries or other warnings', () => {
  const url = 'http://127.0.0.1:1/main';
  assert.equal(substituterTrouble(`warning: error: unable to download '${url}/nix-cache-info': Couldn't connect to server (7); retrying in 271 ms`, url), undefined);
  assert.ok(substituterTrouble(`warning: unable to download '${url}/nix-cache-info': Couldn't connect to server (7)`, url));
  assert.ok(substituterTrouble(`warning: disabling binary cache '${url}' for 60 seconds`, url));
  assert.equal(substituterTrouble("warning: you did not specify '--add-root'; the result might be removed by the garbage collector", url), undefined);
  assert.equal(substituterTrouble(`unable to download '${url}/x' (a builder's own output)`, url), undefined);
});
