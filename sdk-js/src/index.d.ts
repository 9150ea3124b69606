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

/** Binds the component's `sluice:transform/state@0.2.1` import. */
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
