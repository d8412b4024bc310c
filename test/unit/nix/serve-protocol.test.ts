import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BuildStatus,
  buildVerdict,
  queryValidPathsRequest,
  wireString,
  wireStrings,
} from '../../../src/nix/serve-protocol.js';

const hex = (bufs: Buffer[] | Buffer) => (Array.isArray(bufs) ? Buffer.concat(bufs) : bufs).toString('hex');

describe('serve protocol wire format', () => {
  it('writes strings as a little-endian length and bytes padded to 8', () => {
    assert.equal(hex(wireString('')), '0000000000000000');
    assert.equal(hex(wireString('abc')), '0300000000000000' + '6162630000000000');
    assert.equal(hex(wireString('12345678')), '0800000000000000' + '3132333435363738');
    assert.equal(hex(wireString('✓')), '0300000000000000' + 'e29c930000000000');
  });
  it('writes lists as a count then the items', () => {
    assert.equal(
      hex(wireStrings(['a', 'b'])),
      '0200000000000000' + '0100000000000000' + '6100000000000000' + '0100000000000000' + '6200000000000000',
    );
  });
  it('encodes QueryValidPaths as command 1, lock, substitute, paths', () => {
    assert.equal(
      hex(queryValidPathsRequest(['/x'], { lock: true, substitute: false })),
      '0100000000000000' +
        '0100000000000000' +
        '0000000000000000' +
        '0100000000000000' +
        '0200000000000000' +
        '2f78000000000000',
    );
  });
});

describe('buildVerdict', () => {
  it('maps each Nix build status to what it means for a job', () => {
    assert.equal(buildVerdict(BuildStatus.Built), 'success');
    assert.equal(buildVerdict(BuildStatus.AlreadyValid), 'success');
    assert.equal(buildVerdict(BuildStatus.PermanentFailure), 'build');
    assert.equal(buildVerdict(BuildStatus.OutputRejected), 'build');
    assert.equal(buildVerdict(BuildStatus.NotDeterministic), 'build');
    assert.equal(buildVerdict(BuildStatus.TimedOut), 'timeout');
    assert.equal(buildVerdict(BuildStatus.TransientFailure), 'infrastructure');
    assert.equal(buildVerdict(BuildStatus.MiscFailure), 'infrastructure');
    assert.equal(buildVerdict(BuildStatus.DependencyFailed), 'infrastructure');
    assert.equal(buildVerdict(99), 'infrastructure');
  });
});
