// edge/src/token.js writes exactly the tokens in tests/golden/token_vectors.json (which the
// origin's verifier checks too), and preview signatures verify only for their own value.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
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

test('signatures are HMAC-SHA256 as node:crypto computes it, across key and message block boundaries', async () => {
  // Every message length up to past two blocks (ASCII), then non-ASCII text, with keys shorter
  // than, equal to and longer than a block (an empty secret never signs: pages pass through):
  // the cached key, UTF-8 and base64url around WebCrypto.
  const ascii = (n, seed) => Array.from({ length: n }, (_, i) => String.fromCharCode(0x20 + ((i * 31 + seed * 17) % 95))).join('');
  const cases = [];
  for (const keyLength of [1, 32, 63, 64, 65, 200]) {
    for (let length = 0; length <= 140; length++) cases.push([ascii(keyLength, length), ascii(length, keyLength)]);
  }
  cases.push(['schlüssel ☃', 'hero:café,promo:naïve'], ['k'.repeat(300), '☃'.repeat(100)]);
  for (const [secret, value] of cases) {
    const expected = crypto.createHmac('sha256', secret).update(`fp_preview\x1f${value}`).digest('base64url');
    assert.equal(await previewSignature(secret, value), expected, `key ${JSON.stringify(secret)}, value ${JSON.stringify(value)}`);
  }
});
