// What the Wasm and the native implementations share. Plain ECMAScript: QuickJS has no
// TextEncoder/TextDecoder and no Node APIs.

export const DECISIONS = ['ack', 'nack', 'reject'];
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/**
 * A handler failure: throw it from `handle` (`err(retry(...))` / `err(fatal(...))` in WIT).
 * Not an Error on purpose: QuickJS turns a thrown Error into a trap, whatever its fields, and
 * lowers any other thrown object by its `tag` and `val`.
 */
export class HandlerError {
  /**
   * @param {'retry' | 'fatal'} tag
   * @param {string} val
   */
  constructor(tag, val) {
    this.tag = tag;
    this.val = val;
  }

  toString() {
    return `${this.tag}: ${this.val}`;
  }
}

/** A transient failure: redelivery may succeed. `throw retry('...')`. */
export function retry(text) {
  return new HandlerError('retry', String(text));
}

/** A permanent failure: under NACK_ON_ERROR the message is rejected, not redelivered. */
export function fatal(text) {
  return new HandlerError('fatal', String(text));
}

/** Why `send` did not accept a record; thrown by `send` and `sendTo`. */
export class SendError extends Error {
  /**
   * @param {'topic-not-allowed' | 'limit-exceeded' | 'invalid' | 'no-message'} tag
   * @param {string} [val]
   */
  constructor(tag, val) {
    super(val === undefined ? tag : `${tag}: ${val}`);
    this.name = 'SendError';
    this.tag = tag;
    if (val !== undefined) this.val = val;
  }
}

/**
 * Whether `err`, thrown by `handle`, is an `err(handler-error)` for the host. Anything else is
 * a trap, like an Error with the same fields (QuickJS traps on every thrown Error).
 */
export function isHandlerError(err) {
  return (
    err !== null &&
    typeof err === 'object' &&
    !(err instanceof Error) &&
    (err.tag === 'retry' || err.tag === 'fatal') &&
    typeof err.val === 'string'
  );
}

export function checkDecision(decision) {
  if (!DECISIONS.includes(decision)) {
    throw new TypeError(`not a decision: ${String(decision)} (ack, nack or reject)`);
  }
  return decision;
}

export function checkLevel(level) {
  if (!LEVELS.includes(level)) {
    throw new TypeError(`not a log level: ${String(level)} (${LEVELS.join(', ')})`);
  }
  return level;
}

const CHUNK = 8192; // String.fromCharCode.apply takes a bounded number of arguments

/**
 * Decodes UTF-8. Invalid sequences become U+FFFD like TextDecoder's, or throw a TypeError with
 * `{ fatal: true }`. Native operations on the common path: a byte loop in an interpreted engine
 * costs more than a whole handler.
 * @param {Uint8Array | null | undefined} bytes
 * @param {{ fatal?: boolean }} [options]
 * @returns {string}
 */
export function decodeUtf8(bytes, options) {
  if (bytes == null) return '';
  let latin1 = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    latin1 += String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK));
  }
  if (!/[\x80-\xff]/.test(latin1)) return latin1; // ASCII
  try {
    // escape() turns each byte >= 0x80 into %XX; decodeURIComponent decodes those as UTF-8
    // and rejects what is not (overlongs, surrogates, truncated sequences).
    return decodeURIComponent(escape(latin1));
  } catch {
    if (options?.fatal) throw new TypeError('invalid UTF-8');
    return decodeLossy(bytes);
  }
}

// The WHATWG decoder: each maximal invalid subsequence becomes one U+FFFD.
function decodeLossy(bytes) {
  const units = [];
  let out = '';
  const flush = () => {
    out += String.fromCharCode.apply(null, units);
    units.length = 0;
  };
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    let need = 0;
    let cp = 0;
    let lower = 0x80;
    let upper = 0xbf;
    if (b < 0x80) {
      cp = b;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      cp = b & 0x0f;
      if (b === 0xe0) lower = 0xa0;
      if (b === 0xed) upper = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      cp = b & 0x07;
      if (b === 0xf0) lower = 0x90;
      if (b === 0xf4) upper = 0x8f;
    } else {
      cp = 0xfffd;
    }
    let j = i + 1;
    for (let k = 0; k < need; k++, j++) {
      const c = bytes[j];
      if (j >= n || c < lower || c > upper) {
        cp = 0xfffd; // the byte at j starts over
        break;
      }
      lower = 0x80;
      upper = 0xbf;
      cp = (cp << 6) | (c & 0x3f);
    }
    i = j;
    if (cp > 0xffff) {
      cp -= 0x10000;
      units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else {
      units.push(cp);
    }
    if (units.length >= CHUNK) flush();
  }
  flush();
  return out;
}

/**
 * Encodes a string as UTF-8, lone surrogates as U+FFFD (like TextEncoder).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function encodeUtf8(text) {
  let latin1;
  try {
    // encodeURIComponent writes each non-ASCII byte as %XX; unescape turns those into chars.
    latin1 = unescape(encodeURIComponent(text));
  } catch {
    const wellFormed = text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
    latin1 = unescape(encodeURIComponent(wellFormed));
  }
  const bytes = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) bytes[i] = latin1.charCodeAt(i);
  return bytes;
}

/** `Uint8Array` as is, a string as UTF-8, `null`/`undefined` as none. */
export function toBytes(value, what) {
  if (value == null) return null;
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encodeUtf8(value);
  throw new TypeError(`${what} must be a Uint8Array, a string or null`);
}

/**
 * The WIT `output-record` for what the handler passed to `send`: optional fields filled in,
 * strings encoded. `none` is `null` (what QuickJS uses).
 */
export function outputRecord(record) {
  if (record === null || typeof record !== 'object') {
    throw new TypeError('send: the record must be an object');
  }
  const { topic, key, payload, headers, partition } = record;
  if (typeof topic !== 'string') throw new TypeError('send: `topic` must be a string');
  if (partition != null && !Number.isInteger(partition)) {
    throw new TypeError('send: `partition` must be an integer or null');
  }
  return {
    topic,
    key: toBytes(key, 'send: `key`'),
    payload: toBytes(payload, 'send: `payload`'),
    headers: (headers ?? []).map((h) => {
      if (h === null || typeof h !== 'object' || typeof h.key !== 'string') {
        throw new TypeError('send: each header must be { key: string, value }');
      }
      return { key: h.key, value: toBytes(h.value, `send: header ${h.key}`) };
    }),
    partition: partition ?? null,
  };
}
