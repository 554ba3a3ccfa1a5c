// edge/src/token.js writes exactly the tokens in tests/golden/token_vectors.json (which the
// origin's verifier checks too), and preview signatures verify only for their own value.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './support.mjs';
import { previewSignature, signDecision, tokenPayload, verifyPreview } from '../../edge/src/token.js';

const vectors = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/golden/token_vectors.json'), 'utf8'));

test('decision tokens match the committed vectors byte for byte', async () => {
  assert.ok(vectors.length >= 3);
  for (const v of vectors) {
    assert.equal(tokenPayload(v.decision, v.issued_ms), v.payload_json);
    assert.match(v.payload_json, /^[\x20-\x7e]*$/, 'payload JSON is pure ASCII');
    assert.equal(await signDecision(v.secret, v.decision, v.issued_ms), v.token);
    assert.equal(v.token.split('.')[0], v.payload_b64);
  }
});

test('preview signatures are bound to their value and secret', async () => {
  const sig = await previewSignature('k', 'hero:sale');
  assert.equal(await verifyPreview('k', 'hero:sale', sig), true);
  assert.equal(await verifyPreview('k', 'hero:camping', sig), false);
  assert.equal(await verifyPreview('other', 'hero:sale', sig), false);
  assert.equal(await verifyPreview('k', 'hero:sale', null), false);
});
