// The raw WIT imports of wit/ackbar.wit (ackbar:plugin@0.1.0) as a component's JavaScript sees
// them. Derived from `jco types wit/ackbar.wit -n handler`, widened for both engines: QuickJS
// (componentize-qjs) passes `s64` as a number and `none` as null, StarlingMonkey
// (componentize-js) as a bigint and undefined. Handlers normally use '@ackbar/guest' instead.

declare module 'ackbar:plugin/types@0.1.0' {
  /** A Kafka record header. Kafka allows a header without a value. */
  export interface Header {
    /** The header name. Kafka allows several headers with the same name. */
    key: string;
    /** `none` for a header without a value, which is not the same as an empty value. */
    value?: Uint8Array | null;
  }

  /** One Kafka record, as delivered to the handler. */
  export interface Message {
    /** The topic the record was read from. */
    topic: string;
    /** The record's partition of `topic`. */
    partition: number;
    /** The record's offset in its partition (a number in QuickJS, a bigint in StarlingMonkey). */
    offset: number | bigint;
    /** Milliseconds since the Unix epoch (create or log-append time), when the broker has one. */
    timestamp?: number | bigint | null;
    /** `none` for a record without a key. */
    key?: Uint8Array | null;
    /** The record's value; `none` for a record without one (a tombstone). */
    payload?: Uint8Array | null;
    /** The record's headers, in the order the producer gave them. */
    headers: Header[];
    /** 1 on first delivery; +1 each time this host redelivers the message after a nack. */
    attempt: number;
  }

  /**
   * How a message is settled. `ack`: done, commit this offset. `nack`: not done, delivered
   * again after a backoff. `reject`: done but unprocessable, committed (and dead-lettered where
   * configured).
   */
  export type Decision = 'ack' | 'nack' | 'reject';

  /** A handler failure, thrown from `handle`. Both cases count as "handler failed". */
  export type HandlerError =
    /** A transient failure: redelivery may succeed. */
    | { tag: 'retry'; val: string }
    /** A permanent failure: under NACK_ON_ERROR the message is rejected, not redelivered. */
    | { tag: 'fatal'; val: string };
}

declare module 'ackbar:plugin/acker@0.1.0' {
  import type { Decision } from 'ackbar:plugin/types@0.1.0';
  /** Settle the current message as acknowledged. The first decision made wins. */
  export function ack(): void;
  /** Settle the current message as not acknowledged: it will be delivered again. */
  export function nack(): void;
  /** Settle the current message as rejected. */
  export function reject(): void;
  /** Settle the current message with `decision` and end the `handle` call at once. */
  export function interrupt(decision: Decision): never;
}

declare module 'ackbar:plugin/log@0.1.0' {
  /** How severe a log line is; the host's filter (`ACKBAR_LOG`, default info) picks levels. */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Write `text` at `level` to the host's log (cut at 4096 bytes, rate-limited). */
  export function log(level: Level, text: string): void;
}

declare module 'ackbar:plugin/producer@0.1.0' {
  import type { Header } from 'ackbar:plugin/types@0.1.0';
  /** One record to write. */
  export interface OutputRecord {
    /** The topic; it must be one of the pipeline's `outputs`. */
    topic: string;
    /** `none` for a record without a key. Records with the same key go to the same partition. */
    key?: Uint8Array | null;
    /** `none` for a record without a value (a tombstone). */
    payload?: Uint8Array | null;
    /** Headers, in order. */
    headers: Header[];
    /** A partition of `topic`; `none` lets the key choose (or spreads keyless records). */
    partition?: number | null;
  }
  /** Why a record was not accepted. The call goes on; the handler decides what it means. */
  export type SendError =
    | { tag: 'topic-not-allowed'; val: string }
    | { tag: 'limit-exceeded'; val: string }
    | { tag: 'invalid'; val: string }
    | { tag: 'no-message' };
  /**
   * Adds `output` to what this attempt publishes if it succeeds. A refusal is thrown: with
   * QuickJS, an Error whose `payload` is the `SendError`.
   */
  export function send(output: OutputRecord): void;
}

declare module 'ackbar:plugin/batch@0.1.0' {
  import type { Decision, HandlerError } from 'ackbar:plugin/types@0.1.0';
  /**
   * World `batch-handler` only: ends the current message of `handle-batch` with what `handle`
   * would have returned for it, and makes the next one current. `false`: stop, the host
   * delivers the rest again later. This package's handlers are of world `handler`.
   */
  export function finish(
    returned: { tag: 'ok'; val?: Decision | null } | { tag: 'err'; val: HandlerError },
  ): boolean;
}
