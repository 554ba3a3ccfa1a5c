// Fetching the site's HTML from the origin, through the Cache API when the origin allows it.
// Only the un-personalized origin response is ever cached; personalization happens per request.

let checkedOrigin = null; // {configured, base} of the last valid FP_ORIGIN: the same on every request

/** FP_ORIGIN without a trailing slash; throws when it is missing or not an http(s) URL. */
export function originBase(env) {
  if (checkedOrigin && env.FP_ORIGIN === checkedOrigin.configured) return checkedOrigin.base;
  const origin = typeof env.FP_ORIGIN === 'string' ? env.FP_ORIGIN.trim() : '';
  if (!/^https?:\/\/[^/]+/.test(origin)) {
    throw new Error(`FP_ORIGIN must be the origin's http(s) URL, got ${JSON.stringify(env.FP_ORIGIN ?? null)}`);
  }
  checkedOrigin = { configured: env.FP_ORIGIN, base: origin.replace(/\/+$/, '') };
  return checkedOrigin.base;
}

/** Whether a shared cache may keep a 200 origin response with these headers (no cookie, a lifetime). */
export function cacheable(headers) {
  // Cache-Control first: most pages have no lifetime, and each header read crosses into the runtime.
  const control = (headers.get('cache-control') || '').toLowerCase();
  if (/(^|[,\s])(private|no-store|no-cache)\b/.test(control)) return false;
  const lifetime = /(?:^|[,\s])(?:s-maxage|max-age)=(\d+)/.exec(control);
  if (lifetime === null || Number(lifetime[1]) <= 0) return false;
  return !headers.has('set-cookie') && !(headers.get('vary') || '').includes('*');
}

/** Whether headers describe an HTML document. */
export function isHtml(headers) {
  return (headers.get('content-type') || '').toLowerCase().startsWith('text/html');
}

// URLs whose last origin response could not be cached: looking them up again would only cost a
// cache round trip per request. Forgotten after UNCACHEABLE_TTL_MS, bounded in size.
const uncacheable = new Map();
const UNCACHEABLE_TTL_MS = 60_000;

function knownUncacheable(url, nowMs) {
  const until = uncacheable.get(url);
  if (until === undefined) return false;
  if (until > nowMs) return true;
  uncacheable.delete(url);
  return false;
}

/**
 * The origin's response to `request` (sent to `base` + the path and query of `url`): `{response,
 * headers, fromCache}`, `headers` being `response.headers` read once. GET requests without
 * credentials look in the cache first; cacheable HTML from the origin is stored in the
 * background. `extraCookie` (`name=value`) is added to the Cookie header sent to the origin: a
 * visitor id minted here is the origin's visitor id too.
 * (Workers' `headers` getters build a new object on each access: each is read once here.)
 */
export async function fetchFromOrigin(request, url, base, ctx, extraCookie = null) {
  const originUrl = `${base}${url.pathname}${url.search}`;
  const nowMs = Date.now();
  const requestHeaders = request.headers;
  // The `caches` global is costly to reach (~as much as a decision): only when it may help.
  const useCache = request.method === 'GET' && !requestHeaders.has('authorization');
  if (useCache && !knownUncacheable(originUrl, nowMs) && typeof caches !== 'undefined') {
    const cached = await caches.default.match(originUrl);
    if (cached) return { response: cached, headers: cached.headers, fromCache: true };
  }
  // One Request for the origin, its own (mutable) headers copied from the visitor's.
  const originRequest = new Request(originUrl, request);
  if (extraCookie) {
    const cookie = requestHeaders.get('cookie');
    originRequest.headers.set('cookie', cookie ? `${cookie}; ${extraCookie}` : extraCookie);
  }
  const response = await fetch(originRequest);
  const headers = response.headers;
  if (!useCache) return { response, headers, fromCache: false };
  if (response.status === 200 && isHtml(headers) && cacheable(headers) && typeof caches !== 'undefined') {
    uncacheable.delete(originUrl);
    ctx.waitUntil(caches.default.put(originUrl, response.clone()).catch(() => {}));
  } else {
    if (uncacheable.size >= 10_000) uncacheable.clear();
    uncacheable.set(originUrl, nowMs + UNCACHEABLE_TTL_MS);
  }
  return { response, headers, fromCache: false };
}
