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
}

export class Record {
  readonly key: Bytes | null;
  readonly value: Bytes | null;
  readonly headers: Header[];
  readonly timestamp: number;
  readonly offset: number;
  readonly topic: string;
  readonly partition: number;
  readonly index: number;
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

export function transform(fn: (record: Record) => Outcome): Exports;
export function transform<S>(
  fn: (state: S, record: Record) => Outcome,
  options: { init: () => S },
): Exports;

export interface Exports {
  init(): void;
  process(ctx: BatchContext, records: Bytes): Bytes;
  onTimers(ctx: BatchContext, timers: Bytes): Bytes;
}
