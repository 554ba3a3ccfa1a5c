// The feature spec `fp-features/1` (model_export/CONTRACT.md §2–§4): raw context → named,
// ordered features. A line-by-line port of model_export/features.py; pure ES module, no Worker
// or DOM API, so the edge worker and the browser snippet import this very file.

export const SPEC_VERSION = 'fp-features/1';

const ASCII_SPACE = ' \t\n\r\f\v';
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
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** ASCII-only uppercase. */
export function upper(s) {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
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

/** `+` → space, then strict UTF-8 percent-decoding; malformed input stays as it was. */
export function decode(s) {
  s = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!s.includes('%')) return s;
  // Python encodes a lone surrogate with `surrogatepass` and then fails strict decoding.
  if (LONE_SURROGATE.test(s)) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
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

// Intl resolves zone names case-insensitively (and canonicalizes links); Python's zoneinfo is
// case-sensitive. Reject a name whose resolved id differs only by case, and a link name whose
// segments do not start upper-case (the IANA spelling), so `europe/paris` is unknown everywhere.
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
      hour: '2-digit',
      minute: '2-digit',
    });
    const resolved = candidate.resolvedOptions().timeZone;
    const sameName = resolved === zone;
    const caseOnly = !sameName && lower(resolved) === lower(zone);
    const ianaSpelling = zone.split('/').every((segment) => /^[A-Z]/.test(segment));
    if (sameName || (!caseOnly && ianaSpelling)) formatter = candidate;
  } catch {
    formatter = null;
  }
  if (formatters.size >= 512) formatters.clear();
  formatters.set(zone, formatter);
  return formatter;
}

/** {hour, minute, weekday} in `context.timezone` at `context.now_ms`, or null when unknown. */
function localTime(context) {
  const zone = text(context.timezone);
  const nowMs = number(context.now_ms);
  if (nowMs === null || zone.length > 64 || !TIMEZONE.test(zone)) return null;
  const when = new Date(nowMs);
  const utcYear = when.getUTCFullYear();
  if (!(utcYear >= 1 && utcYear <= 9999)) return null; // Python's datetime range
  const formatter = zoneFormatter(zone);
  if (formatter === null) return null;
  let hour = 0;
  let minute = 0;
  let weekday = null;
  for (const part of formatter.formatToParts(when)) {
    if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
    else if (part.type === 'weekday') weekday = WEEKDAYS[part.value] ?? null;
  }
  return weekday === null ? null : { hour, minute, weekday };
}

// --- field extraction (CONTRACT §4) -----------------------------------------------------------

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
  let language = text(context.accept_language).split(',', 1)[0].split(';', 1)[0];
  language = lower(trim(language).split(/[-_]/, 1)[0]);
  const returning = context.returning;
  const segments = path.split('/').filter((s) => s);

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
    landing_section: segments.length ? lower(segments[0]) : 'home',
    session_categories: categories.filter((c) => typeof c === 'string').map((c) => lower(trim(c))),
    price_band: priceBand,
    session_pages: Math.log1p(Math.min(pages, rules.max_pages)) / Math.log1p(rules.max_pages),
    last_event: lower(trim(text(session.last_event))) || null,
  };
}

// Vocabulary lookups as Sets, built once per spec object (a model's spec never changes).
const knownValues = new WeakMap();

function known(spec) {
  let sets = knownValues.get(spec);
  if (!sets) {
    sets = spec.fields.map((f) => new Set(f.kind === 'categorical' ? f.vocab.slice(0, -2) : f.vocab || []));
    knownValues.set(spec, sets);
  }
  return sets;
}

/** Active features of `context` as ordered [name, value] pairs; never throws on bad input. */
export function features(context, spec) {
  const raw = rawValues(context, spec.rules);
  const sets = known(spec);
  const active = [];
  spec.fields.forEach((field, i) => {
    const { name, kind } = field;
    const value = raw[name];
    if (kind === 'numeric') {
      if (value !== 0) active.push([name, value]);
    } else if (kind === 'multi_hot') {
      const present = new Set(value);
      for (const v of field.vocab) if (present.has(v)) active.push([`${name}=${v}`, 1.0]);
    } else {
      const bucket = !value ? 'unknown' : sets[i].has(value) ? value : 'other';
      active.push([`${name}=${bucket}`, 1.0]);
    }
  });
  return active;
}

/** Known crawlers and headless fetchers get the default variant and are not logged. */
export function isBot(userAgent, rules) {
  return Boolean(userAgent) && search(rules.bot, userAgent);
}
