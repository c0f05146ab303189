// The order event shared by the handlers: decoding, validation and the business rules.
// No calls to the host, so it is tested natively with plain `node --test` as well.
import { decodeUtf8 } from '@ackbar/guest';

/**
 * Parses and validates an order event.
 *
 * Returns `{ order }` or `{ malformed: reason }`. An order for the item `"poison"` hits a bug:
 * it throws, which the host sees as a trap.
 * @param {Uint8Array | null | undefined} payload
 * @returns {{ order: { id: string, item: string, quantity: number, warehouse: string | null } }
 *         | { malformed: string }}
 */
export function parseOrder(payload) {
  const decoded = decodeOrder(payload);
  if (decoded.malformed !== undefined) return decoded;
  const { order } = decoded;
  if (order.item === 'poison') {
    throw new Error(`order ${order.id}: cannot price item 'poison'`);
  }
  if (order.quantity === 0) {
    return { malformed: `order ${order.id}: quantity must be positive` };
  }
  return { order };
}

/**
 * The shape checks every handler makes: `{ order, value }` (`value` is the parsed JSON object)
 * or `{ malformed: reason }`.
 */
function decodeOrder(payload) {
  let value;
  try {
    value = JSON.parse(decodeUtf8(payload, { fatal: true }));
  } catch (err) {
    return { malformed: `not JSON: ${err.message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { malformed: 'not a JSON object' };
  }
  const { id, item, quantity, warehouse } = value;
  if (typeof id !== 'string') return { malformed: 'missing or non-string field `id`' };
  if (typeof item !== 'string') return { malformed: 'missing or non-string field `item`' };
  if (!Number.isSafeInteger(quantity) || quantity < 0) {
    return { malformed: 'missing field `quantity` or not a non-negative integer' };
  }
  if (warehouse !== undefined && warehouse !== null && typeof warehouse !== 'string') {
    return { malformed: 'field `warehouse` is not a string' };
  }
  return { order: { id, item, quantity, warehouse: warehouse ?? null }, value };
}

/** Orders of at least this many items are "bulk" (the enrich handler). */
export const BULK_FROM = 10;

/**
 * The enrich handler's transformation: `{ id, enriched }` (the order's JSON object with
 * `"size"` added, as JSON text) or `{ malformed: reason }`. `"poison"` is an item like any
 * other here.
 * @param {Uint8Array | null | undefined} payload
 */
export function enrichOrder(payload) {
  const decoded = decodeOrder(payload);
  if (decoded.malformed !== undefined) return decoded;
  const { order, value } = decoded;
  if (order.quantity === 0) {
    return { malformed: `order ${order.id}: quantity must be positive` };
  }
  const size = order.quantity >= BULK_FROM ? 'bulk' : 'standard';
  return { id: order.id, enriched: JSON.stringify({ ...value, size }) };
}

/** The warehouse pretends to come back on the third delivery. */
export function warehouseOffline(order, attempt) {
  return order.warehouse === 'offline' && attempt < 3;
}

/** The line logged at info for an accepted order. */
export function summary(order) {
  return `order ${order.id}: ${order.quantity} x ${order.item}`;
}

/**
 * What `orders` makes of one message, free of Wasm imports:
 * `{ accepted: summary }`, `{ malformed: reason }` or `{ retry: text }`; throws for poison.
 */
export function processOrder(payload, attempt) {
  const parsed = parseOrder(payload);
  if (parsed.malformed !== undefined) return parsed;
  if (warehouseOffline(parsed.order, attempt)) {
    return { retry: `warehouse offline (attempt ${attempt})` };
  }
  return { accepted: summary(parsed.order) };
}
