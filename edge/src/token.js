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
let cachedKey = null; // {secret, key}: one secret per deployment, so one key per isolate

/** base64url without padding of a binary string (one character per byte, as `btoa` takes). */
function base64urlOfBinary(binary) {
  return btoa(binary).replace(/=+$/, '').replaceAll('+', '-').replaceAll('/', '_');
}

/** base64url without padding. */
export function base64url(bytes) {
  return base64urlOfBinary(String.fromCharCode(...new Uint8Array(bytes)));
}

// The key, not its promise, is kept between requests: workerd ties a pending promise to its
// request. Once imported it is used without an await (two tokens are signed on every page).
async function importKey(secret) {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  cachedKey = { secret, key };
  return key;
}

async function hmac(secret, message) {
  const key = cachedKey?.secret === secret ? cachedKey.key : await importKey(secret);
  return base64url(await crypto.subtle.sign('HMAC', key, encoder.encode(message)));
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
  // The payload is pure ASCII (see tokenPayload), so its UTF-8 bytes are its characters.
  const encoded = base64urlOfBinary(tokenPayload(decision, issuedMs));
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
