import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpPhases } from '../../../bench/ingest.js';
import type { RequestRecord } from '../../../bench/lib/narhub.js';

describe('httpPhases (bench 4b)', () => {
  const nar = '/copy-2/nar/0abc.nar.zst';
  const records: RequestRecord[] = [
    { method: 'GET', url: '/copy-1/nar/0abc.nar.zst', start: 500, end: 501 },
    { method: 'GET', url: '/copy-2/h.narinfo', start: 1000, end: 1001 },
    { method: 'HEAD', url: nar, start: 6000, end: 6002 },
    { method: 'PUT', url: nar, start: 7500, end: 9800 },
    { method: 'PUT', url: '/copy-2/h.narinfo', start: 9810, end: 9820 },
  ];

  it("splits a copy at Nix's HEAD and PUT of the NAR, in its own cache only", () => {
    assert.deepEqual(httpPhases(records, 'copy-2', 900, 9900), {
      compressing: 5.1,
      readingBack: 1.498,
      upload: 2.3,
      after: 0.1,
    });
  });

  it('gives nothing when the upload was not seen whole', () => {
    assert.equal(httpPhases(records, 'copy-3', 900, 9900), undefined);
    const unfinished = records.map((r) =>
      r.method === 'PUT' && r.url === nar ? { method: r.method, url: r.url, start: r.start } : r,
    );
    assert.equal(httpPhases(unfinished, 'copy-2', 900, 9900), undefined);
  });
});
