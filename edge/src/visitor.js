// Who the visitor is, as far as first-party cookies and consent allow, and the raw request
// context (CONTRACT §1) the policy decides from.
//
// Cookies: `fp_vid` (the visitor id; HttpOnly, Secure, SameSite=Lax, one year) and
// `fp_consent` (`1` = the visitor agreed, `0` = refused; written by the site's consent banner).
// With FP_CONSENT_REQUIRED=1 the visitor id is used and set only after `fp_consent=1`;
// otherwise only `fp_consent=0` turns it off. Without consent no cookie is set, no id is read,
// and decisions use the request context alone.

export const VISITOR_COOKIE = 'fp_vid';
export const CONSENT_COOKIE = 'fp_consent';
const VISITOR_ID = /^[A-Za-z0-9_-]{8,64}$/;
const ONE_YEAR_S = 365 * 24 * 3600;

/** Cookie name → value (first occurrence wins) from a Cookie header. */
export function parseCookies(header) {
  const cookies = new Map();
  for (const part of (header || '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name && !cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/** Whether the visitor id cookie may be read and written for this request. */
export function consentAllows(cookies, env) {
  const consent = cookies.get(CONSENT_COOKIE);
  return env.FP_CONSENT_REQUIRED === '1' ? consent === '1' : consent !== '0';
}

/** {id, returning, setCookie}: the visitor id ('' when anonymous) and the Set-Cookie to send, if any. */
export function identifyVisitor(cookies, env) {
  const known = cookies.get(VISITOR_COOKIE);
  const valid = known !== undefined && VISITOR_ID.test(known);
  if (!consentAllows(cookies, env)) {
    // Consent withdrawn: forget the id the browser still holds.
    const setCookie = known !== undefined ? `${VISITOR_COOKIE}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax` : null;
    return { id: '', returning: undefined, setCookie };
  }
  if (valid) return { id: known, returning: true, setCookie: null };
  const id = crypto.randomUUID().replace(/-/g, '');
  return { id, returning: false, setCookie: `${VISITOR_COOKIE}=${id}; Max-Age=${ONE_YEAR_S}; Path=/; HttpOnly; Secure; SameSite=Lax` };
}

/** The raw context (CONTRACT §1) of an edge request (`url`: its parsed URL). */
export function requestContext(request, url, visitor, env, nowMs) {
  const headers = request.headers;
  const cf = request.cf || {};
  const context = {
    url: request.url,
    site_host: env.FP_SITE_HOST || url.hostname,
    now_ms: nowMs,
  };
  const optional = {
    referrer: headers.get('referer'),
    user_agent: headers.get('user-agent'),
    ch_ua_mobile: headers.get('sec-ch-ua-mobile'),
    accept_language: headers.get('accept-language'),
    country: typeof cf.country === 'string' ? cf.country : null,
    timezone: typeof cf.timezone === 'string' ? cf.timezone : null,
  };
  for (const [key, value] of Object.entries(optional)) if (value !== null) context[key] = value;
  if (typeof visitor.returning === 'boolean') context.returning = visitor.returning;
  return context;
}
