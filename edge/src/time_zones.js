// Local time in an IANA zone, for features.js: Intl, which every runtime here has (workerd,
// Node, browsers). The browser snippet bundles browser/src/time_zones.js in its place (see
// browser/build.mjs): it only ever decides in the browser's own zone, which features.js reads
// from the Date clock, so the Intl machinery below would be dead weight on the wire.

const DAY_MS = 86400000;
const HOUR_MS = 3600000;
const MINUTE_MS = 60000;
const YEAR_101 = -58979923200000; // 0101-01-01T00:00Z
const YEAR_9999 = 253370764800000; // 9999-01-01T00:00Z
const WEEKDAYS = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

let ownZone;

/** The IANA zone of this runtime's own clock (what `Date`'s local getters use). */
export function runtimeZone() {
  return (ownZone ??= Intl.DateTimeFormat().resolvedOptions().timeZone);
}

// Intl resolves zone names case-insensitively (and canonicalizes links); Python's zoneinfo is
// case-sensitive. A name whose resolved id differs only by case is unknown, and so is a link name
// whose segments do not start upper-case (the IANA spelling): `europe/paris` is not a zone.
// (Names here passed features.js's ASCII-only pattern, so toLowerCase is ASCII lowercasing.)
function acceptedName(zone, resolved) {
  if (resolved === zone) return true;
  const ianaSpelling = zone.split('/').every((segment) => /^[A-Z]/.test(segment));
  return resolved.toLowerCase() !== zone.toLowerCase() && ianaSpelling;
}

// Per zone: its formatter (null when Intl does not know the zone or the name is not accepted)
// and its UTC offsets by UTC hour and minute. Formatting costs tens of µs; an offset is constant
// over almost every hour.
const zones = new Map();

function zoneState(zone) {
  let state = zones.get(zone);
  if (state !== undefined) return state;
  state = null;
  try {
    const formatter = new Intl.DateTimeFormat('en-US', {
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
    const id = formatter.resolvedOptions().timeZone;
    if (acceptedName(zone, id)) state = { formatter, hours: new Map(), minutes: new Map() };
  } catch {
    state = null;
  }
  if (zones.size >= 512) zones.clear();
  zones.set(zone, state);
  return state;
}

function localParts(formatter, t) {
  const parts = {};
  for (const part of formatter.formatToParts(t)) parts[part.type] = part.value;
  return parts;
}

// The zone's UTC offset (ms) at `t`, from the local wall-clock time Intl reports.
function offsetAt(formatter, t) {
  const p = localParts(formatter, t);
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  return wall - (t - (((t % 1000) + 1000) % 1000));
}

// The offset over the whole `length`-ms period with index `index`, or null if it changes inside.
function constantOffset(cache, formatter, index, length) {
  let offset = cache.get(index);
  if (offset === undefined) {
    const start = index * length;
    const first = offsetAt(formatter, start);
    offset = first === offsetAt(formatter, start + length - 1000) ? first : null;
    if (cache.size >= 1024) cache.clear();
    cache.set(index, offset);
  }
  return offset;
}

/**
 * Local time in `zone` at `t` (integral ms, years 1–9999) as {hour, minute, day} (day 0 =
 * Sunday), or null when the zone is unknown.
 */
export function zoneTime(zone, t) {
  const state = zoneState(zone);
  if (state === null) return null;
  const { formatter } = state;
  // Offsets are cached per UTC hour, or per UTC minute for the hour a zone changes its offset;
  // only years whose neighbours exist too (Date arithmetic near years 1 and 9999 is Intl's job).
  let offset = null;
  if (t >= YEAR_101 && t < YEAR_9999) {
    offset = constantOffset(state.hours, formatter, Math.floor(t / HOUR_MS), HOUR_MS);
    if (offset === null) offset = constantOffset(state.minutes, formatter, Math.floor(t / MINUTE_MS), MINUTE_MS);
  }
  if (offset !== null) {
    // What Date's UTC getters say of `local` (integral ms; day 0 of the epoch was a Thursday),
    // without making a Date.
    const local = t + offset;
    const days = Math.floor(local / DAY_MS);
    const ms = local - days * DAY_MS;
    const day = (days + 4) % 7;
    return { hour: Math.floor(ms / HOUR_MS), minute: Math.floor((ms % HOUR_MS) / MINUTE_MS), day: day < 0 ? day + 7 : day };
  }
  const p = localParts(formatter, t);
  const day = WEEKDAYS[p.weekday];
  return day === undefined ? null : { hour: Number(p.hour), minute: Number(p.minute), day };
}
