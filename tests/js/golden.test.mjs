// policy.js + features.js inside workerd reproduce every golden vector (tests/golden/).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, startWorker } from './support.mjs';
import { modelSha256 } from '../../edge/src/policy.js';

const golden = (name) => JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/golden', name), 'utf8'));
const model = golden('model.json');
const cases = golden('cases.json');
const TOLERANCE = 1e-6;

function assertClose(actual, expected, where) {
  assert.ok(Math.abs(actual - expected) <= TOLERANCE, `${where}: ${actual} vs ${expected}`);
}

test('policy.js and features.js reproduce every golden case inside workerd', async (t) => {
  const mf = await startWorker({}, { entry: path.join(ROOT, 'tests/js/golden_worker.js') });
  t.after(() => mf.dispose());
  const response = await mf.dispatchFetch('http://golden/decide', { method: 'POST', body: JSON.stringify({ model, cases }) });
  assert.equal(response.status, 200);
  const results = await response.json();
  assert.equal(results.length, cases.length);
  assert.ok(cases.length >= 100, 'the golden file holds the full case list');
  results.forEach(({ id, features, decision, choice }, i) => {
    const c = cases[i];
    assert.equal(id, c.id);
    assert.deepEqual(features.map(([name]) => name), c.features.map(([name]) => name), `${id}: feature names`);
    features.forEach(([name, value], j) => assertClose(value, c.features[j][1], `${id}: ${name}`));
    assert.equal(decision.variant, c.variant, `${id}: variant`);
    assert.equal(decision.holdout, c.holdout, `${id}: holdout`);
    assert.equal(decision.explored, c.explored, `${id}: explored`);
    assertClose(decision.propensity, c.propensity, `${id}: propensity`);
    assert.deepEqual(Object.keys(decision.scores), Object.keys(c.scores), `${id}: variants`);
    for (const v of Object.keys(c.scores)) {
      assertClose(decision.scores[v], c.scores[v], `${id}: score ${v}`);
      assertClose(decision.probabilities[v], c.probabilities[v], `${id}: probability ${v}`);
    }
    assert.deepEqual(decision.top_features.map(([name]) => name), c.top_features.map(([name]) => name), `${id}: top features`);
    decision.top_features.forEach(([name, value], j) => assertClose(value, c.top_features[j][1], `${id}: top ${name}`));
    assert.equal(decision.model_version, model.model_version);
    assert.equal(decision.decision_id, c.decision_id);
    const { slot, variant, propensity, holdout, forced, model_version, decision_id } = decision;
    assert.deepEqual(choice, { slot, variant, propensity, holdout, forced, model_version, decision_id }, `${id}: choose()`);
  });
});

test('the model checksum is computed over the same canonical JSON as Python', async (t) => {
  const mf = await startWorker({}, { entry: path.join(ROOT, 'tests/js/golden_worker.js') });
  t.after(() => mf.dispose());
  const response = await mf.dispatchFetch('http://golden/sha256', { method: 'POST', body: JSON.stringify({ model }) });
  const { sha256 } = await response.json();
  assert.equal(sha256, model.sha256);

  const check = async (m) => (await mf.dispatchFetch('http://golden/check', { method: 'POST', body: JSON.stringify({ model: m }) })).json();
  assert.deepEqual(await check(model), { ok: true });
  const tampered = structuredClone(model);
  tampered.slots.hero.bias.default += 0.5;
  assert.match((await check(tampered)).message, /sha256 does not match/);
  assert.match((await check({ ...model, format: 'firstpaint.model/2' })).message, /format must be/);
  const badDefault = structuredClone(model);
  badDefault.slots.hero.default = 'nope';
  badDefault.sha256 = await modelSha256(badDefault);
  assert.match((await check(badDefault)).message, /slots\.hero\.default "nope" is not among its variants/);
});
