// @ackbar/guest inside a component: the functions call the host's WIT imports. Node loads
// native.js instead (the "node" export condition), which records the calls for the harness.
import * as acker from 'ackbar:plugin/acker@0.1.0';
import * as host from 'ackbar:plugin/log@0.1.0';
import * as producer from 'ackbar:plugin/producer@0.1.0';
import { SendError, checkDecision, checkLevel, outputRecord } from './common.js';

export {
  HandlerError,
  SendError,
  decodeUtf8,
  encodeUtf8,
  fatal,
  retry,
} from './common.js';

/** Settles the current message as acknowledged. The first decision made for a message wins. */
export function ack() {
  acker.ack();
}

/** Settles the current message as not acknowledged: it is delivered again after a backoff. */
export function nack() {
  acker.nack();
}

/** Settles the current message as rejected (committed; dead-lettered where configured). */
export function reject() {
  acker.reject();
}

/** Settles the current message with `decision` and ends the `handle` call at once. */
export function interrupt(decision) {
  acker.interrupt(checkDecision(decision));
  throw new Error('ackbar: the host did not end the call on interrupt');
}

/** Writes `text` to the host's log at `level`. */
export function log(level, text) {
  host.log(checkLevel(level), String(text));
}

/** Adds a record to what this attempt publishes if it succeeds; throws a `SendError`. */
export function send(record) {
  try {
    producer.send(outputRecord(record));
  } catch (err) {
    // componentize-qjs (like jco) throws an Error whose `payload` is the send-error variant.
    const e = err?.payload ?? err;
    if (e !== null && typeof e === 'object' && typeof e.tag === 'string') {
      throw new SendError(e.tag, e.val);
    }
    throw err;
  }
}

/** `send` a record with a key (or null) and a payload to `topic`. */
export function sendTo(topic, key, payload) {
  send({ topic, key, payload });
}
