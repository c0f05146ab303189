/// <reference path="./wit.d.ts" />
// @ackbar/guest: the guest API of wit/ackbar.wit (ackbar:plugin@0.1.0). Inside a component the
// functions call the host; in Node they are recorded by '@ackbar/guest/testing'.

/** A Kafka record header. `value` is null for a header without a value (not the same as empty). */
export interface Header {
  key: string;
  value: Uint8Array | null;
}

/**
 * One Kafka record, as `handle` receives it. With QuickJS (the default engine) `offset` and
 * `timestamp` are numbers and a missing value is `null`; with StarlingMonkey they are bigints
 * and `undefined`: test optional fields with `== null`.
 */
export interface Message {
  topic: string;
  partition: number;
  offset: number | bigint;
  /** Milliseconds since the Unix epoch, when the broker has one. */
  timestamp: number | bigint | null | undefined;
  /** null for a record without a key. */
  key: Uint8Array | null | undefined;
  /** null for a record without a value (a tombstone). */
  payload: Uint8Array | null | undefined;
  headers: Header[];
  /** 1 on first delivery; +1 each time the host redelivers the message after a nack. */
  attempt: number;
}

/**
 * How a message is settled. `ack`: done, commit it. `nack`: not done, delivered again after a
 * backoff. `reject`: done but unprocessable, committed (and dead-lettered where configured).
 */
export type Decision = 'ack' | 'nack' | 'reject';

/** A log level; the host's filter (`ACKBAR_LOG`, default `info`) decides which are written. */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Bytes, or a string sent as UTF-8. */
export type Bytes = Uint8Array | string;

/** A record for `send`. Missing fields: no key, no payload (a tombstone), no headers, and the
 * key chooses the partition. */
export interface OutputRecord {
  /** One of the pipeline's `outputs`. */
  topic: string;
  key?: Bytes | null;
  payload?: Bytes | null;
  headers?: { key: string; value?: Bytes | null }[];
  partition?: number | null;
}

/**
 * A handler failure: `throw retry(text)` (transient: redelivery may succeed) or
 * `throw fatal(text)` (permanent: under NACK_ON_ERROR the message is rejected). Any other
 * exception, an `Error` included, is a trap: the instance is replaced and the call counts as
 * failed. Not an `Error` subclass: QuickJS traps on every thrown `Error`. A plain
 * `{ tag: 'retry' | 'fatal', val }` thrown works the same.
 */
export class HandlerError {
  constructor(tag: 'retry' | 'fatal', val: string);
  readonly tag: 'retry' | 'fatal';
  readonly val: string;
}

/** A transient failure (`err(retry(text))`): `throw retry('database down')`. */
export function retry(text: string): HandlerError;
/** A permanent failure (`err(fatal(text))`): `throw fatal('no such customer')`. */
export function fatal(text: string): HandlerError;

/** Why `send` refused a record; the call goes on, the handler decides what it means. */
export class SendError extends Error {
  constructor(tag: SendError['tag'], val?: string);
  /**
   * `topic-not-allowed`: not among the pipeline's `outputs`. `limit-exceeded`: over
   * `max_outputs_per_call` / `max_output_bytes_per_call`. `invalid`: an empty topic, a negative
   * partition. `no-message`: called outside a `handle` call.
   */
  readonly tag: 'topic-not-allowed' | 'limit-exceeded' | 'invalid' | 'no-message';
  /** The host's explanation (absent for `no-message`). */
  readonly val?: string;
}

/** Settles the current message as acknowledged. The first decision made for a message wins. */
export function ack(): void;
/** Settles the current message as not acknowledged: it is delivered again after a backoff. */
export function nack(): void;
/** Settles the current message as rejected (committed; dead-lettered where configured). */
export function reject(): void;
/** Settles the current message with `decision` and ends the `handle` call at once, from any
 * depth. Never returns. */
export function interrupt(decision: Decision): never;
/** Writes `text` to the host's log, tagged with the pipeline, topic, partition and offset. */
export function log(level: Level, text: string): void;
/**
 * Adds `record` to what this attempt publishes: written only if the attempt settles the message
 * as handled (an ack, explicit or by the policy). Throws a `SendError` if the host refuses it.
 */
export function send(record: OutputRecord): void;
/** `send({ topic, key, payload })`: no headers, the key chooses the partition. */
export function sendTo(topic: string, key: Bytes | null, payload: Bytes | null): void;

/** Decodes UTF-8 (QuickJS has no TextDecoder); invalid bytes become U+FFFD, or throw a
 * TypeError with `{ fatal: true }`. null and undefined decode to ''. */
export function decodeUtf8(bytes: Uint8Array | null | undefined, options?: { fatal?: boolean }): string;
/** Encodes a string as UTF-8 (QuickJS has no TextEncoder). */
export function encodeUtf8(text: string): Uint8Array;

/** What a handler module exports: `export function handle(msg) { ... }`. Return nothing to
 * leave the decision to the ack policy, or a decision to settle with. */
export type Handle = (msg: Message) => Decision | null | undefined | void;
