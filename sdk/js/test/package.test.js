// The package's shape: the WIT copy, and each export condition's entry point.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const pkg = JSON.parse(readFileSync(here('../package.json'), 'utf8'));

test('the WIT copy is the repository\'s wit/ackbar.wit', { skip: !existsSync(here('../../../wit/ackbar.wit')) }, () => {
  assert.equal(readFileSync(here('../wit/ackbar.wit'), 'utf8'), readFileSync(here('../../../wit/ackbar.wit'), 'utf8'));
});

test('Node gets the recording functions, everything else the component ones', async () => {
  assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'node', 'default']);
  const native = await import('@ackbar/guest');
  const wasmSource = readFileSync(here('../src/index.js'), 'utf8');
  for (const name of ['ack', 'nack', 'reject', 'interrupt', 'log', 'send', 'sendTo', 'retry', 'fatal',
    'HandlerError', 'SendError', 'decodeUtf8', 'encodeUtf8']) {
    assert.equal(typeof native[name], 'function', name);
    assert.match(wasmSource, new RegExp(`\\b${name}\\b`), name);
  }
  assert.equal(pkg.version, '0.1.0');
});

test('types/wit.d.ts declares every function of the WIT', () => {
  const wit = readFileSync(here('../wit/ackbar.wit'), 'utf8');
  const dts = readFileSync(here('../types/wit.d.ts'), 'utf8');
  const version = wit.match(/^package ackbar:plugin@([\d.]+);/m)[1];
  const camel = (s) => s.replace(/-(\w)/g, (_, c) => c.toUpperCase());
  let count = 0;
  for (const [, name, body] of wit.matchAll(/^interface ([\w-]+) \{([\s\S]*?)^\}/gm)) {
    const block = dts.split(`declare module 'ackbar:plugin/${name}@${version}'`)[1]?.split('declare module')[0];
    assert.ok(block, `no declare module for ${name}@${version}`);
    for (const [, fn] of body.matchAll(/^ {4}([\w-]+): func\(/gm)) {
      assert.match(block, new RegExp(`export function ${camel(fn)}\\(`), `${name}.${fn}`);
      count++;
    }
  }
  assert.equal(count, 7);
});
