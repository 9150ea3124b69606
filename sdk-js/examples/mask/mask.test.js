// The JS mask against the shared case table, natively: `node --test`.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from 'sluice-sdk/testing';
import { mask, maskBatch, setup } from './mask.js';

const cases = new URL('../../../plugins/mask/cases.json', import.meta.url);

test('the case table, a batch at a time (what the component runs)', () => {
  new Harness(maskBatch, { init: setup, batch: true }).runSuites(readFileSync(cases, 'utf8'));
});

test('the case table, record by record', () => {
  new Harness(mask, { init: setup }).runSuites(readFileSync(cases, 'utf8'));
});

test('a bad mask_char fails init', () => {
  assert.throws(() => new Harness(mask, { init: setup }).config('mask_char', 'ab').runValues([]), /mask_char/);
});
