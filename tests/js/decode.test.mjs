// features.js's percent-decoding at the edge against the contract's definition spelled out the
// way model_export/features.py does it: `+` → space; the bytes of the text (each `%XY` one byte,
// every other character its UTF-8, lone surrogates by `surrogatepass`) decoded by a strict UTF-8
// decoder (TextDecoder, fatal); the text itself when a `%` starts no escape or decoding fails.
// Seeded and bounded; unlike tests/js/snippet_branches.test.mjs, lone surrogates are included.
import test from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '../../edge/src/features.js';
import { rng } from './support.mjs';

const HEX = '0123456789abcdefABCDEF';
const strict = new TextDecoder('utf-8', { fatal: true });

// UTF-8 bytes of one UTF-16 code unit or pair; a lone surrogate as its own 3 bytes.
function utf8(code) {
  if (code < 0x80) return [code];
  if (code < 0x800) return [0xc0 | (code >> 6), 0x80 | (code & 63)];
  if (code < 0x10000) return [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63)];
  return [0xf0 | (code >> 18), 0x80 | ((code >> 12) & 63), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63)];
}

function reference(s) {
  s = s.replaceAll('+', ' ');
  if (!s.includes('%')) return s;
  const bytes = [];
  for (let i = 0; i < s.length; ) {
    if (s[i] === '%') {
      if (!HEX.includes(s[i + 1] ?? 'x') || !HEX.includes(s[i + 2] ?? 'x')) return s;
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const code = s.codePointAt(i); // a lone surrogate is returned as it is
      bytes.push(...utf8(code));
      i += code > 0xffff ? 2 : 1;
    }
  }
  try {
    return strict.decode(new Uint8Array(bytes));
  } catch {
    return s;
  }
}

// Escapes at every boundary of table 3-7, truncated and malformed ones, lone and paired
// surrogates, and plain characters between.
const PIECES = [
  '%', '%2', '%zz', '%41', '%7f', '%80', '%bf', '%c0', '%c1', '%c2', '%df', '%e0', '%a0', '%9f', '%ed', '%ef', '%f0', '%90',
  '%8f', '%f4', '%f5', '%ff', '%E2%82%AC', '%F0%9F%98%80', '%ED%9F%BF', '%ED%A0%80', '%F4%8F%BF%BF', '%F4%90%80%80',
  '+', 'a', '=', '&', 'é', '😀', '\ud800', '\udbff', '\udc00', '\udfff', '\ud83d\ude00',
];

test('edge percent-decoding is strict UTF-8 over the bytes Python sees, lone surrogates included', () => {
  const next = rng(17);
  for (let i = 0; i < 40000; i++) {
    let s = '';
    for (let n = Math.floor(next() * 10); n > 0; n--) {
      const r = next();
      if (r < 0.6) s += PIECES[Math.floor(next() * PIECES.length)];
      else if (r < 0.85) s += `%${HEX[Math.floor(next() * HEX.length)]}${HEX[Math.floor(next() * HEX.length)]}`;
      else s += String.fromCharCode(Math.floor(next() * 0x10000));
    }
    assert.equal(decode(s), reference(s), JSON.stringify(s));
  }
});
