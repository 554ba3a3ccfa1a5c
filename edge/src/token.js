// Decision tokens (CONTRACT §9) and preview signatures: HMAC-SHA256 with FP_TOKEN_SECRET.
//
// Byte-exact token format (what the origin's `origin/tokens.py` verifies):
//   payload_json = JSON.stringify({"d": decision_id, "s": slot, "v": variant,
//                                  "p": propensity, "m": model_version, "t": issued_ms})
//                  — keys in exactly that order, no white space, numbers as ECMAScript writes
//                  them (`1`, `0.9125`), every non-ASCII character escaped as `\uXXXX`
//                  (as Python's json.dumps does), so both runtimes write the same bytes;
//   encoded      = base64url(UTF-8 bytes of payload_json), no `=` padding;
//   token        = encoded + "." + base64url(HMAC-SHA256(key = UTF-8 bytes of the secret,
//                                                        message = ASCII bytes of encoded)).
// The signature covers the encoded text, so a verifier never re-serializes the payload.
// tests/golden/token_vectors.json holds vectors made by this file.
//
// Preview signature: fp_sig = base64url(HMAC-SHA256(secret, "fp_preview" + "\x1f" + value)),
// value being the fp_preview parameter (`slot:variant[,slot:variant]`); the prefix keeps a
// preview signature from ever being a valid token signature and vice versa.

const encoder = new TextEncoder();
const keys = new Map();

/** base64url without padding. */
export function base64url(bytes) {
  let binary = '';
  for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// Keys, not promises, are kept between requests: workerd ties a pending promise to its request.
async function hmacKey(secret) {
  let key = keys.get(secret);
  if (!key) {
    key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    keys.clear(); // one secret per deployment; never let the map grow
    keys.set(secret, key);
  }
  return key;
}

async function hmac(secret, message) {
  return base64url(await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(message)));
}

/** The payload JSON of a token, byte for byte (see the format above). */
export function tokenPayload(decision, issuedMs) {
  const json = JSON.stringify({
    d: decision.decision_id,
    s: decision.slot,
    v: decision.variant,
    p: decision.propensity,
    m: decision.model_version,
    t: issuedMs,
  });
  return json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The signed token for one decision, issued at `issuedMs`. */
export async function signDecision(secret, decision, issuedMs) {
  const encoded = base64url(encoder.encode(tokenPayload(decision, issuedMs)));
  return `${encoded}.${await hmac(secret, encoded)}`;
}

/** The `fp_sig` value that authorizes the preview `value`. */
export function previewSignature(secret, value) {
  return hmac(secret, `fp_preview\x1f${value}`);
}

/** True when `signature` is the preview signature of `value` (compared in constant time). */
export async function verifyPreview(secret, value, signature) {
  const expected = await previewSignature(secret, value);
  if (typeof signature !== 'string' || signature.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ signature.charCodeAt(i);
  return diff === 0;
}
