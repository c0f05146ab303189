// The harness records each kind of call, and ends a run the way the host would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  HandlerError,
  SendError,
  ack,
  fatal,
  interrupt,
  log,
  nack,
  reject,
  retry,
  send,
  sendTo,
} from '@ackbar/guest';
import { Run, message, run } from '@ackbar/guest/testing';

const text = (bytes) => new TextDecoder().decode(bytes);

test('message() has the documented defaults and takes overrides', () => {
  assert.deepEqual(message('hi'), {
    topic: 'test',
    partition: 0,
    offset: 0,
    timestamp: null,
    key: null,
    payload: new TextEncoder().encode('hi'),
    headers: [],
    attempt: 1,
  });
  const m = message(new Uint8Array([1, 2]), {
    topic: 'orders',
    attempt: 3,
    key: 'k',
    headers: [{ key: 'a', value: 'b' }, { key: 'none' }],
  });
  assert.deepEqual(m.payload, new Uint8Array([1, 2]));
  assert.equal(m.topic, 'orders');
  assert.equal(m.attempt, 3);
  assert.equal(text(m.key), 'k');
  assert.deepEqual(m.headers, [{ key: 'a', value: new TextEncoder().encode('b') }, { key: 'none', value: null }]);
  assert.equal(message().payload, null);
  assert.equal(message(null).payload, null);
});

test('a returned decision, or none', () => {
  const r = run(() => 'reject', message(''));
  assert.ok(r instanceof Run);
  assert.deepEqual(r.end, { returned: 'reject' });
  assert.equal(r.settled(), 'reject');
  assert.deepEqual(run(() => {}, message('')).end, { returned: null });
  assert.deepEqual(run(() => null, message('')).end, { returned: null });
  assert.equal(run(() => undefined, message('')).settled(), null);
});

test('acker calls are recorded in order; the first one settles', () => {
  const r = run(() => {
    nack();
    ack();
    reject();
    return 'ack';
  }, message('x'));
  assert.deepEqual(r.decisions, ['nack', 'ack', 'reject']);
  assert.equal(r.settled(), 'nack');
  assert.deepEqual(r.end, { returned: 'ack' });
});

test('interrupt ends the call from any depth and settles it', () => {
  const deep = (n) => (n === 0 ? interrupt('nack') : deep(n - 1));
  let after = false;
  const r = run(() => {
    log('info', 'before');
    deep(3);
    after = true;
  }, message('x'));
  assert.equal(after, false);
  assert.deepEqual(r.end, { interrupted: 'nack' });
  assert.equal(r.settled(), 'nack');
  assert.equal(r.logs.length, 1);
});

test('an earlier acker call wins over interrupt', () => {
  const r = run(() => {
    ack();
    interrupt('reject');
  }, message('x'));
  assert.deepEqual(r.end, { interrupted: 'reject' });
  assert.equal(r.settled(), 'ack');
});

test('an interrupt the handler catches still ends the call', () => {
  const r = run(() => {
    try {
      interrupt('ack');
    } catch {
      // A component never gets here: the host ended the call.
    }
    log('info', 'not recorded');
    return 'reject';
  }, message('x'));
  assert.deepEqual(r.end, { interrupted: 'ack' });
  assert.deepEqual(r.logs, []);
});

test('HandlerErrors are failures, anything else thrown is a trap', () => {
  assert.deepEqual(run(() => { throw retry('later'); }, message('x')).end, {
    error: { tag: 'retry', val: 'later' },
  });
  assert.deepEqual(run(() => { throw fatal('never'); }, message('x')).end, {
    error: { tag: 'fatal', val: 'never' },
  });
  // The raw WIT form works too.
  assert.deepEqual(run(() => { throw { tag: 'retry', val: 'raw' }; }, message('x')).end, {
    error: { tag: 'retry', val: 'raw' },
  });
  const e = fatal('x');
  assert.ok(e instanceof HandlerError);
  assert.equal(e.tag, 'fatal');
  assert.equal(String(e), 'fatal: x');
  // QuickJS traps on a thrown Error, whatever its fields.
  const asError = Object.assign(new Error('looks like one'), { tag: 'retry', val: 'x' });
  assert.deepEqual(run(() => { throw asError; }, message('x')).end, { trapped: 'looks like one' });
  const trapped = run(() => { throw new Error('boom'); }, message('x'));
  assert.deepEqual(trapped.end, { trapped: 'boom' });
  assert.equal(trapped.thrown.message, 'boom');
  assert.deepEqual(run(() => { throw 'text'; }, message('x')).end, { trapped: 'text' });
  assert.equal(run(() => { throw 'text'; }, message('x')).settled(), null);
});

test('a return value the host cannot take is a trap', () => {
  assert.match(run(() => 'yes', message('x')).end.trapped, /not a decision/);
  assert.match(run(async () => 'ack', message('x')).end.trapped, /Promise/);
  assert.match(run(async () => { throw new Error('x'); }, message('x')).end.trapped, /Promise/);
});

test('log lines are recorded with their level', () => {
  const r = run(() => {
    log('warn', 'empty message');
    log('debug', 42);
  }, message('x'));
  assert.deepEqual(r.logs, [
    { level: 'warn', text: 'empty message' },
    { level: 'debug', text: '42' },
  ]);
  assert.ok(r.logged('empty'));
  assert.ok(r.logged(/^4\d$/));
  assert.ok(!r.logged('nothing'));
  assert.match(run(() => log('verbose', 'x'), message('x')).end.trapped, /not a log level/);
  assert.match(run(() => interrupt('maybe'), message('x')).end.trapped, /not a decision/);
});

test('sent records are recorded as the host receives them', () => {
  const r = run(() => {
    sendTo('out', 'k1', '{"a":1}');
    sendTo('out', null, new Uint8Array([0xff]));
    send({ topic: 'other', payload: 'p', headers: [{ key: 'h', value: 'v' }, { key: 'n' }], partition: 2 });
    send({ topic: 'out' }); // a tombstone
  }, message('x'));
  assert.deepEqual(r.end, { returned: null });
  assert.equal(r.sent.length, 4);
  assert.deepEqual(r.sent[0], {
    topic: 'out',
    key: new TextEncoder().encode('k1'),
    payload: new TextEncoder().encode('{"a":1}'),
    headers: [],
    partition: null,
  });
  assert.deepEqual(r.sent[2].headers, [{ key: 'h', value: new TextEncoder().encode('v') }, { key: 'n', value: null }]);
  assert.equal(r.sent[2].partition, 2);
  assert.deepEqual(r.sentTo('out').map(text), ['{"a":1}', '\ufffd']);
  assert.deepEqual(r.sentTo('other').map(text), ['p']);
  assert.deepEqual(r.sentTo('none'), []);
});

test('send refuses what the host refuses', () => {
  const refused = (record, options) => {
    let err;
    const r = run(() => {
      try {
        send(record);
      } catch (e) {
        err = e;
      }
    }, message('x'), options);
    assert.deepEqual(r.sent, []);
    assert.ok(err instanceof SendError, String(err));
    return err;
  };
  assert.equal(refused({ topic: '' }).tag, 'invalid');
  assert.equal(refused({ topic: 't', partition: -1 }).tag, 'invalid');
  const notAllowed = refused({ topic: 'audit' }, { outputs: ['out'] });
  assert.equal(notAllowed.tag, 'topic-not-allowed');
  assert.match(notAllowed.val, /`audit` is not among this pipeline's outputs \(out\)/);
  const r = run(() => sendTo('out', null, 'ok'), message('x'), { outputs: ['out'] });
  assert.equal(r.sentTo('out').length, 1);
  // An uncaught SendError is a trap, like in a component.
  assert.match(run(() => sendTo('', null, 'x'), message('x')).end.trapped, /invalid/);
  assert.match(run(() => send({ topic: 't', payload: 7 }), message('x')).end.trapped, /Uint8Array/);
});

test('a run takes a module that exports handle', () => {
  const r = run({ handle: () => 'ack' }, message('x'));
  assert.equal(r.settled(), 'ack');
  assert.throws(() => run({}, message('x')), TypeError);
});

test('outside a run, the functions say how to test', () => {
  assert.throws(() => ack(), /outside a handle call.*@ackbar\/guest\/testing/);
  assert.throws(() => log('info', 'x'), /outside a handle call/);
  assert.throws(() => sendTo('t', null, 'x'), /outside a handle call/);
  // A run always ends its recording, even after a trap.
  run(() => { throw new Error('x'); }, message('x'));
  assert.throws(() => nack(), /outside a handle call/);
});

test('runs are independent', () => {
  const handler = (msg) => log('info', `attempt ${msg.attempt}`);
  const first = run(handler, message('x'));
  const second = run(handler, message('x', { attempt: 2 }));
  assert.deepEqual(first.logs, [{ level: 'info', text: 'attempt 1' }]);
  assert.deepEqual(second.logs, [{ level: 'info', text: 'attempt 2' }]);
});
