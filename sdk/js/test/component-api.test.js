// src/index.js, what a component runs, against stand-ins for the host's WIT imports: a module
// hook serves `ackbar:plugin/*` from recording fakes, so the glue is tested without Wasm.
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

const calls = [];
globalThis.hostCalls = calls;
const fakes = {
  'ackbar:plugin/acker@0.1.0': `
    const calls = globalThis.hostCalls;
    export const ack = () => calls.push(['ack']);
    export const nack = () => calls.push(['nack']);
    export const reject = () => calls.push(['reject']);
    export const interrupt = (d) => calls.push(['interrupt', d]);`,
  'ackbar:plugin/log@0.1.0': `
    export const log = (level, text) => globalThis.hostCalls.push(['log', level, text]);`,
  // Refuses topic "denied" the way QuickJS reports a send-error (an Error carrying the variant
  // in \`payload\`), and "bare" by throwing the variant itself.
  'ackbar:plugin/producer@0.1.0': `
    export const send = (r) => {
      if (r.topic === 'denied') throw Object.assign(new Error('x'), { payload: { tag: 'topic-not-allowed', val: 'denied' } });
      if (r.topic === 'bare') throw { tag: 'no-message' };
      globalThis.hostCalls.push(['send', r]);
    };`,
};
const hooks = `
  const fakes = ${JSON.stringify(fakes)};
  export async function resolve(specifier, context, next) {
    if (specifier in fakes) return { url: 'ackbar-fake:' + specifier, shortCircuit: true };
    return next(specifier, context);
  }
  export async function load(url, context, next) {
    if (url.startsWith('ackbar-fake:')) {
      return { format: 'module', source: fakes[url.slice('ackbar-fake:'.length)], shortCircuit: true };
    }
    return next(url, context);
  }`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
const guest = await import('../src/index.js');

test('acker and log calls go to the host as they are', () => {
  calls.length = 0;
  guest.ack();
  guest.nack();
  guest.reject();
  guest.log('info', 'hello');
  assert.deepEqual(calls, [['ack'], ['nack'], ['reject'], ['log', 'info', 'hello']]);
  assert.throws(() => guest.log('loud', 'x'), TypeError);
});

test('interrupt calls the host, and throws if the host ever returns', () => {
  calls.length = 0;
  assert.throws(() => guest.interrupt('nack'), /did not end the call/);
  assert.deepEqual(calls, [['interrupt', 'nack']]);
  assert.throws(() => guest.interrupt('later'), TypeError);
});

test('send passes a complete output-record', () => {
  calls.length = 0;
  guest.sendTo('out', 'k', 'v');
  guest.send({ topic: 'out', partition: 1, headers: [{ key: 'h', value: new Uint8Array([1]) }] });
  assert.deepEqual(calls, [
    ['send', { topic: 'out', key: new Uint8Array([0x6b]), payload: new Uint8Array([0x76]), headers: [], partition: null }],
    ['send', { topic: 'out', key: null, payload: null, headers: [{ key: 'h', value: new Uint8Array([1]) }], partition: 1 }],
  ]);
});

test('a refused send throws a SendError, from either engine', () => {
  assert.throws(() => guest.sendTo('denied', null, 'x'), (e) =>
    e instanceof guest.SendError && e.tag === 'topic-not-allowed' && e.val === 'denied');
  assert.throws(() => guest.sendTo('bare', null, 'x'), (e) =>
    e instanceof guest.SendError && e.tag === 'no-message' && e.val === undefined);
});
