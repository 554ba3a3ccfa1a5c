// features.js under fuzz: any header or URL string, any context shape → a well-formed feature
// list, never an exception. Seeded (the failing seed and input are printed), bounded in count;
// the number of inputs tried goes to build/test-artifacts/fuzz_features_js.json.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { featureNames, features, isBot, splitUrl } from '../../edge/src/features.js';
import { ROOT, rng, starterModel } from './support.mjs';

const SPEC = starterModel.features;
const NAMES = new Set(featureNames(SPEC));
const CATEGORICAL = SPEC.fields.filter((f) => f.kind === 'categorical').map((f) => f.name);
const KEYS = ['url', 'referrer', 'site_host', 'user_agent', 'ch_ua_mobile', 'accept_language', 'country', 'timezone', 'now_ms', 'returning', 'session'];
const tried = {};

const PIECES = [
  '%', '%zz', '%E2%82', '%C0%80', '%F0%9F%98%80', '+', '?', '#', '&', '=', '://', 'http://', 'https://[::1', '@', ':', '/',
  'utm_source=', 'utm_medium=email', 'www.', 'google.com', '"><script>alert(1)</script>', 'javascript:', '\u0000', '\ud800',
  '\udfff', '😀', 'İ', 'ß', 'K', '\u2028', ';q=0.9', 'en-US', 'zh_Hant', 'Europe/Paris', 'europe/paris', 'Etc/GMT+5',
  '?1', '?0', 'Mozilla/5.0 (iPhone', 'Googlebot', ' ', '\t', '\n', '\r\n', '\f', '\v',
];

function randomString(next, max = 60) {
  let s = '';
  const n = Math.floor(next() * max);
  for (let i = 0; i < n; i++) {
    const r = next();
    if (r < 0.35) s += PIECES[Math.floor(next() * PIECES.length)];
    else if (r < 0.6) s += String.fromCharCode(Math.floor(next() * 0x80));
    else if (r < 0.8) s += String.fromCharCode(Math.floor(next() * 0x100)); // raw bytes read as latin-1
    else s += String.fromCharCode(Math.floor(next() * 0x10000)); // any UTF-16 unit, lone surrogates too
  }
  return s;
}

function randomValue(next, depth = 0) {
  const r = next();
  if (r < 0.45) return randomString(next);
  if (r < 0.55) return [null, true, false, undefined, NaN, Infinity, -0][Math.floor(next() * 7)];
  if (r < 0.7) return [0, -1, 1e21, 2 ** 53, -(2 ** 60), 1.5, Date.now(), 253402300800000, -62135596800001][Math.floor(next() * 9)];
  if (depth > 2) return null;
  if (r < 0.85) return Array.from({ length: Math.floor(next() * 4) }, () => randomValue(next, depth + 1));
  const object = {};
  for (let i = Math.floor(next() * 4); i > 0; i--) {
    const key = next() < 0.7 ? ['categories', 'price', 'pages', 'last_event', ...KEYS][Math.floor(next() * 15)] : randomString(next, 8);
    object[key] = randomValue(next, depth + 1);
  }
  return object;
}

function randomContext(next) {
  const context = {};
  for (const key of KEYS) if (next() < 0.6) context[key] = next() < 0.7 && key !== 'session' ? randomString(next) : randomValue(next);
  return context;
}

function checkActive(active, input) {
  const names = active.map(([name]) => name);
  assert.equal(new Set(names).size, names.length, `duplicate feature for ${JSON.stringify(input)}`);
  for (const name of names) assert.ok(NAMES.has(name), `unknown feature ${name} for ${JSON.stringify(input)}`);
  for (const field of CATEGORICAL) {
    assert.equal(names.filter((n) => n.startsWith(`${field}=`)).length, 1, `${field} for ${JSON.stringify(input)}`);
  }
  for (const [, value] of active) assert.ok(Number.isFinite(value) && Math.abs(value) <= 1);
}

function fuzz(name, count, seed, body) {
  test(`${name}: ${count} inputs`, () => {
    const next = rng(seed);
    for (let i = 0; i < count; i++) {
      const input = body.make(next);
      try {
        body.check(input);
      } catch (error) {
        error.message = `seed ${seed}, input ${i}: ${error.message}`;
        throw error;
      }
      tried[name] = (tried[name] || 0) + 1;
    }
  });
}

fuzz('contexts', 6000, 7, { make: randomContext, check: (context) => checkActive(features(context, SPEC), context) });
fuzz('non-object contexts', 1000, 11, { make: (next) => randomValue(next), check: (value) => checkActive(features(value, SPEC), value) });
fuzz('urls', 4000, 13, {
  make: (next) => randomString(next, 80),
  check: (url) => {
    const [host, pathPart, params] = splitUrl(url);
    assert.ok(host === null || typeof host === 'string');
    assert.ok(typeof pathPart === 'string' && pathPart.length > 0);
    assert.ok(params instanceof Map || (params && typeof params === 'object'));
    assert.equal(typeof isBot(url, SPEC.rules), 'boolean');
  },
});

test.after(() => {
  const out = path.join(ROOT, 'build', 'test-artifacts');
  fs.mkdirSync(out, { recursive: true });
  const total = Object.values(tried).reduce((a, b) => a + b, 0);
  fs.writeFileSync(path.join(out, 'fuzz_features_js.json'), `${JSON.stringify({ total, ...tried }, null, 2)}\n`);
  console.log(`features.js fuzz: ${total} inputs tried ${JSON.stringify(tried)}`);
});
