// `orders`: leaves the decision to the ack policy.
//
// - a valid order is logged and left to the policy (return nothing: `ok(none)`);
// - a payload that is not an order is rejected explicitly (`ok(some(reject))`);
// - an order whose warehouse is offline fails with a `retry` error until its third delivery;
// - an order for the item "poison" throws: an uncaught exception is a trap for the host.
import { log, retry } from '@ackbar/guest';
import { processOrder } from './order.js';

export function handle(msg) {
  const verdict = processOrder(msg.payload, msg.attempt);
  if (verdict.malformed !== undefined) {
    log('warn', `rejecting malformed order: ${verdict.malformed}`);
    return 'reject';
  }
  if (verdict.retry !== undefined) {
    throw retry(verdict.retry);
  }
  log('info', verdict.accepted);
  return undefined;
}
