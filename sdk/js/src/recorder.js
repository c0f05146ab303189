// The run in progress, shared by native.js and testing.js. Kept on globalThis so that two
// copies of the package (a handler and its test resolving different installs) still share it.
const CURRENT = Symbol.for('@ackbar/guest/current-run');

/** What `interrupt` throws natively; the harness catches it. */
export class Interrupt extends Error {
  constructor(decision) {
    super(`interrupt(${decision})`);
    this.name = 'Interrupt';
    this.decision = decision;
  }
}

/** The recording of the run in progress; outside one, a call is a mistake in the test. */
export function recorder(call) {
  const run = globalThis[CURRENT];
  if (run === undefined) {
    throw new Error(
      `@ackbar/guest: ${call}() was called outside a handle call: in Node, run the handler with ` +
        "run() from '@ackbar/guest/testing'",
    );
  }
  // interrupt() never returns in a component: nothing after it happens, even if caught.
  if (run.interrupted !== undefined) throw new Interrupt(run.interrupted);
  return run;
}

export function begin(outputs) {
  if (globalThis[CURRENT] !== undefined) {
    throw new Error('@ackbar/guest: run() was called from inside a handler run');
  }
  const run = { decisions: [], logs: [], sent: [], interrupted: undefined, outputs };
  globalThis[CURRENT] = run;
  return run;
}

export function end() {
  globalThis[CURRENT] = undefined;
}
