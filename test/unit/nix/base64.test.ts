import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { base64Length, decodeBase64Strict, encodeBase64 } from '../../../src/nix/base64.js';
import { quote } from '../../../src/nix/quote.js';

describe('strict base64', () => {
  it("round-trips any bytes and matches Node's encoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = encodeBase64(bytes);
        assert.equal(text, Buffer.from(bytes).toString('base64'));
        assert.equal(text.length, base64Length(bytes.length));
        assert.deepEqual(decodeBase64Strict(text), bytes);
      }),
    );
  });

  it('rejects anything that is not the canonical padded encoding', () => {
    for (const bad of [
      'A',
      'AA',
      'AAA',
      'AA=',
      'A===',
      'AA==AA==',
      'AB==',
      'AAB=',
      'AA AA',
      'AA\nA=',
      'AAAA\n',
      '-_==',
      'AA=A',
      '====',
    ]) {
      assert.equal(decodeBase64Strict(bad), undefined, bad);
    }
    assert.deepEqual(decodeBase64Strict(''), new Uint8Array(0));
    assert.deepEqual(decodeBase64Strict('AA=='), new Uint8Array([0]));
  });

  it("returns a copy, not a view into Node's shared buffer pool", () => {
    const bytes = decodeBase64Strict('AQID');
    assert.ok(bytes);
    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, 3);
  });
});

describe('quote', () => {
  it('quotes and cuts long text', () => {
    assert.equal(quote('a"b'), '"a\\"b"');
    assert.equal(quote('x'.repeat(100), 5), '"xxxxx"…');
    assert.equal(quote('\r\n'), '"\\r\\n"');
  });
});
