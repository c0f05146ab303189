// Native test harness: run a handler on a message in Node, with no Wasm, and see what it did.
//
//   import { message, run } from '@ackbar/guest/testing';
//   const r = run(handle, message('{"id":"o1"}'));
//   assert.equal(r.settled(), 'ack');
import { DECISIONS, encodeUtf8, isHandlerError } from './common.js';
import { Interrupt, begin, end } from './recorder.js';

/**
 * A message as the QuickJS engine delivers it (`none` is `null`, `s64` a number): topic
 * "test", partition 0, offset 0, attempt 1, no timestamp, key or headers; `overrides` replace
 * any field. Strings given for the payload, the key or a header value are encoded as UTF-8.
 */
export function message(payload = null, overrides = {}) {
  const bytes = (v) => (typeof v === 'string' ? encodeUtf8(v) : v ?? null);
  const msg = {
    topic: 'test',
    partition: 0,
    offset: 0,
    timestamp: null,
    key: null,
    payload: bytes(payload),
    headers: [],
    attempt: 1,
    ...overrides,
  };
  msg.key = bytes(msg.key);
  msg.headers = msg.headers.map((h) => ({ key: h.key, value: bytes(h.value) }));
  return msg;
}

/** Everything one `handle` call did. */
export class Run {
  constructor(end, recording, thrown) {
    /**
     * How the call ended, one of: `{ returned: decision | null }`, `{ error: { tag, val } }`
     * (a thrown HandlerError), `{ interrupted: decision }`, `{ trapped: message }` (any other
     * exception, or a return value the component could not pass to the host).
     */
    this.end = end;
    /** Every ack/nack/reject call, in order (the host keeps only the first). */
    this.decisions = recording.decisions;
    /** Every log call: `{ level, text }`. */
    this.logs = recording.logs;
    /** Every record sent, as the host receives it (the host publishes them only if the
     * attempt succeeds). */
    this.sent = recording.sent;
    /** What the handler threw, if anything. */
    this.thrown = thrown;
  }

  /**
   * The decision the host settles the message with, if the handler made one: the first acker
   * call, else an interrupt, else a returned decision; `null` leaves it to the ack policy.
   */
  settled() {
    if (this.decisions.length > 0) return this.decisions[0];
    return this.end.interrupted ?? this.end.returned ?? null;
  }

  /** Whether a log line contains `text` (or matches it, for a RegExp). */
  logged(text) {
    return this.logs.some((l) => (text instanceof RegExp ? text.test(l.text) : l.text.includes(text)));
  }

  /** The payloads sent to `topic`, in order. */
  sentTo(topic) {
    return this.sent.filter((r) => r.topic === topic && r.payload !== null).map((r) => r.payload);
  }
}

/**
 * Calls `handler(msg)` (a function, or a module exporting `handle`) and records what it does.
 * Nothing it throws escapes: an interrupt, a HandlerError and a trap all end up in `end`.
 * `options.outputs`: the pipeline's output topics; when given, a send to another one fails
 * like it does in the host (`topic-not-allowed`).
 * @returns {Run}
 */
export function run(handler, msg, options = {}) {
  const handle = typeof handler === 'function' ? handler : handler?.handle;
  if (typeof handle !== 'function') {
    throw new TypeError('run: pass the handle function, or a module that exports handle');
  }
  const recording = begin(options.outputs ?? null);
  let endState;
  let thrown;
  try {
    endState = returned(handle(msg));
  } catch (err) {
    thrown = err;
    if (err instanceof Interrupt) {
      endState = { interrupted: err.decision };
    } else if (isHandlerError(err)) {
      endState = { error: { tag: err.tag, val: err.val } };
    } else {
      endState = { trapped: err instanceof Error ? err.message : String(err) };
    }
  } finally {
    end();
  }
  // The host ends the call at interrupt(), even if the handler caught what ended it here.
  if (recording.interrupted !== undefined) endState = { interrupted: recording.interrupted };
  return new Run(endState, recording, thrown);
}

function returned(value) {
  if (value === undefined || value === null) return { returned: null };
  if (DECISIONS.includes(value)) return { returned: value };
  if (typeof value?.then === 'function') {
    value.then(undefined, () => {}); // the trap is the report, not an unhandled rejection
    return { trapped: 'handle returned a Promise: with QuickJS, handle must be synchronous' };
  }
  return { trapped: `handle returned ${JSON.stringify(value)}, which is not a decision` };
}
