// The snippet's branches of features.js and policy.js (what is left once its build drops the
// statements labelled `EDGE:`) give what the edge's give: the same features for the golden and
// for fuzzed contexts, the same percent-decoding of any escapes, the same choices for any
// well-formed ids. The modules are bundled here with the snippet's SNIPPET_BRANCHES, but with the
// edge's time zones (the snippet's stand-in knows only the browser's own zone; the golden
// vectors run through the snippet's real bundle in Chromium, tests/test_browser_policy.py).
// Seeded and bounded.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { SNIPPET_BRANCHES } from '../../browser/build.mjs';
import { decode, features } from '../../edge/src/features.js';
import { choose } from '../../edge/src/policy.js';
import { ROOT, rng, starterModel } from './support.mjs';

const outfile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fp-snippet-branches-')), 'policy.mjs');
await esbuild.build({
  ...SNIPPET_BRANCHES,
  stdin: {
    contents: 'export { decode, features } from "./edge/src/features.js"; export { choose } from "./edge/src/policy.js";',
    resolveDir: ROOT,
  },
  bundle: true,
  format: 'esm',
  outfile,
  logLevel: 'warning',
});
const snippet = await import(pathToFileURL(outfile).href);
test.after(() => fs.rmSync(path.dirname(outfile), { recursive: true, force: true }));

const golden = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/golden/cases.json'), 'utf8'));
const MODEL = starterModel;

const pick = (next, list) => list[Math.floor(next() * list.length)];
const HEX = '0123456789abcdefABCDEF';
// Escapes that are, or nearly are, UTF-8: every lead and continuation class, overlong forms,
// surrogates, beyond U+10FFFF, truncated and malformed ones, and plain characters between.
const ESCAPE_PIECES = ['%', '%2', '%zz', '%41', '%7f', '%80', '%bf', '%c0', '%c2', '%df', '%e0', '%ed', '%ef', '%f0', '%f4', '%f5', '%ff', '%9f', '%a0', '+', 'a', '=', '&', 'é', '😀'];

function escapes(next) {
  let s = '';
  for (let n = Math.floor(next() * 12); n > 0; n--) {
    s += next() < 0.7 ? pick(next, ESCAPE_PIECES) : `%${pick(next, HEX)}${pick(next, HEX)}`;
  }
  return s;
}

test('the snippet decodes every escape as the edge does (well-formed text)', () => {
  const next = rng(3);
  for (let i = 0; i < 50000; i++) {
    const s = escapes(next);
    assert.equal(snippet.decode(s), decode(s), JSON.stringify(s));
  }
});

test('the snippet finds the features of every golden context as the edge does', () => {
  for (const c of golden) {
    const edge = features(c.context, MODEL.features);
    assert.deepEqual(snippet.features(c.context, MODEL.features), [...edge].map((f) => [...f]), c.id);
  }
});

const UAS = ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Safari/604.1', 'Mozilla/5.0 (Linux; Android 14) Chrome/156.0 Mobile', 'Googlebot/2.1', ''];
const URLS = ['https://trailhead.example/', 'https://trailhead.example/running?utm_source=', '/camping?utm_medium=', 'http://[::1]/?utm_campaign='];

test('the snippet finds the features of fuzzed contexts as the edge does', () => {
  const next = rng(5);
  for (let i = 0; i < 5000; i++) {
    const context = {
      url: pick(next, URLS) + escapes(next) + (next() < 0.5 ? `&utm_source=${escapes(next)}` : ''),
      referrer: next() < 0.5 ? `https://www.${pick(next, ['google.com', 'facebook.com', 'trailhead.example', 'mail.yahoo.com'])}/${escapes(next)}` : '',
      user_agent: pick(next, UAS) + (next() < 0.3 ? ` fuzz/${i}` : ''),
      accept_language: pick(next, ['en-US,en;q=0.9', 'DE', 'fr_CA', '']),
      timezone: pick(next, ['America/New_York', 'UTC', 'Nope/Zone', 'europe/paris']),
      now_ms: 1795609800000 + Math.floor(next() * 864e5 * 30),
      returning: pick(next, [true, false, undefined]),
    };
    const edge = features(context, MODEL.features).map((f) => [...f]);
    assert.deepEqual(snippet.features(context, MODEL.features), edge, JSON.stringify(context));
  }
});

test('the snippet makes the edge’s choice for any well-formed ids', () => {
  const next = rng(9);
  const active = features(golden[0].context, MODEL.features);
  const text = () => Array.from({ length: Math.floor(next() * 8) }, () => String.fromCodePoint(pick(next, [0x41, 0x7f, 0xe9, 0x7ff, 0x800, 0xffff, 0x10000, 0x1f600, 0x10ffff]))).join('');
  for (let i = 0; i < 20000; i++) {
    const visitor = text();
    const decision = text() || 'd';
    for (const slot of Object.keys(MODEL.slots)) {
      const edge = choose(MODEL, active, slot, visitor, decision);
      assert.deepEqual(snippet.choose(MODEL, active, slot, visitor, decision), edge, JSON.stringify([visitor, decision]));
    }
  }
});

test('a lone surrogate in an id makes the snippet fall back, not choose otherwise', () => {
  const active = features(golden[0].context, MODEL.features);
  assert.throws(() => snippet.choose(MODEL, active, 'hero', 'v\ud800', 'd'), URIError);
});
