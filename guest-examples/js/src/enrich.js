// `enrich`: produces. Each valid order is forwarded, keyed by its id and with an added "size"
// field, to `<topic>.enriched`, and left to the ack policy; the output is published only if the
// attempt settles the message as handled. A payload that is not a valid order is rejected, and
// nothing is forwarded.
import { SendError, fatal, log, sendTo } from '@ackbar/guest';
import { enrichOrder } from './order.js';

export function handle(msg) {
  const result = enrichOrder(msg.payload);
  if (result.malformed !== undefined) {
    log('warn', `rejecting malformed order: ${result.malformed}`);
    return 'reject';
  }
  try {
    sendTo(`${msg.topic}.enriched`, result.id, result.enriched);
  } catch (err) {
    // The pipeline does not declare the topic in `outputs`: no redelivery can fix that.
    if (err instanceof SendError) throw fatal(`order ${result.id}: cannot forward it: ${err.message}`);
    throw err;
  }
  return undefined;
}
