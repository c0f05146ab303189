// The order event shared by both handlers: decoding, validation and the business rules.
// Plain JavaScript with no Wasm imports, so it runs under `node --test` as well.

const CHUNK = 8192; // String.fromCharCode.apply takes a bounded number of arguments

/**
 * Decodes UTF-8 bytes into a string; throws on invalid UTF-8, like a fatal TextDecoder (which
 * the QuickJS engine does not have). Built from native operations only: a byte loop in an
 * interpreted engine would cost more than the rest of the handler.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function decodeUtf8(bytes) {
  let latin1 = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    latin1 += String.fromCharCode.apply(null, bytes.slice(i, i + CHUNK));
  }
  if (!/[\x80-\xff]/.test(latin1)) return latin1; // ASCII
  try {
    // escape() turns each byte >= 0x80 into %XX; decodeURIComponent decodes those as UTF-8.
    return decodeURIComponent(escape(latin1));
  } catch {
    throw new SyntaxError('invalid UTF-8');
  }
}

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
    value = JSON.parse(decodeUtf8(payload ?? new Uint8Array(0)));
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
 * `"size"` added, as UTF-8 bytes) or `{ malformed: reason }`. `"poison"` is an item like any
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
  return { id: order.id, enriched: encodeUtf8(JSON.stringify({ ...value, size })) };
}

/**
 * Encodes a string as UTF-8 bytes (QuickJS has no TextEncoder).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function encodeUtf8(text) {
  // encodeURIComponent writes each non-ASCII byte as %XX; unescape turns those into chars.
  const latin1 = unescape(encodeURIComponent(text));
  const bytes = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) bytes[i] = latin1.charCodeAt(i);
  return bytes;
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
