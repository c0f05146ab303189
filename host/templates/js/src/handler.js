// The `{{name}}` handler: Ackbar calls `handle` once per Kafka message.
import { decodeUtf8, log, retry } from '@ackbar/guest';

/** @param {import('@ackbar/guest').Message} msg */
export function handle(msg) {
  if (msg.payload == null || msg.payload.length === 0) {
    log('warn', 'empty message');
    // Settle it ourselves: redelivering an empty message cannot help.
    return 'reject';
  }
  const text = decodeUtf8(msg.payload);
  if (text.startsWith('retry') && msg.attempt < 3) {
    // A transient failure: under NACK_ON_ERROR it is delivered again after a backoff.
    throw retry(`asked to retry (attempt ${msg.attempt})`);
  }
  log('info', `handled ${msg.topic}/${msg.partition}@${msg.offset}: ${text}`);
  // Return nothing: the pipeline's ack policy decides.
}
