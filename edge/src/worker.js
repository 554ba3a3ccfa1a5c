// The firstpaint edge worker: fetch the site's HTML from the origin, decide each known
// `[data-fp-slot]` with the model, rewrite the slots inside the HTML stream, and log the
// decisions to the origin in the background. Anything that goes wrong passes the origin's page
// through untouched with `x-fp-fallback: <reason>`.
//
// Configuration ([vars] in wrangler.toml, secrets with `wrangler secret put`):
//   FP_ORIGIN            the origin's URL (required)
//   FP_TOKEN_SECRET      HMAC secret for decision tokens and preview signatures (secret)
//   FP_CONSENT_REQUIRED  "1": no visitor cookie without `fp_consent=1` (default "0")
//   FP_MODEL_REFRESH_S   seconds between model refreshes from the origin (default 10)
//   FP_SITE_HOST         the site's host for `internal` referrers (default: the request's host)
//   FP_LOG_BATCH_MS      how long a decision waits for others to share its POST (default 100)
//   FP_DEV               "1": previews without signature and GET /__fp/status

import site from './site.json';
import { choose } from './policy.js';
import { features, isBot } from './features.js';
import { currentModel, refreshIfDue, modelStatus } from './model_store.js';
import { fetchFromOrigin, isHtml, originBase } from './origin.js';
import { VISITOR_COOKIE, identifyVisitor, parseCookies, requestContext } from './visitor.js';
import { signDecision, verifyPreview } from './token.js';
import { rewriteSlots } from './rewriter.js';
import { logRecord, queueDecisions } from './decision_log.js';

export default {
  async fetch(request, env, ctx) {
    let base;
    try {
      base = originBase(env);
    } catch (error) {
      return new Response(`firstpaint edge: ${error.message}\n`, { status: 500, headers: { 'x-fp-fallback': 'no-origin' } });
    }
    const url = new URL(request.url);
    if (env.FP_DEV === '1' && url.pathname === '/__fp/status') {
      await currentModel();
      return Response.json(modelStatus());
    }
    // The visitor is known before the origin is asked, so a freshly minted id reaches it too.
    const model = request.method === 'GET' ? await currentModel() : null;
    if (request.method === 'GET') refreshIfDue(env, ctx, base, Date.now());
    const requestHeaders = request.headers;
    const visitor = model ? identify(requestHeaders, model, env) : null;
    let response;
    let responseHeaders;
    let fromCache;
    try {
      const extraCookie = visitor && visitor.returning === false ? `${VISITOR_COOKIE}=${visitor.id}` : null;
      ({ response, headers: responseHeaders, fromCache } = await fetchFromOrigin(request, url, base, ctx, extraCookie));
    } catch (error) {
      console.warn(`firstpaint: origin fetch failed: ${error.message}`);
      return new Response('The site is unreachable right now.\n', { status: 502, headers: { 'x-fp-fallback': 'origin-unreachable' } });
    }
    if (request.method !== 'GET' || response.status !== 200 || !isHtml(responseHeaders)) return response;
    try {
      return await personalize(request, response, { url, env, ctx, base, model, visitor, fromCache });
    } catch (error) {
      console.warn(`firstpaint: personalization failed: ${error.stack || error}`);
      return fallback(response, 'exception');
    }
  },
};

const ANONYMOUS = { id: '', returning: undefined, setCookie: null };

/** The visitor of a GET request: anonymous for bots, else as cookies and consent allow. */
function identify(headers, model, env) {
  try {
    if (isBot(headers.get('user-agent') || '', model.features.rules)) return { ...ANONYMOUS, bot: true };
    return { ...identifyVisitor(parseCookies(headers.get('cookie')), env), bot: false };
  } catch (error) {
    console.warn(`firstpaint: cannot identify the visitor: ${error.message}`);
    return null; // personalize() falls back
  }
}

function fallback(response, reason) {
  const passed = new Response(response.body, response);
  passed.headers.set('x-fp-fallback', reason);
  return passed;
}

/** Preview overrides (slot → variant) from `?fp_preview=slot:variant[,…]&fp_sig=…`, or null. */
async function previewOverrides(url, env) {
  const value = url.searchParams.get('fp_preview');
  if (!value) return null;
  const authorized = env.FP_DEV === '1' || (await verifyPreview(env.FP_TOKEN_SECRET, value, url.searchParams.get('fp_sig')));
  if (!authorized) return undefined;
  const overrides = new Map();
  for (const item of value.split(',')) {
    const colon = item.indexOf(':');
    if (colon > 0) overrides.set(item.slice(0, colon), item.slice(colon + 1));
  }
  return overrides;
}

function newDecisionId() {
  return crypto.randomUUID().replaceAll('-', '');
}

async function personalize(request, response, { url, env, ctx, base, model, visitor, fromCache }) {
  const nowMs = Date.now();
  if (!model) return fallback(response, 'no-model');
  if (!visitor) return fallback(response, 'exception');
  if (!env.FP_TOKEN_SECRET) return fallback(response, 'no-token-secret');

  const bot = visitor.bot;
  const context = requestContext(request, url, visitor, env, nowMs);
  const preview = await previewOverrides(url, env);

  // Workers' clocks only move on I/O, so on the edge this reads ~0; it is real elsewhere.
  const started = performance.now();
  const decisions = [];
  const active = features(context, model.features);
  for (const [slot, config] of Object.entries(model.slots)) {
    const html = site.slots[slot]?.html;
    if (!html) continue; // the site has no content for this slot
    const force = bot ? config.default : preview?.get(slot) ?? null;
    // choose(): what the page, the token and the log need, without decide()'s explanation
    // (scores, probabilities, top features: a fifth of a decision's time, and never sent).
    const decision = choose(model, active, slot, visitor.id, newDecisionId(), force);
    if (typeof html[decision.variant] !== 'string') continue;
    decisions.push({ decision, html: html[decision.variant], logged: !bot && !decision.forced });
  }
  const decisionMs = performance.now() - started;

  const tokens = await Promise.all(decisions.map(({ decision, logged }) => (logged ? signDecision(env.FP_TOKEN_SECRET, decision, nowMs) : null)));
  const slots = new Map();
  decisions.forEach(({ decision, html, logged }, i) => {
    slots.set(decision.slot, { slot: decision.slot, variant: decision.variant, html, token: tokens[i], decision, logged });
  });

  // A decision is logged once its slot is in the stream; the send is batched (decision_log.js).
  const logShown = (prepared) => {
    if (!prepared.logged) return;
    const send = queueDecisions(env, base, [logRecord(prepared.decision, visitor.id, context, prepared.token)]);
    if (send) ctx.waitUntil(send);
  };

  // The rewritten response carries its own mutable copy of the origin's headers: edited in place
  // (no header value below can throw: model_store.js admits only header-safe model versions).
  const personalized = rewriteSlots(response, slots, logShown);
  const headers = personalized.headers;
  headers.set('cache-control', 'private');
  headers.delete('etag');
  headers.delete('last-modified');
  headers.delete('content-length');
  headers.set('x-fp-model', model.model_version);
  headers.append('server-timing', `fp;dur=${decisionMs.toFixed(3)}`);
  if (visitor.setCookie) headers.append('set-cookie', visitor.setCookie);
  if (fromCache) headers.set('x-fp-cache', 'hit');
  if (preview === undefined) headers.set('x-fp-fallback', 'preview-signature');
  return personalized;
}
