import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NarhubError } from '../../../src/errors.js';
import { formatCacheInfo, parseCacheInfo } from '../../../src/nix/cache-info.js';

describe('formatCacheInfo', () => {
  it('writes the three fields, LF-terminated', () => {
    assert.equal(
      formatCacheInfo({ storeDir: '/nix/store', wantMassQuery: true, priority: 40 }),
      'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n',
    );
    assert.equal(
      formatCacheInfo({ storeDir: '/tmp/store', wantMassQuery: false, priority: -3 }),
      'StoreDir: /tmp/store\nWantMassQuery: 0\nPriority: -3\n',
    );
  });

  it('refuses values Nix could not read back', () => {
    for (const bad of [
      { storeDir: 'nix/store', wantMassQuery: true, priority: 40 },
      { storeDir: '/nix/store\nPriority: 1', wantMassQuery: true, priority: 40 },
      { storeDir: '/nix/store', wantMassQuery: true, priority: 1.5 },
      { storeDir: '/nix/store', wantMassQuery: true, priority: 2 ** 31 },
    ]) {
      assert.throws(
        () => formatCacheInfo(bad),
        (err: unknown) => err instanceof NarhubError && err.code === 'CONFIG_INVALID',
      );
    }
  });

  it('round-trips through parseCacheInfo', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (wantMassQuery, priority) => {
        const info = { storeDir: '/nix/store', wantMassQuery, priority };
        assert.deepEqual(parseCacheInfo(formatCacheInfo(info)), info);
      }),
    );
  });
});

describe("parseCacheInfo (Nix's lenient reader)", () => {
  it('reads the typical body', () => {
    assert.deepEqual(parseCacheInfo('StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n'), {
      storeDir: '/nix/store',
      wantMassQuery: true,
      priority: 30,
    });
  });

  it('returns only the fields present', () => {
    assert.deepEqual(parseCacheInfo('StoreDir: /nix/store\n'), { storeDir: '/nix/store' });
    assert.deepEqual(parseCacheInfo(''), {});
  });

  it('tolerates CRLF, blank lines, colon-less lines, unknown keys and whitespace around values', () => {
    assert.deepEqual(
      parseCacheInfo('\r\n\nStoreDir:\t/nix/store \r\ngarbage\nFoo: bar\nWantMassQuery:1\r\nPriority:   41\r\n'),
      { storeDir: '/nix/store', wantMassQuery: true, priority: 41 },
    );
  });

  it('does not trim keys and is case-sensitive', () => {
    assert.deepEqual(parseCacheInfo(' StoreDir: /x\nstoredir: /y\nPriority : 3\n'), {});
  });

  it('treats only exactly "1" as WantMassQuery true', () => {
    for (const [v, expected] of [
      ['1', true],
      ['0', false],
      ['true', false],
      ['01', false],
      ['', false],
      [' 1 ', true],
    ] as const) {
      assert.equal(parseCacheInfo(`WantMassQuery:${v}\n`).wantMassQuery, expected, v);
    }
  });

  it('parses Priority like std::stoi', () => {
    for (const [v, expected] of [
      ['40', 40],
      ['+7', 7],
      ['-5', -5],
      ['-0', 0],
      ['40abc', 40],
      ['007', 7],
      ['2147483647', 2147483647],
    ] as const) {
      assert.equal(parseCacheInfo(`Priority: ${v}\n`).priority, expected, v);
    }
    for (const bad of ['abc', '', '-', '+', 'x1', '2147483648', '-2147483649']) {
      assert.throws(
        () => parseCacheInfo(`Priority: ${bad}\n`),
        (err: unknown) => err instanceof NarhubError && err.code === 'BAD_REQUEST' && err.message.includes('Priority'),
        bad,
      );
    }
  });

  it('lets a later line override an earlier one', () => {
    assert.deepEqual(parseCacheInfo('Priority: 1\nPriority: 2\n'), { priority: 2 });
  });
});
