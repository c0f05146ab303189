// Runs a built handler component in Node (via `jco transpile`) against the cases of
// guest-examples/README.md and checks every outcome, through `handle` and through
// `handleBatch`. Used by ../test.sh.
//
//   [BENCH=n] node --experimental-wasm-extended-const test/run-component.mjs <orders|manual|enrich> <component.wasm> <toolchain node_modules> <work dir>
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cases as allCases, order } from './cases.js';

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
  'ackbar:plugin/batch': {
    // What `handle` returned for the current message; the answer says whether to go on.
    finish: (returned) => {
      seen.finished.push(returned);
      return seen.finished.length < seen.goOnFor;
    },
  },
  'ackbar:plugin/types': {},
};

// A returned result the way the outcomes of cases.js spell it.
const spelled = (r) =>
  r.tag === 'ok'
    ? r.val == null
      ? 'ok(none)'
      : `ok(some(${r.val}))`
    : `err(${r.val.tag}(${r.val.val}))`;

async function fresh() {
  const wasi = new WASIShim().getImportObject();
  return instantiate((name) => readFile(join(out, name)).then((b) => WebAssembly.compile(b)), {
    ...wasi,
    ...ackbar,
  });
}

let instance = await fresh();

function message(payload, attempt) {
  return {
    topic: 'orders',
    partition: 0,
    offset: 7n,
    timestamp: 1700000000000n,
    key: undefined,
    payload: payload === null ? undefined : payload instanceof Uint8Array ? payload : new TextEncoder().encode(payload),
    headers: [{ key: 'h', value: new Uint8Array([1]) }, { key: 'empty', value: undefined }],
    attempt,
  };
}

// One message through `handle`, or (batch) through `handleBatch` as a batch of one.
async function call(payload, attempt = 1, batch = false) {
  seen = { settled: [], logs: [], sent: [], finished: [], goOnFor: 1 };
  const msg = message(payload, attempt);
  let outcome;
  try {
    if (batch) {
      instance.handleBatch([msg]);
      if (seen.finished.length !== 1) throw new Error(`finished ${seen.finished.length} times`);
      outcome = spelled(seen.finished[0]);
    } else {
      const r = instance.handle(msg);
      outcome = r === undefined ? 'ok(none)' : `ok(some(${r}))`;
    }
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

const cases = allCases[kind];

const matches = (want, got) => (want instanceof RegExp ? want.test(got) : want === got);
let failed = 0;
for (const [payload, attempt, outcome, settled, logs, sent = []] of cases) {
  for (const batch of [false, true]) {
    const got = await call(payload, attempt, batch);
    const ok =
      matches(outcome, got.outcome) &&
      JSON.stringify(sent) === JSON.stringify(got.sent) &&
      settled === got.settled &&
      logs.length === got.logs.length &&
      logs.every((l, i) => matches(l, got.logs[i]));
    if (!ok) {
      failed++;
      console.error(`FAIL ${kind} ${payload} attempt ${attempt}${batch ? ' (batch)' : ''}: ${JSON.stringify(got)}`);
    }
  }
}

// Every case that does not end its call, in one `handleBatch` call: each finished in order with
// what `handle` returned; then the same batch where the host says stop after the second.
const calm = cases.filter(([, , outcome]) => typeof outcome === 'string' && outcome.startsWith('ok'));
for (const goOnFor of [calm.length, 2]) {
  seen = { settled: [], logs: [], sent: [], finished: [], goOnFor };
  instance.handleBatch(calm.map(([payload, attempt]) => message(payload, attempt)));
  const want = calm.slice(0, goOnFor).map(([, , outcome]) => outcome);
  const got = seen.finished.map(spelled);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    failed++;
    console.error(`FAIL ${kind}: a batch of ${calm.length}, stopped after ${goOnFor}: ${JSON.stringify(got)}`);
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
