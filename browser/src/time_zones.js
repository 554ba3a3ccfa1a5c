// The snippet's stand-in for edge/src/time_zones.js (browser/build.mjs swaps it in). The
// snippet decides only in the browser's own zone, whose local time features.js reads from the
// Date clock, so the edge module's Intl formatters and offset caches would be dead weight here.
// Any other zone is resolved with Temporal where the browser has it, else it is unknown.

let ownZone;

/** The IANA zone of the browser's clock; Temporal answers without building an Intl formatter. */
export function runtimeZone() {
  return (ownZone ??= typeof Temporal != 'undefined' ? Temporal.Now.timeZoneId() : Intl.DateTimeFormat().resolvedOptions().timeZone);
}

/** Local time in `zone` at `t` as {id, hour, minute, day} (day 0 = Sunday), or null. */
export function zoneTime(zone, t) {
  try {
    const local = Temporal.Instant.fromEpochMilliseconds(t).toZonedDateTimeISO(zone);
    return { id: local.timeZoneId, hour: local.hour, minute: local.minute, day: local.dayOfWeek % 7 };
  } catch {
    return null; // no Temporal, or a zone it does not know
  }
}
