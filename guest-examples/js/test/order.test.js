// Unit tests of the business logic, natively in Node: node --test test/
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enrichOrder, parseOrder, processOrder } from '../src/order.js';

const bytes = (s) => new TextEncoder().encode(s);

test('a valid order is accepted', () => {
  assert.deepEqual(processOrder(bytes('{"id":"o1","item":"book","quantity":2}'), 1), {
    accepted: 'order o1: 2 x book',
  });
});

test('anything that is not an order is malformed', () => {
  for (const payload of [
    'not json',
    '',
    '[]',
    'null',
    '"o1"',
    '{"item":"book","quantity":2}',
    '{"id":1,"item":"book","quantity":2}',
    '{"id":"o1","quantity":2}',
    '{"id":"o1","item":"book"}',
    '{"id":"o1","item":"book","quantity":"2"}',
    '{"id":"o1","item":"book","quantity":-1}',
    '{"id":"o1","item":"book","quantity":1.5}',
    '{"id":"o1","item":"book","quantity":2,"warehouse":7}',
  ]) {
    assert.ok(processOrder(bytes(payload), 1).malformed, payload);
  }
  assert.ok(processOrder(undefined, 1).malformed);
  assert.ok(processOrder(null, 1).malformed);
});

test('quantity 0 is malformed, but poison is checked first', () => {
  assert.match(
    processOrder(bytes('{"id":"o1","item":"book","quantity":0}'), 1).malformed,
    /quantity must be positive/,
  );
  assert.throws(() => processOrder(bytes('{"id":"o1","item":"poison","quantity":0}'), 1), /poison/);
});

test('poison throws', () => {
  assert.throws(() => processOrder(bytes('{"id":"o3","item":"poison","quantity":1}'), 1), /poison/);
});

test('an offline warehouse recovers on the third attempt', () => {
  const order = bytes('{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}');
  assert.deepEqual(processOrder(order, 1), { retry: 'warehouse offline (attempt 1)' });
  assert.deepEqual(processOrder(order, 2), { retry: 'warehouse offline (attempt 2)' });
  assert.deepEqual(processOrder(order, 3), { accepted: 'order o2: 1 x pen' });
});

test('warehouse may be absent or null', () => {
  assert.equal(parseOrder(bytes('{"id":"a","item":"b","quantity":1}')).order.warehouse, null);
  assert.equal(
    parseOrder(bytes('{"id":"a","item":"b","quantity":1,"warehouse":null}')).order.warehouse,
    null,
  );
});

test('a payload that is not UTF-8 is malformed', () => {
  for (const b of [[0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x22, 0xff, 0x22]]) {
    assert.match(processOrder(new Uint8Array(b), 1).malformed, /^not JSON: invalid UTF-8/, String(b));
  }
});

test('enrich adds the size and keeps the order', () => {
  const result = enrichOrder(bytes('{"id":"o1","item":"bücher","quantity":12}'));
  assert.equal(result.id, 'o1');
  assert.deepEqual(JSON.parse(result.enriched), {
    id: 'o1',
    item: 'bücher',
    quantity: 12,
    size: 'bulk',
  });
  assert.equal(JSON.parse(enrichOrder(bytes('{"id":"o2","item":"pen","quantity":1}')).enriched).size, 'standard');
  assert.ok(enrichOrder(bytes('not json')).malformed);
  assert.match(enrichOrder(bytes('{"id":"o1","item":"book","quantity":0}')).malformed, /positive/);
});
