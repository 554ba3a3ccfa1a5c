// Fetching the site's HTML from the origin, through the Cache API when the origin allows it.
// Only the un-personalized origin response is ever cached; personalization happens per request.

/** FP_ORIGIN without a trailing slash; throws when it is missing or not an http(s) URL. */
export function originBase(env) {
  const origin = typeof env.FP_ORIGIN === 'string' ? env.FP_ORIGIN.trim() : '';
  if (!/^https?:\/\/[^/]+/.test(origin)) {
    throw new Error(`FP_ORIGIN must be the origin's http(s) URL, got ${JSON.stringify(env.FP_ORIGIN ?? null)}`);
  }
  return origin.replace(/\/+$/, '');
}

/** Whether a shared cache may keep this origin response (public HTML, no cookie, a lifetime). */
export function cacheable(response) {
  if (response.status !== 200 || response.headers.has('set-cookie')) return false;
  if ((response.headers.get('vary') || '').includes('*')) return false;
  const control = (response.headers.get('cache-control') || '').toLowerCase();
  if (/(^|[,\s])(private|no-store|no-cache)\b/.test(control)) return false;
  const lifetime = /(?:^|[,\s])(?:s-maxage|max-age)=(\d+)/.exec(control);
  return lifetime !== null && Number(lifetime[1]) > 0;
}

/** Whether the response is an HTML document. */
export function isHtml(response) {
  return (response.headers.get('content-type') || '').toLowerCase().startsWith('text/html');
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
 * The origin's response to `request` (sent to `base` + its path and query) and whether it came
 * from the cache. GET requests without credentials look in the cache first; cacheable HTML from
 * the origin is stored in the background. `extraCookie` (`name=value`) is added to the Cookie
 * header sent to the origin: a visitor id minted here is the origin's visitor id too.
 */
export async function fetchFromOrigin(request, base, ctx, extraCookie = null) {
  const url = new URL(request.url);
  const originUrl = `${base}${url.pathname}${url.search}`;
  const nowMs = Date.now();
  const useCache = request.method === 'GET' && !request.headers.has('authorization') && typeof caches !== 'undefined';
  const cacheKey = new Request(originUrl, { method: 'GET' });
  if (useCache && !knownUncacheable(originUrl, nowMs)) {
    const cached = await caches.default.match(cacheKey);
    if (cached) return { response: cached, fromCache: true };
  }
  const forwarded = new Request(originUrl, request);
  if (extraCookie) {
    const cookie = forwarded.headers.get('cookie');
    forwarded.headers.set('cookie', cookie ? `${cookie}; ${extraCookie}` : extraCookie);
  }
  const response = await fetch(forwarded);
  if (useCache && isHtml(response) && cacheable(response)) {
    uncacheable.delete(originUrl);
    ctx.waitUntil(caches.default.put(cacheKey, response.clone()).catch(() => {}));
  } else if (useCache) {
    if (uncacheable.size >= 10_000) uncacheable.clear();
    uncacheable.set(originUrl, nowMs + UNCACHEABLE_TTL_MS);
  }
  return { response, fromCache: false };
}
