// The feature spec `fp-features/1` (model_export/CONTRACT.md §2–§4): raw context → named,
// ordered features. A line-by-line port of model_export/features.py; pure ES module, no Worker
// or DOM API, so the edge worker and the browser snippet import this very file.

export const SPEC_VERSION = 'fp-features/1';

const ASCII_SPACE = ' \t\n\r\f\v';
const ASCII_ONLY = /^[\x00-\x7f]*$/;
const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;
const COUNTRY = /^[A-Z]{2}$/;
const LANGUAGE = /^[a-z]{2,3}$/;
const TIMEZONE = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;
const WEEKDAYS = { Mon: 'mon', Tue: 'tue', Wed: 'wed', Thu: 'thu', Fri: 'fri', Sat: 'sat', Sun: 'sun' };
const FIELD_KINDS = {
  referrer_class: 'categorical',
  referrer_host: 'categorical',
  utm_source: 'categorical',
  utm_medium: 'categorical',
  utm_campaign: 'categorical',
  device: 'categorical',
  os: 'categorical',
  browser: 'categorical',
  hour_sin: 'numeric',
  hour_cos: 'numeric',
  weekday: 'categorical',
  country: 'categorical',
  language: 'categorical',
  visitor: 'categorical',
  landing_section: 'categorical',
  session_categories: 'multi_hot',
  price_band: 'categorical',
  session_pages: 'numeric',
  last_event: 'categorical',
};

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
    if (!has(FIELD_KINDS, name) || FIELD_KINDS[name] !== field.kind) {
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

/** ASCII-only lowercase: the same in every runtime, whatever its Unicode tables. */
export function lower(s) {
  if (!/[A-Z]/.test(s)) return s;
  return ASCII_ONLY.test(s) ? s.toLowerCase() : s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** ASCII-only uppercase. */
export function upper(s) {
  if (!/[a-z]/.test(s)) return s;
  return ASCII_ONLY.test(s) ? s.toUpperCase() : s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** Strip ASCII white space only (String.prototype.trim would also strip Unicode spaces). */
export function trim(s) {
  let start = 0;
  let end = s.length;
  while (start < end && ASCII_SPACE.includes(s[start])) start++;
  while (end > start && ASCII_SPACE.includes(s[end - 1])) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;

// Strict UTF-8, as Python decodes it: the bytes of one run of %XX escapes → text, or null.
// (No decodeURIComponent: its errors are exceptions, and exceptions cost tens of µs.)
function utf8(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    if (b < 0x80) {
      out += String.fromCharCode(b);
      i++;
      continue;
    }
    let need;
    let min = 0x80;
    let max = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) min = 0xa0;
      if (b === 0xed) max = 0x9f; // no UTF-16 surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) min = 0x90;
      if (b === 0xf4) max = 0x8f;
    } else return null;
    if (i + need >= bytes.length) return null;
    let code = b & (0x7f >> (need + 1));
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c < (k === 1 ? min : 0x80) || c > (k === 1 ? max : 0xbf)) return null;
      code = (code << 6) | (c & 0x3f);
    }
    out += String.fromCodePoint(code);
    i += need + 1;
  }
  return out;
}

/** `+` → space, then strict UTF-8 percent-decoding; malformed input stays as it was. */
export function decode(s) {
  s = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!s.includes('%')) return s;
  // Python encodes a lone surrogate with `surrogatepass` and then fails strict decoding.
  if (BAD_ESCAPE.test(s) || LONE_SURROGATE.test(s)) return s;
  // Literal characters are whole UTF-8 sequences, so each run of escapes decodes on its own.
  let out = '';
  let i = 0;
  while (i < s.length) {
    const percent = s.indexOf('%', i);
    if (percent < 0) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, percent);
    const bytes = [];
    for (i = percent; s[i] === '%'; i += 3) bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
    const text = utf8(bytes);
    if (text === null) return s;
    out += text;
  }
  return out;
}

function text(value) {
  return typeof value === 'string' ? value : '';
}

function number(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function has(object, key) {
  return object !== null && typeof object === 'object' && Object.prototype.hasOwnProperty.call(object, key);
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// --- URL parsing (CONTRACT §3) ----------------------------------------------------------------

/** [host or null, path, first-occurrence query parameters] by the contract's own rules. */
export function splitUrl(url) {
  let u = trim(url);
  const hash = u.indexOf('#');
  if (hash >= 0) u = u.slice(0, hash);
  const q = u.indexOf('?');
  const before = q >= 0 ? u.slice(0, q) : u;
  const query = q >= 0 ? u.slice(q + 1) : '';
  let host = null;
  let path = before;
  const scheme = SCHEME.exec(before);
  if (scheme) {
    const rest = before.slice(scheme[0].length);
    const slash = rest.indexOf('/');
    let authority = slash >= 0 ? rest.slice(0, slash) : rest;
    authority = authority.slice(authority.lastIndexOf('@') + 1);
    if (authority.startsWith('[')) authority = authority.split(']', 1)[0] + ']';
    else authority = authority.split(':', 1)[0];
    host = lower(authority);
    path = slash >= 0 ? rest.slice(slash) : '';
  }
  const params = new Map();
  if (query) {
    for (const item of query.split('&')) {
      const eq = item.indexOf('=');
      const key = lower(decode(eq >= 0 ? item.slice(0, eq) : item));
      if (!params.has(key)) params.set(key, decode(eq >= 0 ? item.slice(eq + 1) : ''));
    }
  }
  return [host, path || '/', params];
}

function stripWww(host) {
  return host.startsWith('www.') ? host.slice(4) : host;
}

// Python's `re` (ASCII | IGNORECASE, search) differs from JS flag `i` in two places the spec's
// patterns can reach: `.` also matches `\r`, U+2028, U+2029, and `$` also matches before a
// final `\n`. Translate those two outside character classes; everything else is shared syntax.
const regexCache = new Map();

function pythonRegex(pattern) {
  let compiled = regexCache.get(pattern);
  if (compiled) return compiled;
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      out += c + (pattern[i + 1] ?? '');
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') out += pattern[++i];
    } else if (c === '.') {
      out += '[^\\n]';
    } else if (c === '$') {
      out += '(?=\\n?$)';
    } else {
      out += c;
    }
  }
  compiled = new RegExp(out, 'i');
  regexCache.set(pattern, compiled);
  return compiled;
}

function search(pattern, s) {
  return pythonRegex(pattern).test(s);
}

function firstRule(rules, s) {
  for (const [value, pattern] of rules) if (search(pattern, s)) return value;
  return null;
}

// --- local time -------------------------------------------------------------------------------

const formatters = new Map();
const offsets = new Map();
const HOUR_MS = 3600000;
const MINUTE_MS = 60000;
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// Intl resolves zone names case-insensitively (and canonicalizes links); Python's zoneinfo is
// case-sensitive. Reject a name whose resolved id differs only by case, and a link name whose
// segments do not start upper-case (the IANA spelling), so `europe/paris` is unknown everywhere.
function acceptedZone(zone, resolved) {
  if (resolved === zone) return true;
  const ianaSpelling = zone.split('/').every((segment) => /^[A-Z]/.test(segment));
  return lower(resolved) !== lower(zone) && ianaSpelling;
}

function zoneFormatter(zone) {
  let formatter = formatters.get(zone);
  if (formatter !== undefined) return formatter;
  formatter = null;
  try {
    const candidate = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      weekday: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    if (acceptedZone(zone, candidate.resolvedOptions().timeZone)) formatter = candidate;
  } catch {
    formatter = null;
  }
  if (formatters.size >= 512) formatters.clear();
  formatters.set(zone, formatter);
  return formatter;
}

function localParts(formatter, when) {
  const parts = {};
  for (const part of formatter.formatToParts(when)) parts[part.type] = part.value;
  return parts;
}

// The zone's UTC offset (ms) at `t`, from the local wall-clock time Intl reports.
function offsetAt(formatter, t) {
  const p = localParts(formatter, new Date(t));
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  return wall - (t - (((t % 1000) + 1000) % 1000));
}

// Intl formatting costs tens of µs; a zone's offset is constant over almost every UTC hour.
// Cache it per (zone, UTC hour) when it is the same at both ends of that hour, else per
// (zone, UTC minute) — offsets change at most a few times a year — and read hour, minute and
// weekday from UTC + offset. Null: the offset changes inside that very minute.
function cachedOffset(zone, formatter, t) {
  const hour = Math.floor(t / HOUR_MS);
  let offset = constantOffset(`${zone}\x1fh${hour}`, formatter, hour * HOUR_MS, HOUR_MS);
  if (offset === null) {
    const minute = Math.floor(t / MINUTE_MS);
    offset = constantOffset(`${zone}\x1fm${minute}`, formatter, minute * MINUTE_MS, MINUTE_MS);
  }
  return offset;
}

function constantOffset(key, formatter, start, length) {
  let offset = offsets.get(key);
  if (offset === undefined) {
    const first = offsetAt(formatter, start);
    offset = first === offsetAt(formatter, start + length - 1000) ? first : null;
    if (offsets.size >= 4096) offsets.clear();
    offsets.set(key, offset);
  }
  return offset;
}

// Where the runtime has Temporal (Chromium), it answers without an Intl formatter, whose first
// construction costs tens of ms in a fresh page — and the snippet decides on the first-paint path.
function temporalLocalTime(zone, t) {
  let local;
  try {
    local = Temporal.Instant.fromEpochMilliseconds(t).toZonedDateTimeISO(zone);
  } catch {
    return null;
  }
  if (!acceptedZone(zone, local.timeZoneId)) return null;
  return { hour: local.hour, minute: local.minute, weekday: DAY_NAMES[local.dayOfWeek % 7] };
}

/** {hour, minute, weekday} in `context.timezone` at `context.now_ms`, or null when unknown. */
function localTime(context) {
  const zone = text(context.timezone);
  const nowMs = number(context.now_ms);
  if (nowMs === null || zone.length > 64 || !TIMEZONE.test(zone)) return null;
  const when = new Date(nowMs);
  const utcYear = when.getUTCFullYear();
  if (!(utcYear >= 1 && utcYear <= 9999)) return null; // Python's datetime range
  const t = when.getTime();
  if (typeof Temporal !== 'undefined') return temporalLocalTime(zone, t);
  const formatter = zoneFormatter(zone);
  if (formatter === null) return null;
  const offset = utcYear > 100 && utcYear < 9999 ? cachedOffset(zone, formatter, t) : null;
  if (offset !== null) {
    const local = new Date(t + offset);
    return { hour: local.getUTCHours(), minute: local.getUTCMinutes(), weekday: DAY_NAMES[local.getUTCDay()] };
  }
  const p = localParts(formatter, when);
  const weekday = WEEKDAYS[p.weekday];
  return weekday ? { hour: Number(p.hour), minute: Number(p.minute), weekday } : null;
}

// --- field extraction (CONTRACT §4) -----------------------------------------------------------

// `s` up to the first of the characters in `stops` (String.split with a RegExp is slow in V8).
function beforeAny(s, stops) {
  for (let i = 0; i < s.length; i++) if (stops.includes(s[i])) return s.slice(0, i);
  return s;
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

/** Each field's raw value before vocabulary lookup (`null` = unknown). */
export function rawValues(context, rules) {
  if (!isPlainObject(context)) context = {};
  const [urlHost, path, params] = splitUrl(text(context.url));
  const siteHost = lower(trim(text(context.site_host))) || urlHost || '';
  const referrer = trim(text(context.referrer));
  let refHost = referrer ? splitUrl(referrer)[0] : null;
  refHost = refHost ? stripWww(refHost) : null;

  const medium = lower(trim(params.get('utm_medium') ?? ''));
  let refClass;
  if (has(rules.medium_class, medium)) refClass = rules.medium_class[medium];
  else if (!referrer) refClass = 'direct';
  else if (!refHost) refClass = null;
  else if (refHost === stripWww(siteHost)) refClass = 'internal';
  else refClass = firstRule(rules.referrer_hosts, refHost) ?? 'other';

  const ua = text(context.user_agent);
  const mobileHint = text(context.ch_ua_mobile);
  let device;
  if (ua && search(rules.tablet, ua)) device = 'tablet';
  else if (mobileHint === '?1' || (ua && search(rules.mobile, ua))) device = 'mobile';
  else if (ua || mobileHint === '?0') device = 'desktop';
  else device = null;

  const local = localTime(context);
  const hour = local === null ? null : local.hour + local.minute / 60.0;

  const country = upper(trim(text(context.country)));
  let language = trim(beforeAny(text(context.accept_language), ',;'));
  language = lower(beforeAny(language, '-_'));
  const returning = context.returning;
  const section = firstSegment(path);

  const session = isPlainObject(context.session) ? context.session : {};
  const categories = Array.isArray(session.categories) ? session.categories : [];
  const price = number(session.price);
  const [lowMax, midMax] = rules.price_bands;
  let pages = number(session.pages);
  pages = pages !== null && pages >= 0 ? pages : 0.0;
  let priceBand = null;
  if (price !== null && price >= 0) priceBand = price < lowMax ? 'low' : price < midMax ? 'mid' : 'high';

  return {
    referrer_class: refClass,
    referrer_host: refHost,
    utm_source: lower(trim(params.get('utm_source') ?? '')) || null,
    utm_medium: medium || null,
    utm_campaign: lower(trim(params.get('utm_campaign') ?? '')) || null,
    device,
    os: ua ? firstRule(rules.os, ua) ?? 'other' : null,
    browser: ua ? firstRule(rules.browser, ua) ?? 'other' : null,
    hour_sin: hour === null ? 0.0 : Math.sin((2 * Math.PI * hour) / 24),
    hour_cos: hour === null ? 0.0 : Math.cos((2 * Math.PI * hour) / 24),
    weekday: local === null ? null : local.weekday,
    country: COUNTRY.test(country) ? country : null,
    language: LANGUAGE.test(language) ? language : null,
    visitor: typeof returning === 'boolean' ? (returning ? 'returning' : 'new') : null,
    landing_section: section ? lower(section) : 'home',
    session_categories: categories.filter((c) => typeof c === 'string').map((c) => lower(trim(c))),
    price_band: priceBand,
    session_pages: Math.log1p(Math.min(pages, rules.max_pages)) / Math.log1p(rules.max_pages),
    last_event: lower(trim(text(session.last_event))) || null,
  };
}

// Per field, value → feature name (`name=value`), built once per spec object (a model's spec
// never changes): lookups without building strings, and the same interned names every time.
const compiledSpecs = new WeakMap();

function compile(spec) {
  let fields = compiledSpecs.get(spec);
  if (!fields) {
    fields = spec.fields.map((field) => {
      const { name, kind } = field;
      const vocab = kind === 'numeric' ? [] : field.vocab;
      const known = kind === 'categorical' ? vocab.slice(0, -2) : vocab;
      return {
        name,
        kind,
        vocab,
        names: new Map(known.map((v) => [v, `${name}=${v}`])),
        other: `${name}=other`,
        unknown: `${name}=unknown`,
      };
    });
    compiledSpecs.set(spec, fields);
  }
  return fields;
}

/** Active features of `context` as ordered [name, value] pairs; never throws on bad input. */
export function features(context, spec) {
  const raw = rawValues(context, spec.rules);
  const active = [];
  for (const field of compile(spec)) {
    const value = raw[field.name];
    if (field.kind === 'numeric') {
      if (value !== 0) active.push([field.name, value]);
    } else if (field.kind === 'multi_hot') {
      if (!value.length) continue;
      const present = new Set(value);
      for (const v of field.vocab) if (present.has(v)) active.push([field.names.get(v), 1.0]);
    } else {
      const bucket = !value ? field.unknown : field.names.get(value) ?? field.other;
      active.push([bucket, 1.0]);
    }
  }
  return active;
}

/** Known crawlers and headless fetchers get the default variant and are not logged. */
export function isBot(userAgent, rules) {
  return Boolean(userAgent) && search(rules.bot, userAgent);
}
