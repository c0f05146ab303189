// decodeUtf8 / encodeUtf8 agree with Node's TextDecoder / TextEncoder.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeUtf8, encodeUtf8 } from '@ackbar/guest';

const samples = ['', 'plain', 'çà', '€ ☕', '🍕 and 𝄞', 'x'.repeat(10000) + 'é', 'é'.repeat(20000)];
const invalid = [
  [0x80],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf0, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80],
  [0xf8],
  [0xff, 0xfe],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x8d],
  [0xc3, 0x28],
  [0x61, 0xe2, 0x82, 0x62, 0xf0, 0x9f, 0x8d, 0x95, 0xed, 0xbf, 0xbf, 0x63],
];

test('valid UTF-8 round-trips', () => {
  for (const s of samples) {
    const bytes = new TextEncoder().encode(s);
    assert.deepEqual(encodeUtf8(s), bytes);
    assert.equal(decodeUtf8(bytes), s);
    assert.equal(decodeUtf8(bytes, { fatal: true }), s);
  }
  assert.equal(decodeUtf8(null), '');
  assert.equal(decodeUtf8(undefined), '');
});

test('invalid UTF-8 is replaced like TextDecoder does, or throws when fatal', () => {
  const lossy = new TextDecoder();
  const fatal = new TextDecoder('utf-8', { fatal: true });
  for (const b of invalid) {
    const u = new Uint8Array(b);
    assert.equal(decodeUtf8(u), lossy.decode(u), String(b));
    assert.throws(() => fatal.decode(u));
    assert.throws(() => decodeUtf8(u, { fatal: true }), TypeError, String(b));
  }
  const long = new Uint8Array(30000).fill(0xff);
  assert.equal(decodeUtf8(long), lossy.decode(long));
});

test('lone surrogates encode as U+FFFD, like TextEncoder', () => {
  for (const s of ['a\ud800b', '\udc00', 'x\ud83d', '\ud83d\ud83d\udc4d']) {
    assert.deepEqual(encodeUtf8(s), new TextEncoder().encode(s), JSON.stringify(s));
  }
});
