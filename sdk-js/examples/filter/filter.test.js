// The JS filter against the shared case table, natively: `node --test`.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from 'sluice-sdk/testing';
import { filter, setup } from './filter.js';

const cases = new URL('../../../plugins/filter/cases.json', import.meta.url);

test('the case table', () => {
  new Harness(filter, { init: setup }).runSuites(readFileSync(cases, 'utf8'));
});

test('a missing field fails init', () => {
  assert.throws(() => new Harness(filter, { init: setup }).runValues([]), /field/);
});
