// Write tests/golden/token_vectors.json: decision tokens made by edge/src/token.js, for the
// origin's verifier (origin/tokens.py) and tests/js/token.test.mjs to check byte for byte.
//   node edge/token_vectors.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { signDecision, tokenPayload, base64url } from './src/token.js';

const OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tests', 'golden', 'token_vectors.json');

const CASES = [
  ['firstpaint-test-secret', { decision_id: '3f2a9c1d0b8e4f6a9d7c5b3a1e0f2d4c', slot: 'hero', variant: 'morning_run', propensity: 0.9125, model_version: '20261125T210000Z-3f2a9c1d' }, 1795609800000],
  ['firstpaint-test-secret', { decision_id: 'd-0001', slot: 'promo', variant: 'bundle', propensity: 0.20922469179793984, model_version: '20261125T210000Z-3f2a9c1d' }, 1795609800001],
  ['firstpaint-test-secret', { decision_id: 'd-holdout', slot: 'hero', variant: 'default', propensity: 1, model_version: 'starter' }, 1795609800002],
  ['another secret, with spaces and ü', { decision_id: 'd-ünïcode-☃', slot: 'hero', variant: 'sale', propensity: 0.0125, model_version: 'v1' }, 1700000000000],
  ['s', { decision_id: 'e', slot: 'hero', variant: 'camping', propensity: 1e-7, model_version: 'm' }, 0],
];

const vectors = [];
for (const [secret, decision, issuedMs] of CASES) {
  const payload = tokenPayload(decision, issuedMs);
  vectors.push({
    secret,
    decision,
    issued_ms: issuedMs,
    payload_json: payload,
    payload_b64: base64url(new TextEncoder().encode(payload)),
    token: await signDecision(secret, decision, issuedMs),
  });
}
fs.writeFileSync(OUT, `${JSON.stringify(vectors, null, 1)}\n`);
console.log(`wrote ${vectors.length} vectors to ${path.relative(process.cwd(), OUT)}`);
