// The feature spec `fp-features/1` (model_export/CONTRACT.md §2–§4): raw context → named,
// ordered features. A port of model_export/features.py; pure ES module, no Worker or DOM API,
// so the edge worker and the browser snippet import this very file.

import { runtimeZone, zoneTime } from './time_zones.js';

export { runtimeZone };

export const SPEC_VERSION = 'fp-features/1';

// Statements labelled `EDGE:` (here and in policy.js) run everywhere but in the browser
// snippet, whose build drops them (esbuild's dropLabels, browser/build.mjs): caches and
// exception-free paths that pay off over a worker's many requests, and would only be bytes on
// the wire before the snippet's one decision per page. The code after such a statement is what
// the snippet runs instead; both give the same features and decisions (golden vectors in workerd
// and, through the snippet's own bundle, in Chromium; tests/js/snippet_branches.test.mjs).

const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;
const COUNTRY = /^[A-Z]{2}$/;
const LANGUAGE = /^[a-z]{2,3}$/;
const TIMEZONE = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;
// The fields a spec may use, in the order rawValues() reports them; all categorical but these.
const FIELDS = [
  'referrer_class',
  'referrer_host',
  'utm_source',
  'utm_medium',
  'utm_campaign',
  'device',
  'os',
  'browser',
  'hour_sin',
  'hour_cos',
  'weekday',
  'country',
  'language',
  'visitor',
  'landing_section',
  'session_categories',
  'price_band',
  'session_pages',
  'last_event',
];
const OTHER_KINDS = { hour_sin: 'numeric', hour_cos: 'numeric', session_pages: 'numeric', session_categories: 'multi_hot' };

/** A feature spec that no runtime could apply consistently. */
export class SpecError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SpecError';
  }
}

/** Throw SpecError unless `spec` is a well-formed `fp-features/1` spec. */
export function validateSpec(spec) {
  if (!spec || spec.version !== SPEC_VERSION) {
    throw new SpecError(`features.version must be '${SPEC_VERSION}', got ${JSON.stringify(spec && spec.version)}`);
  }
  for (const field of Array.isArray(spec.fields) ? spec.fields : []) {
    const name = field && field.name;
    if (!FIELDS.includes(name) || (OTHER_KINDS[name] ?? 'categorical') !== field.kind) {
      throw new SpecError(`features.fields: unknown field or kind ${JSON.stringify(name)}/${JSON.stringify(field && field.kind)}`);
    }
    const vocab = Array.isArray(field.vocab) ? field.vocab : [];
    if (field.kind === 'categorical' && (vocab.at(-2) !== 'other' || vocab.at(-1) !== 'unknown' || vocab.length < 2)) {
      throw new SpecError(`features.fields[${name}].vocab must end with 'other', 'unknown'`);
    }
  }
}

/** All feature names in contract order (the dense ONNX input layout). */
export function featureNames(spec) {
  const names = [];
  for (const field of spec.fields) {
    if (field.kind === 'numeric') names.push(field.name);
    else for (const v of field.vocab) names.push(`${field.name}=${v}`);
  }
  return names;
}

// --- text helpers (CONTRACT §2) ---------------------------------------------------------------

const ASCII_ONLY = /^[\x00-\x7f]*$/;
// Made once: a regex literal is a new object each time it is evaluated.
const UPPER_ASCII = /[A-Z]/;
const LOWER_ASCII = /[a-z]/;

// `s` with each code unit in [first, first + 25] moved by `shift`: the non-ASCII case of lower()
// and upper() (a loop: String.replace with a callback costs ~4× as much).
function shiftLetters(s, first, shift) {
  let out = '';
  let done = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= first && c <= first + 25) {
      out += s.slice(done, i) + String.fromCharCode(c + shift);
      done = i + 1;
    }
  }
  return out + s.slice(done);
}

/** ASCII-only lowercase: the same in every runtime, whatever its Unicode tables. */
export function lower(s) {
  if (!UPPER_ASCII.test(s)) return s;
  return ASCII_ONLY.test(s) ? s.toLowerCase() : shiftLetters(s, 65, 32);
}

/** ASCII-only uppercase. */
export function upper(s) {
  if (!LOWER_ASCII.test(s)) return s;
  return ASCII_ONLY.test(s) ? s.toUpperCase() : shiftLetters(s, 97, -32);
}

// Space, \t, \n, \v, \f, \r: the contract's white space (not Unicode's).
function isSpace(c) {
  return c === 32 || (c >= 9 && c <= 13);
}

/** Strip ASCII white space only (String.prototype.trim would also strip Unicode spaces). */
export function trim(s) {
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

// A string whose every `%` starts an escape, whose escapes spell well-formed UTF-8 (Unicode table
// 3-7: no overlong forms, surrogates or code points above U+10FFFF), and whose other characters
// hold no lone surrogate (Python encodes one with `surrogatepass`, and strict decoding then fails)
// — exactly what Python's strict decoder accepts, and what decodeURIComponent decodes without
// throwing. Literal characters are whole UTF-8 sequences, so each sequence that starts with an
// escape is made of escapes only. One pattern, one pass. Built on first use, so that it is not in
// the snippet, which never uses it.
const C = '%[89ab][0-9a-f]';
let utf8Escapes;

// The edge checks first, so decodeURIComponent never throws: an exception costs ~13 µs.
function decodeChecked(s) {
  utf8Escapes ??= new RegExp(
    `^(?:[^%\\ud800-\\udfff]|[\\ud800-\\udbff][\\udc00-\\udfff]` +
      `|%[0-7][0-9a-f]|%c[2-9a-f]${C}|%d[0-9a-f]${C}|%e0%[ab][0-9a-f]${C}|%e[1-9a-cef]${C}${C}` +
      `|%ed%[89][0-9a-f]${C}|%f0%[9ab][0-9a-f]${C}${C}|%f[1-3]${C}${C}${C}|%f4%8[0-9a-f]${C}${C})*$`,
    'i',
  );
  return utf8Escapes.test(s) ? decodeURIComponent(s) : s;
}

// The snippet decodes once per page, and only location.href, which the URL standard serializes
// in ASCII: no lone surrogate to look for, and decodeURIComponent throws on exactly the escapes
// that decodeChecked's pattern rejects.
function decodeCaught(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `+` → space, then strict UTF-8 percent-decoding; malformed input stays as it was. */
export function decode(s) {
  s = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!s.includes('%')) return s;
  EDGE: return decodeChecked(s);
  return decodeCaught(s);
}

function text(value) {
  return typeof value === 'string' ? value : '';
}

function number(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// --- URL parsing (CONTRACT §3) ----------------------------------------------------------------

// [host or null, path, query] of `url` (CONTRACT §3 steps 1–2).
function parseUrl(url) {
  let u = trim(url);
  const hash = u.indexOf('#');
  if (hash >= 0) u = u.slice(0, hash);
  const q = u.indexOf('?');
  const before = q >= 0 ? u.slice(0, q) : u;
  const query = q >= 0 ? u.slice(q + 1) : '';
  let host = null;
  let path = before;
  if (SCHEME.test(before)) {
    const rest = before.slice(before.indexOf('://') + 3); // a scheme holds no ':'
    const slash = rest.indexOf('/');
    let authority = slash >= 0 ? rest.slice(0, slash) : rest;
    authority = authority.slice(authority.lastIndexOf('@') + 1);
    if (authority[0] === '[') {
      const close = authority.indexOf(']');
      authority = (close >= 0 ? authority.slice(0, close) : authority) + ']';
    } else {
      const colon = authority.indexOf(':');
      if (colon >= 0) authority = authority.slice(0, colon);
    }
    host = lower(authority);
    path = slash >= 0 ? rest.slice(slash) : '';
  }
  return [host, path || '/', query];
}

// First-occurrence query parameters (CONTRACT §3 step 3); only the names in `wanted` if given,
// so the hot path decodes no value it will not read.
function queryParams(query, wanted) {
  const params = new Map();
  for (let start = 0; start <= query.length && query; ) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    const eq = query.indexOf('=', start);
    const nameEnd = eq >= 0 && eq < end ? eq : end;
    const key = lower(decode(query.slice(start, nameEnd)));
    if ((!wanted || wanted.includes(key)) && !params.has(key)) params.set(key, nameEnd < end ? decode(query.slice(nameEnd + 1, end)) : '');
    start = end + 1;
  }
  return params;
}

/** [host or null, path, first-occurrence query parameters] by the contract's own rules. */
export function splitUrl(url) {
  const [host, path, query] = parseUrl(url);
  return [host, path, queryParams(query)];
}

function stripWww(host) {
  return host.startsWith('www.') ? host.slice(4) : host;
}

// Python's `re` (ASCII | IGNORECASE, search) differs from JS flag `i` in two places the spec's
// patterns can reach: `.` also matches `\r`, U+2028, U+2029, and `$` also matches before a
// final `\n`. Translate those two outside character classes (an escape, or a class up to its
// `]` — one right after `[` or `[^` is literal — is kept as it is); the rest is shared syntax.
const PYTHON_ONLY = /\\[^]|\[\^?\]?(?:\\[^]|[^\]])*(?:\]|$)|[.$]/g;
const regexCache = new Map();

function pythonRegex(pattern) {
  let compiled = regexCache.get(pattern);
  if (!compiled) {
    const source = pattern.replace(PYTHON_ONLY, (m) => (m === '.' ? '[^\\n]' : m === '$' ? '(?=\\n?$)' : m));
    regexCache.set(pattern, (compiled = new RegExp(source, 'i')));
  }
  return compiled;
}

// A rules object's derived values and, at the edge, bounded caches of what its patterns
// concluded for a user agent or a referrer host: real traffic repeats a few thousand of each,
// and the regexes are most of the cost of a cold one. Built once per rules object (models are
// never mutated after loading); the caches are cleared, not evicted, when full. Patterns compile
// on first use, so the snippet's one decision compiles only those its visitor reaches.
const compiledRules = new WeakMap();
const CACHE_SIZE = 2048;

function ruleSet(rules) {
  let set = compiledRules.get(rules);
  if (!set) {
    set = {
      rules,
      lowMax: rules.price_bands[0],
      midMax: rules.price_bands[1],
      maxPages: rules.max_pages,
      logMaxPages: Math.log1p(rules.max_pages),
      // A Map: a property lookup by a request's string first looks it up in the runtime's string
      // table, ~0.5–1 µs once that table is out of the cache, as among the bench's mixed contexts.
      medium_class: new Map(Object.entries(rules.medium_class)),
      agents: new Map(), // the edge's caches
      hosts: new Map(),
    };
    compiledRules.set(rules, set);
  }
  return set;
}

function search(pattern, s) {
  return pythonRegex(pattern).test(s);
}

function firstRule(list, s) {
  for (const [value, pattern] of list) if (search(pattern, s)) return value;
  return null;
}

// `value`, kept in `cache` under `key` at the edge.
function remember(cache, key, value) {
  EDGE: {
    if (cache.size >= CACHE_SIZE) cache.clear();
    cache.set(key, value);
  }
  return value;
}

// What a non-empty user agent says: tablet/mobile pattern matches, os, browser, bot.
function agent(set, ua) {
  EDGE: {
    const known = set.agents.get(ua);
    if (known !== undefined) return known;
  }
  const { rules } = set;
  return remember(set.agents, ua, {
    tablet: search(rules.tablet, ua),
    mobile: search(rules.mobile, ua),
    os: firstRule(rules.os, ua) ?? 'other',
    browser: firstRule(rules.browser, ua) ?? 'other',
    bot: search(rules.bot, ua),
  });
}

// The class of an external referrer host (CONTRACT §4 referrer_class steps 5–6).
function hostClass(set, host) {
  EDGE: {
    const known = set.hosts.get(host);
    if (known !== undefined) return known;
  }
  return remember(set.hosts, host, firstRule(set.rules.referrer_hosts, host) ?? 'other');
}

// --- local time -------------------------------------------------------------------------------

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const YEAR_1 = -62135596800000; // 0001-01-01T00:00Z: Python's datetime range starts here
const YEAR_10000 = 253402300800000; // and ends before this

// Whether `zone` is spelled like an IANA zone name (CONTRACT §4 weekday); remembered at the edge:
// a few hundred names cover all traffic, and a lookup costs less than the pattern.
const zoneNames = new Map();

function zoneNameShape(zone) {
  EDGE: {
    const known = zoneNames.get(zone);
    if (known !== undefined) return known;
  }
  return remember(zoneNames, zone, zone.length <= 64 && TIMEZONE.test(zone));
}

/** {hour, minute, day} (day 0: Sunday) in `context.timezone` at `context.now_ms`; null if unknown. */
function localTime(context) {
  const zone = text(context.timezone);
  const nowMs = number(context.now_ms);
  if (nowMs === null || !zoneNameShape(zone)) return null;
  const t = Math.trunc(nowMs) + 0; // integral ms, as Date keeps them (+ 0: never -0)
  if (!(t >= YEAR_1 && t < YEAR_10000)) return null;
  // At the edge every zone, its own too, goes by zoneTime's cached offsets: Date's local getters
  // cost ~2.5 µs more a decision among the bench's mixed contexts (decide.mjs).
  EDGE: return zoneTime(zone, t);
  // The runtime's own zone (the snippet's case): the Date clock already knows local time, so
  // no Intl formatter or Temporal object is built on the first-paint path.
  if (zone === runtimeZone() && t >= YEAR_1 + 864e5 && t < YEAR_10000 - 864e5) {
    const when = new Date(t);
    return { hour: when.getHours(), minute: when.getMinutes(), day: when.getDay() };
  }
  return zoneTime(zone, t);
}

// --- field extraction (CONTRACT §4) -----------------------------------------------------------

// `s` up to the first `a` or `b` (String.split with a RegExp is slow in V8).
function beforeEither(s, a, b) {
  const i = s.indexOf(a);
  const j = s.indexOf(b);
  const cut = i < 0 ? j : j < 0 ? i : Math.min(i, j);
  return cut < 0 ? s : s.slice(0, cut);
}

// The first non-empty `/`-separated segment of `path`, or ''.
function firstSegment(path) {
  let start = 0;
  while (start < path.length) {
    const end = path.indexOf('/', start);
    const stop = end < 0 ? path.length : end;
    if (stop > start) return path.slice(start, stop);
    start = stop + 1;
  }
  return '';
}

const UTM = ['utm_source', 'utm_medium', 'utm_campaign'];

// Referrer → its host minus `www.` (null: none). Cached: browsers send only the origin of a
// cross-site referrer (the default referrer policy), so a few thousand strings cover most traffic.
const referrerHosts = new Map();

function referrerHost(referrer) {
  EDGE: {
    const known = referrerHosts.get(referrer);
    if (known !== undefined) return known;
  }
  const host = parseUrl(referrer)[0];
  return remember(referrerHosts, referrer, host ? stripWww(host) : null);
}

// Each field's raw value before vocabulary lookup (`null` = unknown), in FIELDS order:
// an array, so features() reads them by index rather than by a dozen property names.
function rawValues(context, rules) {
  if (!isPlainObject(context)) context = {};
  const set = ruleSet(rules);
  const [urlHost, path, query] = parseUrl(text(context.url));
  const params = queryParams(query, UTM);
  const siteHost = lower(trim(text(context.site_host))) || urlHost || '';
  const referrer = trim(text(context.referrer));
  const refHost = referrer ? referrerHost(referrer) : null;

  const medium = lower(trim(params.get('utm_medium') ?? ''));
  let refClass;
  const mediumClass = set.medium_class.get(medium);
  if (mediumClass !== undefined) refClass = mediumClass;
  else if (!referrer) refClass = 'direct';
  else if (!refHost) refClass = null;
  else if (refHost === stripWww(siteHost)) refClass = 'internal';
  else refClass = hostClass(set, refHost);

  const ua = text(context.user_agent);
  const seen = ua ? agent(set, ua) : null;
  const mobileHint = text(context.ch_ua_mobile);
  let device;
  if (seen && seen.tablet) device = 'tablet';
  else if (mobileHint === '?1' || (seen && seen.mobile)) device = 'mobile';
  else if (ua || mobileHint === '?0') device = 'desktop';
  else device = null;

  const local = localTime(context);
  const hour = local === null ? null : local.hour + local.minute / 60.0;

  const country = upper(trim(text(context.country)));
  let language = trim(beforeEither(text(context.accept_language), ',', ';'));
  language = lower(beforeEither(language, '-', '_'));
  const returning = context.returning;
  const section = firstSegment(path);

  const session = isPlainObject(context.session) ? context.session : {};
  const categories = []; // by a loop: filter and map would cost two closures and an array more
  if (Array.isArray(session.categories)) {
    for (const c of session.categories) if (typeof c === 'string') categories.push(lower(trim(c)));
  }
  const price = number(session.price);
  const { lowMax, midMax } = set;
  let pages = number(session.pages);
  pages = pages !== null && pages >= 0 ? pages : 0.0;
  let priceBand = null;
  if (price !== null && price >= 0) priceBand = price < lowMax ? 'low' : price < midMax ? 'mid' : 'high';

  return [
    refClass, // referrer_class
    refHost, // referrer_host
    lower(trim(params.get('utm_source') ?? '')) || null, // utm_source
    medium || null, // utm_medium
    lower(trim(params.get('utm_campaign') ?? '')) || null, // utm_campaign
    device, // device
    seen && seen.os, // os
    seen && seen.browser, // browser
    hour === null ? 0.0 : Math.sin((2 * Math.PI * hour) / 24), // hour_sin
    hour === null ? 0.0 : Math.cos((2 * Math.PI * hour) / 24), // hour_cos
    local === null ? null : DAY_NAMES[local.day], // weekday
    COUNTRY.test(country) ? country : null, // country
    LANGUAGE.test(language) ? language : null, // language
    typeof returning === 'boolean' ? (returning ? 'returning' : 'new') : null, // visitor
    section ? lower(section) : 'home', // landing_section
    categories, // session_categories
    priceBand, // price_band
    Math.log1p(Math.min(pages, set.maxPages)) / set.logMaxPages, // session_pages
    lower(trim(text(session.last_event))) || null, // last_event
  ];
}

// At the edge every feature name gets a small integer id, the same in every spec (names come
// from specs, never from requests, so the table stays small): policy.js finds a feature's
// weights by array index instead of hashing its name.
const featureIds = new Map();

// The id of feature `name`, carried by features() pairs as their `id`.
function featureId(name) {
  let id = featureIds.get(name);
  if (id === undefined) featureIds.set(name, (id = featureIds.size));
  return id;
}

// Per field, value → the index of its feature in the field's vocabulary, built once per spec
// object (a model's spec never changes). At the edge the active feature `[name=value, 1.0]`
// itself is made on first use and then shared by every features() list holding it — frozen for
// that reason, with its id not enumerable, so it compares and serializes as a plain pair.
const compiledSpecs = new WeakMap();

function compile(spec) {
  let fields = compiledSpecs.get(spec);
  if (!fields) {
    fields = spec.fields.map((field) => {
      const { name, kind } = field;
      const vocab = kind === 'numeric' ? [] : field.vocab;
      const known = kind === 'categorical' ? vocab.slice(0, -2) : vocab;
      return { name, kind, vocab, at: FIELDS.indexOf(name), index: new Map(known.map((v, i) => [v, i])), pairs: [] };
    });
    compiledSpecs.set(spec, fields);
  }
  return fields;
}

// The active feature for `field.vocab[i]` (at the edge, the one shared pair).
function pair(field, i) {
  EDGE: {
    let feature = field.pairs[i];
    if (feature === undefined) {
      feature = [`${field.name}=${field.vocab[i]}`, 1.0];
      field.pairs[i] = Object.freeze(Object.defineProperty(feature, 'id', { value: featureId(feature[0]) }));
    }
    return feature;
  }
  return [`${field.name}=${field.vocab[i]}`, 1.0]; // the snippet's: made once, shared with nothing
}

/** Active features of `context` as ordered [name, value] pairs; never throws on bad input. */
export function features(context, spec) {
  const raw = rawValues(context, spec.rules);
  const active = [];
  for (const field of compile(spec)) {
    const value = raw[field.at];
    if (field.kind === 'numeric') {
      if (value !== 0) active.push([field.name, value]);
    } else if (field.kind === 'multi_hot') {
      for (let i = 0; i < field.vocab.length && value.length; i++) if (value.includes(field.vocab[i])) active.push(pair(field, i));
    } else {
      // Every categorical vocabulary ends with `other`, `unknown`.
      const n = field.vocab.length;
      active.push(pair(field, !value ? n - 1 : field.index.get(value) ?? n - 2));
    }
  }
  return active;
}

/** Known crawlers and headless fetchers get the default variant and are not logged. */
export function isBot(userAgent, rules) {
  return Boolean(userAgent) && agent(ruleSet(rules), userAgent).bot;
}
