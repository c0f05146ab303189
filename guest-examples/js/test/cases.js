// The cases of guest-examples/README.md, per handler: [payload (string, bytes or null for
// none), attempt, outcome (string or RegExp), the decisions made (comma-separated), log lines
// ("level: text" or RegExp), records sent ("topic key payload")]. Checked natively by
// handlers.test.js and against each built component by run-component.mjs.
export const order = (o) => JSON.stringify({ id: 'o1', item: 'book', quantity: 2, ...o });
// A valid order but for one byte that is not UTF-8.
const badUtf8 = Uint8Array.from([...new TextEncoder().encode(order({ item: 'b\u00e9' }))].map((b) => (b === 0xa9 ? 0xff : b)));
// Encoded surrogate (ED A0 80) and overlong '/' (C0 AF): not UTF-8 either.
const strictUtf8 = [[0xed, 0xa0, 0x80], [0xc0, 0xaf]].map((bad) => {
  const [head, tail] = order({ item: '@' }).split('@').map((t) => [...new TextEncoder().encode(t)]);
  return Uint8Array.from([...head, ...bad, ...tail]);
});
export const cases = {
  orders: [
    [order(), 1, 'ok(none)', '', ['info: order o1: 2 x book']],
    ['not json', 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/]],
    [null, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/]],
    [badUtf8, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order: not JSON: invalid UTF-8/]],
    ...strictUtf8.map((p) => [p, 1, 'ok(some(reject))', '', [/invalid UTF-8/]]),
    ['{"id":"o1","item":"book"}', 1, 'ok(some(reject))', '', [/^warn: /]],
    [order({ quantity: '2' }), 1, 'ok(some(reject))', '', [/^warn: /]],
    [order({ quantity: 0 }), 1, 'ok(some(reject))', '', [/^warn: .*quantity must be positive/]],
    [order({ item: 'poison' }), 1, /^trap\(/, '', []],
    [order({ item: 'poison', quantity: 0 }), 1, /^trap\(/, '', []],
    [order({ warehouse: 'offline' }), 1, 'err(retry(warehouse offline (attempt 1)))', '', []],
    [order({ warehouse: 'offline' }), 2, 'err(retry(warehouse offline (attempt 2)))', '', []],
    [order({ warehouse: 'offline' }), 3, 'ok(none)', '', ['info: order o1: 2 x book']],
    [order({ item: 'çà ☕ 🍕', warehouse: 'north' }), 1, 'ok(none)', '', ['info: order o1: 2 x çà ☕ 🍕']],
    [order(), 1, 'ok(none)', '', ['info: order o1: 2 x book']],
  ],
  manual: [
    [order(), 1, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    ['not json', 1, 'ok(none)', 'reject', []],
    [null, 1, 'ok(none)', 'reject', []],
    [badUtf8, 1, 'ok(none)', 'reject', []],
    [order({ quantity: 0 }), 1, 'ok(none)', 'reject', []],
    [order({ item: 'poison' }), 1, /^trap\(/, '', []],
    [order({ item: 'duplicate' }), 1, 'interrupt(ack)', '', []],
    [order({ item: 'duplicate', warehouse: 'offline' }), 1, 'interrupt(ack)', '', []],
    [order({ warehouse: 'busy' }), 1, 'interrupt(nack)', '', []],
    [order({ warehouse: 'busy' }), 2, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    [order({ warehouse: 'offline' }), 1, 'ok(none)', 'nack', []],
    [order({ warehouse: 'offline' }), 2, 'ok(none)', 'nack', []],
    [order({ warehouse: 'offline' }), 3, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    [order(), 1, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
  ],
  enrich: [
    [order(), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"book","quantity":2,"size":"standard"}']],
    [order({ quantity: 12, item: 'çà ☕' }), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"çà ☕","quantity":12,"size":"bulk"}']],
    [order({ item: 'poison' }), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"poison","quantity":2,"size":"standard"}']],
    ['not json', 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/], []],
    [null, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/], []],
    [order({ quantity: 0 }), 1, 'ok(some(reject))', '', [/^warn: .*quantity must be positive/], []],
  ],
};
