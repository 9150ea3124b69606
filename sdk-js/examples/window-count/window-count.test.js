// The JS window-count against the shared case table and a stream, natively: `node --test`.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from 'sluice-sdk/testing';
import { close, count, setup } from './window-count.js';

const cases = new URL('../../../plugins/window-count/cases.json', import.meta.url);
const harness = () => new Harness(count, { init: setup, onTimer: close });
const at = (key, timestamp) => ({ key, value: 'x', timestamp });

test('the case table', () => {
  harness().runSuites(readFileSync(cases, 'utf8'));
});

test('out-of-order events count per window; closed windows leave nothing', () => {
  const s = harness().config('window_ms', '1000').allowedLateness(500).stream();
  assert.deepEqual(s.push([at('a', 1100), at('b', 1900), at('a', 1400)]).fired, []);
  assert.deepEqual(s.push([at('a', 2300), at('a', 1850)]).fired, []);
  const got = s.push([at('b', 2600)]).fired.map((f) => JSON.parse(f.values()[0]));
  assert.deepEqual(got, [
    { key: 'a', window_start: 1000, window_end: 2000, count: 3 },
    { key: 'b', window_start: 1000, window_end: 2000, count: 1 },
  ]);
  assert.deepEqual(s.push([at('a', 1999)]).outcomes.map((o) => o.kind), ['late']);
  const fired = s.advance(10_000);
  assert.equal(fired.length, 2);
  assert.equal(fired[0].outcome.emitted[0].timestamp, 3000);
  assert.equal(s.state().size, 0);
  assert.deepEqual(s.timers(), []);
});

test('a bad window size fails init', () => {
  assert.throws(() => harness().config('window_ms', '0').run([]), /window_ms/);
});
