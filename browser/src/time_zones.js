// The snippet's stand-in for edge/src/time_zones.js (browser/build.mjs swaps it in). The
// snippet decides only in the browser's own zone, whose local time features.js reads from the
// Date clock, so the edge module's Intl formatters and offset caches would be dead weight here:
// any other zone is unknown to it.

let ownZone;

/** The IANA zone of the browser's clock; Temporal answers without building an Intl formatter. */
export function runtimeZone() {
  return (ownZone ??= typeof Temporal != 'undefined' ? Temporal.Now.timeZoneId() : Intl.DateTimeFormat().resolvedOptions().timeZone);
}

/** Local time in a zone other than the browser's own: unknown (null) in the snippet. */
export function zoneTime() {
  return null;
}
