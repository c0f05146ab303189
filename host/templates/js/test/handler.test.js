// The handler's unit tests, run natively (no Wasm): `make test`, or `npm test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { message, run } from '@ackbar/guest/testing';
import { handle } from '../src/handler.js';

test('an empty message is rejected', () => {
  const r = run(handle, message(''));
  assert.equal(r.settled(), 'reject');
  assert.ok(r.logged('empty message'));
  assert.equal(run(handle, message(null)).settled(), 'reject');
});

test('retry fails until the third attempt', () => {
  const r = run(handle, message('retry please'));
  assert.deepEqual(r.end, { error: { tag: 'retry', val: 'asked to retry (attempt 1)' } });
  assert.deepEqual(run(handle, message('retry please', { attempt: 3 })).end, { returned: null });
});

test('anything else is logged and left to the policy', () => {
  const r = run(handle, message('hello'));
  assert.deepEqual(r.end, { returned: null });
  assert.equal(r.settled(), null);
  assert.ok(r.logged('handled test/0@0: hello'));
});
