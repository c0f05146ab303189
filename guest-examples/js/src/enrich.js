// `enrich`: produces. Each valid order is forwarded, keyed by its id and with an added "size"
// field, to `<topic>.enriched`, and left to the ack policy; the output is published only if the
// attempt settles the message as handled. A payload that is not a valid order is rejected, and
// nothing is forwarded.
import { log } from 'ackbar:plugin/log@0.1.0';
import { send } from 'ackbar:plugin/producer@0.1.0';
import { encodeUtf8, enrichOrder } from './order.js';

export function handle(msg) {
  const result = enrichOrder(msg.payload);
  if (result.malformed !== undefined) {
    log('warn', `rejecting malformed order: ${result.malformed}`);
    return 'reject';
  }
  try {
    send({
      topic: `${msg.topic}.enriched`,
      key: encodeUtf8(result.id),
      payload: result.enriched,
      headers: [],
      partition: undefined,
    });
  } catch (err) {
    // The pipeline does not declare the topic in `outputs`: no redelivery can fix that.
    const why = err?.payload ?? err;
    throw { tag: 'fatal', val: `order ${result.id}: cannot forward it: ${JSON.stringify(why)}` };
  }
  return undefined;
}
