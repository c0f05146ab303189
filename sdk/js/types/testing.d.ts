// @ackbar/guest/testing: run a handler natively in Node and see what it did.
import type { Decision, Handle, Level, Message } from './index.js';

/** A record as `send` passed it to the host: strings encoded, missing fields null. */
export interface SentRecord {
  topic: string;
  key: Uint8Array | null;
  payload: Uint8Array | null;
  headers: { key: string; value: Uint8Array | null }[];
  partition: number | null;
}

/** How the `handle` call ended. */
export type End =
  /** `handle` returned: a decision, or null to leave it to the ack policy. */
  | { returned: Decision | null }
  /** `handle` threw a HandlerError (`retry(...)` / `fatal(...)`). */
  | { error: { tag: 'retry' | 'fatal'; val: string } }
  /** The handler called `interrupt(decision)`. */
  | { interrupted: Decision }
  /** Any other exception, or a return value that is not a decision: a trap for the host. */
  | { trapped: string };

/** Everything one `handle` call did. */
export class Run {
  readonly end: End;
  /** Every ack/nack/reject call, in order (the host keeps only the first). */
  readonly decisions: Decision[];
  readonly logs: { level: Level; text: string }[];
  /** Every record sent, in order (the host publishes them only if the attempt succeeds). */
  readonly sent: SentRecord[];
  /** What the handler threw, if anything. */
  readonly thrown: unknown;
  /** The first acker call, else an interrupt, else a returned decision; null: the policy decides. */
  settled(): Decision | null;
  /** Whether a log line contains `text` (or matches it). */
  logged(text: string | RegExp): boolean;
  /** The payloads sent to `topic`, in order. */
  sentTo(topic: string): Uint8Array[];
}

export interface RunOptions {
  /** The pipeline's output topics: a send to another one fails with `topic-not-allowed`.
   * Default: any topic is accepted. */
  outputs?: string[];
}

/** Calls the handler (the function, or a module exporting `handle`) and records what it did. */
export function run(handler: Handle | { handle: Handle }, msg: Message, options?: RunOptions): Run;

/**
 * A message like QuickJS delivers it: topic "test", partition 0, offset 0, attempt 1, no
 * timestamp, key or headers. Strings are encoded as UTF-8.
 */
export function message(
  payload?: Uint8Array | string | null,
  overrides?: Partial<Omit<Message, 'key' | 'headers'>> & {
    key?: Uint8Array | string | null;
    headers?: { key: string; value?: Uint8Array | string | null }[];
  },
): Message;
