// `manual`: settles every message itself (made for the MANUAL ack policy).
//
// - malformed → reject();  poison → uncaught exception (trap);
// - two calls deep, checkStock ends the call at once with interrupt(): a duplicate is acked
//   (already processed), a busy warehouse is nacked until the second delivery;
// - an offline warehouse → nack() until the third delivery; otherwise log and ack().
import { ack, interrupt, log, nack, reject } from '@ackbar/guest';
import { parseOrder, summary, warehouseOffline } from './order.js';

function checkStock(order, attempt) {
  if (order.item === 'duplicate') {
    interrupt('ack'); // never returns
  }
  if (order.warehouse === 'busy' && attempt < 2) {
    interrupt('nack'); // never returns
  }
}

function reserve(order, attempt) {
  checkStock(order, attempt);
}

export function handle(msg) {
  const parsed = parseOrder(msg.payload);
  if (parsed.malformed !== undefined) {
    reject();
    return undefined;
  }
  const { order } = parsed;
  reserve(order, msg.attempt);
  if (warehouseOffline(order, msg.attempt)) {
    nack();
    return undefined;
  }
  log('info', summary(order));
  ack();
  return undefined;
}
