export class SluiceError extends Error {}

export const Level: {
  readonly TRACE: 'trace';
  readonly DEBUG: 'debug';
  readonly INFO: 'info';
  readonly WARN: 'warn';
  readonly ERROR: 'error';
};
export type Level = (typeof Level)[keyof typeof Level];

export type Bytes = Uint8Array;
export type Header = [string, Bytes | null];

export interface BatchContext {
  topic: string;
  partition: number;
  baseOffset: bigint;
  baseTimestamp: bigint;
  recordCount: number;
  /** The partition's watermark when the call starts (the smallest s64 until there is one). */
  watermark: bigint;
  /** Event times (ms) when the deployment takes them from a JSON field; else empty. */
  eventTimes: bigint[] | BigInt64Array;
}

/** The watermark before there is one. */
export const NO_WATERMARK: number;

export class Record {
  readonly key: Bytes | null;
  readonly value: Bytes | null;
  readonly headers: Header[];
  readonly timestamp: number;
  readonly offset: number;
  readonly topic: string;
  readonly partition: number;
  readonly index: number;
  /** The event time (ms): the deployment's `event_time.field`, or else the timestamp. */
  readonly eventTime: number;
  /** The partition's watermark for this batch. */
  readonly watermark: number;
  /** The key, or the text of a JSON field of the value (name, dotted path, JSON pointer). */
  keyOrField(field?: string | null): Bytes | null;
  keyStr(): string | null;
  valueStr(): string | null;
  json(): unknown;
  header(key: string): Bytes | null;
}

export type Value = Bytes | string | null | unknown;

export class OutRecord {
  constructor(
    value: Value,
    options?: { key?: Value; headers?: [string, Value][]; timestamp?: number | null },
  );
}

export class Outcome {
  static keep(): Outcome;
  static keepTo(output: string): Outcome;
  static keepWithValue(value: Value): Outcome;
  /** The input with spans of its value replaced (byte offsets, in order). */
  static keepSpliced(spans: [number, number, Bytes | string][]): Outcome;
  static emit(record: OutRecord): Outcome;
  static emitTo(output: string, record: OutRecord): Outcome;
  static drop(): Outcome;
  static reject(reason: string): Outcome;
  andEmit(record: OutRecord, output?: string | null): Outcome;
}

export interface Host {
  log(level: Level, message: string): void;
  config(key: string): string | undefined;
  outputs(): string[];
  lookup(table: string, key: Bytes): Bytes | undefined;
}

export function bindHost(host: Host): void;
export function config(key: string): string | null;
export function outputs(): string[];
export function lookup(table: string, key: Bytes | string): Bytes | null;
export function log(level: Level, message: string): void;

/** A timer that fired. */
export class Timer {
  readonly key: Bytes;
  /** The time it was set for (ms). */
  readonly at: number;
  /** The watermark that fired it (at least `at`). */
  readonly watermark: number;
  keyStr(): string | null;
}

export type Key = Bytes | string;

/** Keyed state of the input partition (stateful plugins: built with `--stateful`). */
export const state: {
  get(key: Key): Bytes | null;
  put(key: Key, value: Value): void;
  delete(key: Key): void;
  getJson(key: Key): unknown;
  putJson(key: Key, value: unknown): void;
  /** [key, value] pairs of the keys starting with `prefix`, in byte order. */
  scan(prefix?: Key, page?: number): Iterable<[Bytes, Bytes]>;
};

/** Event-time timers: `onTimer` gets one once the partition's watermark reaches `atMs`. */
export const timers: {
  set(key: Key, atMs: number): void;
  cancel(key: Key, atMs: number): void;
};

export interface StateHost {
  get(key: Bytes): Bytes | undefined;
  scan(prefix: Bytes, startAfter: Bytes | undefined, limit: number): Bytes;
  apply(ops: Bytes): void;
}

/** Binds the component's `sluice:transform/state@0.2.2` import. */
export function bindState(host: StateHost): void;

/** The element at a name, dotted path or JSON pointer of a parsed JSON value. */
export function path(value: unknown, field: string): unknown;

export function transform(
  fn: (record: Record) => Outcome,
  options?: { onTimer?: (timer: Timer) => Outcome },
): Exports;
export function transform<S>(
  fn: (instance: S, record: Record) => Outcome,
  options: { init: () => S; onTimer?: (instance: S, timer: Timer) => Outcome },
): Exports;

export interface Exports {
  init(): void;
  process(ctx: BatchContext, records: Bytes): Bytes;
  onTimers(ctx: BatchContext, timers: Bytes): Bytes;
}

/** The records of one `process` call (`transformBatch`): unanswered records are kept. */
export class Batch {
  readonly length: number;
  readonly ctx: BatchContext;
  value(i: number): Bytes | null;
  key(i: number): Bytes | null;
  keep(i: number, output?: string | null): void;
  /** Spans of record i's value replaced: [start, end, replacement], byte offsets in order. */
  splice(i: number, spans: [number, number, Bytes | string][], output?: string | null): void;
  emit(i: number, record: OutRecord, output?: string | null): void;
  reject(i: number, reason: string): void;
  drop(i: number): void;
}

export function transformBatch(
  fn: (batch: Batch) => void,
  options?: { onTimer?: (timer: Timer) => Outcome },
): Exports;
export function transformBatch<S>(
  fn: (instance: S, batch: Batch) => void,
  options: { init: () => S; onTimer?: (instance: S, timer: Timer) => Outcome },
): Exports;

/** Binds the component's `sluice:transform/text@0.2.2` import. */
export function bindText(host: unknown): void;

/** The host's text primitives; flat number arrays (Uint32Array in the component). */
export namespace text {
  const KEY: 0;
  const VALUE: 1;
  const OBJECT: 0;
  const ARRAY: 1;
  const KEY_TOKEN: 2;
  const STRING: 3;
  const SCALAR: 4;
  const INVALID: 5;
  const ESCAPED: 16;
  class Pattern {
    constructor(sources: string | string[]);
    isMatch(haystack: Bytes): boolean;
    /** [index, start, end, ...] */
    findAll(haystack: Bytes): ArrayLike<number>;
    /** [record, index, start, end, ...] over the running call's records. */
    findInBatch(part?: 0 | 1): ArrayLike<number>;
    /** The same aware of JSON: strings searched on their own, members under `names` as
     * [record, MEMBER + kind, start, end], a JSON record with escapes as [record, ESCAPES, 0, 0]. */
    findInJsonBatch(part?: 0 | 1, names?: Pattern | null): ArrayLike<number>;
  }
  /** [record, kind, start, end, ...] over the running call's records. */
  function jsonIndexBatch(part?: 0 | 1): ArrayLike<number>;
  /** [kind, start, end, ...] */
  function jsonIndex(document: Bytes): ArrayLike<number>;
  /** [start, end, ...] of each record's key (0) or value (1) in the call's records (null part
   * 2**32 - 1); null natively. */
  function partSpansBatch(part: 0 | 1): ArrayLike<number> | null;
  const MEMBER: 64;
  const ESCAPES: 255;
  function looksLikeJson(b: Bytes): boolean;
  function sha256(data: Bytes): Bytes;
  function base64Encode(data: Bytes): string;
  function hexEncode(data: Bytes): string;
}
