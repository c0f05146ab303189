// @ackbar/guest outside a component (Node's "node" export condition): every call is recorded
// by the run of `@ackbar/guest/testing` in progress.
import { SendError, checkDecision, checkLevel, outputRecord } from './common.js';
import { Interrupt, recorder } from './recorder.js';

export {
  HandlerError,
  SendError,
  decodeUtf8,
  encodeUtf8,
  fatal,
  retry,
} from './common.js';

export function ack() {
  recorder('ack').decisions.push('ack');
}

export function nack() {
  recorder('nack').decisions.push('nack');
}

export function reject() {
  recorder('reject').decisions.push('reject');
}

export function interrupt(decision) {
  const run = recorder('interrupt');
  checkDecision(decision);
  // Recorded here, not where the signal is caught: a handler's own catch must not undo it.
  run.interrupted ??= decision;
  throw new Interrupt(decision);
}

export function log(level, text) {
  recorder('log').logs.push({ level: checkLevel(level), text: String(text) });
}

export function send(record) {
  const run = recorder('send');
  const out = outputRecord(record);
  // The checks the host makes, so a test sees the same errors.
  if (out.topic === '') throw new SendError('invalid', 'the topic is empty');
  if (out.partition !== null && out.partition < 0) {
    throw new SendError('invalid', `partition ${out.partition} is negative`);
  }
  if (run.outputs !== null && !run.outputs.includes(out.topic)) {
    const declared = run.outputs.length ? run.outputs.join(', ') : 'it has none';
    throw new SendError('topic-not-allowed', `\`${out.topic}\` is not among this pipeline's outputs (${declared})`);
  }
  run.sent.push(out);
}

export function sendTo(topic, key, payload) {
  send({ topic, key, payload });
}
