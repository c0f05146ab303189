// Runs a built handler component in Node (via `jco transpile`) against the cases of
// guest-examples/README.md and checks every outcome. Used by ../test.sh.
//
//   [BENCH=n] node --experimental-wasm-extended-const test/run-component.mjs <orders|manual|enrich> <component.wasm> <toolchain node_modules> <work dir>
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [kind, wasm, nodeModules, work] = process.argv.slice(2);
const out = resolve(work);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
execFileSync(
  process.execPath,
  [join(nodeModules, '@bytecodealliance/jco/dist/jco.js'), 'transpile', resolve(wasm), '-o', out,
    '--name', 'component', '--instantiation', 'async', '--no-typescript', '-q'],
  { stdio: 'inherit' },
);
// The WASI shim jco itself uses.
const fromJco = createRequire(join(nodeModules, '@bytecodealliance/jco/package.json'));
const { WASIShim } = await import(
  pathToFileURL(fromJco.resolve('@bytecodealliance/preview2-shim/instantiation'))
);
const { instantiate } = await import(pathToFileURL(join(out, 'component.js')));

class Interrupt {
  constructor(decision) {
    this.decision = decision;
  }
}

// What the host saw during one call.
let seen;
const ackbar = {
  'ackbar:plugin/acker': {
    ack: () => seen.settled.push('ack'),
    nack: () => seen.settled.push('nack'),
    reject: () => seen.settled.push('reject'),
    interrupt: (d) => {
      throw new Interrupt(d);
    },
  },
  'ackbar:plugin/log': { log: (level, text) => seen.logs.push(`${level}: ${text}`) },
  'ackbar:plugin/producer': {
    send: (r) => {
      const text = (b) => (b === undefined ? '' : new TextDecoder().decode(b));
      seen.sent.push(`${r.topic} ${text(r.key)} ${text(r.payload)}`);
    },
  },
  'ackbar:plugin/types': {},
};

async function fresh() {
  const wasi = new WASIShim().getImportObject();
  return instantiate((name) => readFile(join(out, name)).then((b) => WebAssembly.compile(b)), {
    ...wasi,
    ...ackbar,
  });
}

let instance = await fresh();
async function call(payload, attempt = 1) {
  seen = { settled: [], logs: [], sent: [] };
  const msg = {
    topic: 'orders',
    partition: 0,
    offset: 7n,
    timestamp: 1700000000000n,
    key: undefined,
    payload: payload === null ? undefined : payload instanceof Uint8Array ? payload : new TextEncoder().encode(payload),
    headers: [{ key: 'h', value: new Uint8Array([1]) }, { key: 'empty', value: undefined }],
    attempt,
  };
  let outcome;
  try {
    const r = instance.handle(msg);
    outcome = r === undefined ? 'ok(none)' : `ok(some(${r}))`;
  } catch (e) {
    if (e instanceof Interrupt) {
      outcome = `interrupt(${e.decision})`;
    } else if (e && e.payload && e.payload.tag) {
      outcome = `err(${e.payload.tag}(${e.payload.val}))`;
    } else {
      outcome = `trap(${e && e.message})`;
    }
    if (!outcome.startsWith('err')) instance = await fresh(); // like the host: a new instance
  }
  return { outcome, settled: seen.settled.join(','), logs: seen.logs, sent: seen.sent };
}

const order = (o) => JSON.stringify({ id: 'o1', item: 'book', quantity: 2, ...o });
// A valid order but for one byte that is not UTF-8.
const badUtf8 = Uint8Array.from([...new TextEncoder().encode(order({ item: 'b\u00e9' }))].map((b) => (b === 0xa9 ? 0xff : b)));
// Encoded surrogate (ED A0 80) and overlong '/' (C0 AF): not UTF-8 either.
const strictUtf8 = [[0xed, 0xa0, 0x80], [0xc0, 0xaf]].map((bad) => {
  const [head, tail] = order({ item: '@' }).split('@').map((t) => [...new TextEncoder().encode(t)]);
  return Uint8Array.from([...head, ...bad, ...tail]);
});
const cases = {
  orders: [
    [order(), 1, 'ok(none)', '', ['info: order o1: 2 x book']],
    ['not json', 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/]],
    [null, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/]],
    [badUtf8, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order: not JSON: invalid UTF-8/]],
    ...strictUtf8.map((p) => [p, 1, 'ok(some(reject))', '', [/invalid UTF-8/]]),
    ['{"id":"o1","item":"book"}', 1, 'ok(some(reject))', '', [/^warn: /]],
    [order({ quantity: '2' }), 1, 'ok(some(reject))', '', [/^warn: /]],
    [order({ quantity: 0 }), 1, 'ok(some(reject))', '', [/^warn: .*quantity must be positive/]],
    [order({ item: 'poison' }), 1, /^trap\(/, '', []],
    [order({ item: 'poison', quantity: 0 }), 1, /^trap\(/, '', []],
    [order({ warehouse: 'offline' }), 1, 'err(retry(warehouse offline (attempt 1)))', '', []],
    [order({ warehouse: 'offline' }), 2, 'err(retry(warehouse offline (attempt 2)))', '', []],
    [order({ warehouse: 'offline' }), 3, 'ok(none)', '', ['info: order o1: 2 x book']],
    [order({ item: 'çà ☕ 🍕', warehouse: 'north' }), 1, 'ok(none)', '', ['info: order o1: 2 x çà ☕ 🍕']],
    [order(), 1, 'ok(none)', '', ['info: order o1: 2 x book']],
  ],
  manual: [
    [order(), 1, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    ['not json', 1, 'ok(none)', 'reject', []],
    [null, 1, 'ok(none)', 'reject', []],
    [badUtf8, 1, 'ok(none)', 'reject', []],
    [order({ quantity: 0 }), 1, 'ok(none)', 'reject', []],
    [order({ item: 'poison' }), 1, /^trap\(/, '', []],
    [order({ item: 'duplicate' }), 1, 'interrupt(ack)', '', []],
    [order({ item: 'duplicate', warehouse: 'offline' }), 1, 'interrupt(ack)', '', []],
    [order({ warehouse: 'busy' }), 1, 'interrupt(nack)', '', []],
    [order({ warehouse: 'busy' }), 2, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    [order({ warehouse: 'offline' }), 1, 'ok(none)', 'nack', []],
    [order({ warehouse: 'offline' }), 2, 'ok(none)', 'nack', []],
    [order({ warehouse: 'offline' }), 3, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
    [order(), 1, 'ok(none)', 'ack', ['info: order o1: 2 x book']],
  ],
  enrich: [
    [order(), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"book","quantity":2,"size":"standard"}']],
    [order({ quantity: 12, item: 'çà ☕' }), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"çà ☕","quantity":12,"size":"bulk"}']],
    [order({ item: 'poison' }), 1, 'ok(none)', '', [], ['orders.enriched o1 {"id":"o1","item":"poison","quantity":2,"size":"standard"}']],
    ['not json', 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/], []],
    [null, 1, 'ok(some(reject))', '', [/^warn: rejecting malformed order/], []],
    [order({ quantity: 0 }), 1, 'ok(some(reject))', '', [/^warn: .*quantity must be positive/], []],
  ],
}[kind];

const matches = (want, got) => (want instanceof RegExp ? want.test(got) : want === got);
let failed = 0;
for (const [payload, attempt, outcome, settled, logs, sent = []] of cases) {
  const got = await call(payload, attempt);
  const ok =
    matches(outcome, got.outcome) &&
    JSON.stringify(sent) === JSON.stringify(got.sent) &&
    settled === got.settled &&
    logs.length === got.logs.length &&
    logs.every((l, i) => matches(l, got.logs[i]));
  if (!ok) {
    failed++;
    console.error(`FAIL ${kind} ${payload} attempt ${attempt}: ${JSON.stringify(got)}`);
  }
}
if (failed) {
  console.error(`${kind}: ${failed} of ${cases.length} cases failed`);
  process.exit(1);
}
console.log(`${kind}: ${cases.length} cases ok (${wasm})`);

// BENCH=n: time n calls of the valid order on one instance (rough: Node's Wasm engine, not wasmtime).
const n = Number(process.env.BENCH ?? 0);
if (n > 0) {
  for (let i = 0; i < Math.min(n, 1000); i++) await call(order(), 1); // warm up
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await call(order(), 1);
  const us = Number(process.hrtime.bigint() - start) / 1000 / n;
  console.log(`${kind}: ${us.toFixed(1)} µs per call (${n} calls, Node ${process.version})`);
}
