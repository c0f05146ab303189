// The handlers themselves, natively: the @ackbar/guest harness runs each case of cases.js (the
// table the built components are checked against) and records what the handler did.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { message, run } from '@ackbar/guest/testing';
import * as enrich from '../src/enrich.js';
import * as manual from '../src/manual.js';
import * as orders from '../src/orders.js';
import { cases, order } from './cases.js';

const handlers = { orders, manual, enrich };
const text = (bytes) => (bytes === null ? '' : new TextDecoder().decode(bytes));

// A Run in run-component.mjs's terms.
function observed(r) {
  const { end } = r;
  let outcome;
  if ('returned' in end) outcome = end.returned === null ? 'ok(none)' : `ok(some(${end.returned}))`;
  else if ('error' in end) outcome = `err(${end.error.tag}(${end.error.val}))`;
  else if ('interrupted' in end) outcome = `interrupt(${end.interrupted})`;
  else outcome = `trap(${end.trapped})`;
  return {
    outcome,
    settled: r.decisions.join(','),
    logs: r.logs.map((l) => `${l.level}: ${l.text}`),
    sent: r.sent.map((s) => `${s.topic} ${text(s.key)} ${text(s.payload)}`),
  };
}

const matches = (want, got) => (want instanceof RegExp ? want.test(got) : want === got);
const msg = (payload, attempt) =>
  message(payload, {
    topic: 'orders',
    offset: 7,
    timestamp: 1700000000000,
    headers: [{ key: 'h', value: new Uint8Array([1]) }, { key: 'empty', value: null }],
    attempt,
  });

for (const [kind, table] of Object.entries(cases)) {
  test(`${kind}: every case of guest-examples/README.md`, () => {
    for (const [payload, attempt, outcome, settled, logs, sent = []] of table) {
      const got = observed(run(handlers[kind], msg(payload, attempt)));
      const what = `${kind} ${payload} attempt ${attempt}: ${JSON.stringify(got)}`;
      assert.ok(matches(outcome, got.outcome), what);
      assert.equal(got.settled, settled, what);
      assert.deepEqual(got.sent, sent, what);
      assert.equal(got.logs.length, logs.length, what);
      logs.forEach((l, i) => assert.ok(matches(l, got.logs[i]), what));
    }
  });
}

test('the poison trap says what went wrong', () => {
  const r = run(orders, msg(order({ item: 'poison' }), 1));
  assert.match(r.end.trapped, /cannot price item 'poison'/);
});

test('enrich: a pipeline without the output gets a fatal error, and nothing is sent', () => {
  const r = run(enrich, msg(order(), 1), { outputs: [] });
  assert.equal(r.end.error?.tag, 'fatal');
  assert.match(r.end.error.val, /^order o1: cannot forward it: .*not among this pipeline's outputs/);
  assert.deepEqual(r.sent, []);
  const ok = run(enrich, msg(order({ quantity: 12 }), 1), { outputs: ['orders.enriched'] });
  assert.deepEqual(JSON.parse(text(ok.sentTo('orders.enriched')[0])).size, 'bulk');
});

test('manual: a duplicate is acked from two calls deep, before anything is logged', () => {
  const r = run(manual, msg(order({ item: 'duplicate' }), 1));
  assert.deepEqual(r.end, { interrupted: 'ack' });
  assert.equal(r.settled(), 'ack');
  assert.deepEqual(r.logs, []);
});
