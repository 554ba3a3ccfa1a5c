// The worker inside workerd (Miniflare) in front of small HTTP origins on 127.0.0.1.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { decide } from '../../edge/src/policy.js';
import { DESKTOP, GOOGLEBOT, HOME, IPHONE, SECRET, page, setup, site, slotElement, startOrigin, startWorker, starterModel } from './support.mjs';

const MORNING_NY = { country: 'US', timezone: 'America/New_York' };

function verifyToken(token) {
  const [encoded, signature] = token.split('.');
  const expected = crypto.createHmac('sha256', SECRET).update(encoded).digest('base64url');
  assert.equal(signature, expected, 'token signature');
  return JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
}

test('several slots are rewritten with the chosen variants, signed and logged', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME) });
  const response = await mf.dispatchFetch('https://shop.example/?utm_source=newsletter&utm_medium=email', {
    headers: { 'user-agent': DESKTOP, 'accept-language': 'en-GB,en;q=0.8' },
    cf: MORNING_NY,
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('cache-control'), 'private');
  assert.ok(!(response.headers.get('vary') || '').toLowerCase().includes('cookie'));
  assert.match(response.headers.get('server-timing'), /^fp;dur=\d+(\.\d+)?$/);
  assert.equal(response.headers.get('x-fp-fallback'), null);
  const html = await response.text();

  const decisions = await origin.waitForDecisions(2);
  assert.deepEqual(decisions.map((d) => d.slot).sort(), ['hero', 'promo']);
  for (const record of decisions) {
    const element = slotElement(html, record.slot);
    assert.equal(element.attributes['data-fp-variant'], record.variant);
    assert.equal(element.inner, site.slots[record.slot].html[record.variant]);
    assert.equal(element.attributes['data-fp-decision'], record.token);
    const claims = verifyToken(record.token);
    assert.deepEqual(claims, {
      d: record.decision_id, s: record.slot, v: record.variant, p: record.propensity, m: starterModel.model_version, t: record.ts_ms,
    });
    assert.deepEqual(Object.keys(record).sort(), ['context', 'decision_id', 'holdout', 'model_version', 'propensity', 'slot', 'token', 'ts_ms', 'variant', 'visitor_id']);
    assert.equal(record.context.timezone, 'America/New_York');
    assert.equal(record.context.country, 'US');
    assert.equal(record.context.user_agent, DESKTOP);
    assert.equal(record.context.returning, false);
    // The logged inputs reproduce the decision with the same policy outside workerd.
    const again = decide(starterModel, record.context, record.slot, record.visitor_id, record.decision_id);
    assert.equal(again.variant, record.variant);
    assert.equal(again.propensity, record.propensity);
  }
  assert.deepEqual(slotElement(html, 'unknown-slot'), { attributes: { 'data-fp-slot': 'unknown-slot' }, inner: '<p>left alone</p>' });
  const cookie = response.headers.get('set-cookie');
  assert.match(cookie, /^fp_vid=[0-9a-f]{32}; Max-Age=31536000; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
  assert.equal(decisions[0].visitor_id, cookie.slice('fp_vid='.length, cookie.indexOf(';')));
});

test('a page with one slot gets one decision; a returning visitor keeps their id', async (t) => {
  const { origin, mf } = await setup(t, { '/running': page('<html><body><section data-fp-slot="hero">old</section></body></html>') });
  const response = await mf.dispatchFetch('https://shop.example/running', {
    headers: { 'user-agent': IPHONE, cookie: 'fp_vid=visitor-returning-1' },
    cf: MORNING_NY,
  });
  const element = slotElement(await response.text(), 'hero');
  assert.ok(site.slots.hero.variants.includes(element.attributes['data-fp-variant']));
  assert.equal(response.headers.get('set-cookie'), null);
  const [record] = await origin.waitForDecisions(1);
  assert.equal(origin.decisions.length, 1);
  assert.equal(record.visitor_id, 'visitor-returning-1');
  assert.equal(record.context.returning, true);
  assert.equal(record.context.url, 'https://shop.example/running');
});

test('non-HTML responses, errors and POSTs pass through untouched', async (t) => {
  const json = '{"items":[1,2,3],"html":"<div data-fp-slot=\\"hero\\">x</div>"}';
  const { origin, mf } = await setup(t, {
    '/api': (req, res) => res.writeHead(200, { 'content-type': 'application/json', etag: '"abc"' }).end(json),
    '/form': (req, res, body) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<div data-fp-slot="hero">${body}</div>`),
  });
  const api = await mf.dispatchFetch('https://shop.example/api', { headers: { 'user-agent': DESKTOP } });
  assert.equal(await api.text(), json);
  assert.equal(api.headers.get('etag'), '"abc"');
  assert.equal(api.headers.get('set-cookie'), null);
  const missing = await mf.dispatchFetch('https://shop.example/nope');
  assert.equal(missing.status, 404);
  assert.equal(await missing.text(), 'not found');
  const posted = await mf.dispatchFetch('https://shop.example/form', { method: 'POST', body: 'sent' });
  assert.equal(await posted.text(), '<div data-fp-slot="hero">sent</div>');
  // A page request afterwards is logged; nothing before it was.
  await (await mf.dispatchFetch('https://shop.example/form', { headers: { 'user-agent': DESKTOP } })).text();
  await origin.waitForDecisions(1);
  assert.equal(origin.decisions.length, 1);
});

test('the page streams: rewritten bytes reach the client before the origin has finished', async (t) => {
  let releaseRest;
  const rest = new Promise((resolve) => {
    releaseRest = resolve;
  });
  const events = [];
  const slow = async (req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.write(`<html><body><div data-fp-slot="hero">original hero</div><p>${'first part '.repeat(200)}</p>`);
    events.push('origin sent the first part');
    await rest;
    events.push('origin sends the rest');
    res.end('<footer>end</footer></body></html>');
  };
  const { mf } = await setup(t, { '/': slow });
  // identity: with gzip, Miniflare's entry worker compresses the whole reply for the client and
  // its compressor holds small chunks back — the worker's own stream is what is measured here.
  const response = await mf.dispatchFetch('https://shop.example/', {
    headers: { 'user-agent': DESKTOP, 'accept-encoding': 'identity' },
    cf: MORNING_NY,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let received = '';
  while (!received.includes('</div>')) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'the stream ended before the slot arrived');
    received += decoder.decode(value, { stream: true });
  }
  events.push('client received the rewritten hero');
  const variant = slotElement(received, 'hero').attributes['data-fp-variant'];
  assert.ok(received.includes(site.slots.hero.html[variant]));
  assert.ok(!received.includes('original hero'));
  releaseRest();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    received += decoder.decode(value, { stream: true });
  }
  assert.ok(received.endsWith('<footer>end</footer></body></html>'));
  assert.deepEqual(events, ['origin sent the first part', 'client received the rewritten hero', 'origin sends the rest']);
});

test('bots get the default variant, no cookie, no token, and are not logged', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME) });
  const response = await mf.dispatchFetch('https://shop.example/?utm_medium=email', { headers: { 'user-agent': GOOGLEBOT } });
  const html = await response.text();
  for (const slot of ['hero', 'promo']) {
    const element = slotElement(html, slot);
    assert.equal(element.attributes['data-fp-variant'], site.slots[slot].default);
    assert.equal(element.attributes['data-fp-decision'], undefined);
  }
  assert.equal(response.headers.get('set-cookie'), null);
  await (await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } })).text();
  const decisions = await origin.waitForDecisions(2);
  assert.equal(decisions.length, 2);
  assert.ok(decisions.every((d) => d.context.user_agent === DESKTOP));
});

test('consent-required mode: no cookie and no visitor id until fp_consent=1', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME) }, { FP_CONSENT_REQUIRED: '1' });
  const anonymous = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP, cookie: 'fp_vid=visitor-from-before' } });
  const html = await anonymous.text();
  assert.equal(anonymous.headers.get('set-cookie'), 'fp_vid=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax');
  assert.ok(slotElement(html, 'hero').attributes['data-fp-decision']);
  const first = await origin.waitForDecisions(2);
  assert.ok(first.every((d) => d.visitor_id === '' && !('returning' in d.context)));

  const consented = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP, cookie: 'fp_consent=1' } });
  await consented.text();
  assert.match(consented.headers.get('set-cookie'), /^fp_vid=[0-9a-f]{32};.*HttpOnly; Secure; SameSite=Lax$/);
  const all = await origin.waitForDecisions(4);
  assert.ok(all.slice(2).every((d) => d.visitor_id.length === 32 && d.context.returning === false));
});

test('without consent-required mode, fp_consent=0 still turns the cookie off', async (t) => {
  const { mf } = await setup(t, { '/': page(HOME) });
  const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP, cookie: 'fp_consent=0' } });
  await response.text();
  assert.equal(response.headers.get('set-cookie'), null);
});

test('a signed preview forces variants and is not logged; a bad signature is ignored', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME) });
  const value = 'hero:camping,promo:reviews';
  const sig = crypto.createHmac('sha256', SECRET).update(`fp_preview\x1f${value}`).digest('base64url');
  const forced = await mf.dispatchFetch(`https://shop.example/?fp_preview=${encodeURIComponent(value)}&fp_sig=${sig}`, { headers: { 'user-agent': DESKTOP } });
  const html = await forced.text();
  assert.equal(slotElement(html, 'hero').attributes['data-fp-variant'], 'camping');
  assert.equal(slotElement(html, 'hero').inner, site.slots.hero.html.camping);
  assert.equal(slotElement(html, 'promo').attributes['data-fp-variant'], 'reviews');
  assert.equal(slotElement(html, 'hero').attributes['data-fp-decision'], undefined);

  const unsigned = await mf.dispatchFetch(`https://shop.example/?fp_preview=hero:camping&fp_sig=${sig}`, { headers: { 'user-agent': DESKTOP } });
  await unsigned.text();
  assert.equal(unsigned.headers.get('x-fp-fallback'), 'preview-signature');
  const decisions = await origin.waitForDecisions(2);
  assert.equal(decisions.length, 2, 'only the unsigned request was logged');
  assert.ok(decisions.every((d) => d.context.url.includes('fp_preview=hero:camping&')));
});

test('in dev mode a preview needs no signature', async (t) => {
  const { mf } = await setup(t, { '/': page(HOME) }, { FP_DEV: '1' });
  const response = await mf.dispatchFetch('https://shop.example/?fp_preview=hero:sale', { headers: { 'user-agent': DESKTOP } });
  assert.equal(slotElement(await response.text(), 'hero').attributes['data-fp-variant'], 'sale');
});

test('fallbacks: unreachable origin, missing secret', async (t) => {
  const closed = await startOrigin({});
  await closed.close();
  const down = await startWorker({ FP_ORIGIN: closed.url });
  t.after(() => down.dispose());
  const unreachable = await down.dispatchFetch('https://shop.example/');
  assert.equal(unreachable.status, 502);
  assert.equal(unreachable.headers.get('x-fp-fallback'), 'origin-unreachable');
  await unreachable.text();

  const { origin, mf } = await setup(t, { '/': page(HOME) }, { FP_TOKEN_SECRET: '' });
  const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
  assert.equal(response.headers.get('x-fp-fallback'), 'no-token-secret');
  assert.equal(await response.text(), HOME);
  assert.equal(origin.decisions.length, 0);
});

test('cacheable origin HTML is cached un-personalized and personalized per request', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME, { 'cache-control': 'public, max-age=300' }) });
  const variants = [];
  for (let i = 0; i < 3; i++) {
    const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP }, cf: MORNING_NY });
    const html = await response.text();
    assert.equal(response.headers.get('cache-control'), 'private');
    assert.equal(response.headers.get('x-fp-cache'), i === 0 ? null : 'hit');
    variants.push(slotElement(html, 'hero').attributes['data-fp-decision']);
  }
  assert.equal(origin.requests.filter((r) => r.path === '/').length, 1);
  assert.equal(new Set(variants).size, 3, 'every request got its own decision');
});

test('a visitor id minted at the edge is the one the origin sees', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME) });
  const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP, cookie: 'theme=dark' } });
  await response.text();
  const minted = /^fp_vid=([0-9a-f]{32});/.exec(response.headers.get('set-cookie'))[1];
  const seen = origin.requests.find((r) => r.path === '/');
  assert.equal(seen.headers.cookie, `theme=dark; fp_vid=${minted}`);
});

test('a slot the origin already decided is left as the origin rendered it', async (t) => {
  const decided = '<div data-fp-slot="hero" data-fp-variant="sale" data-fp-decision="origin-token">origin sale</div><aside data-fp-slot="promo">x</aside>';
  const { origin, mf } = await setup(t, { '/sale': page(decided) });
  const response = await mf.dispatchFetch('https://shop.example/sale', { headers: { 'user-agent': DESKTOP } });
  const html = await response.text();
  assert.ok(html.startsWith('<div data-fp-slot="hero" data-fp-variant="sale" data-fp-decision="origin-token">origin sale</div>'));
  const decisions = await origin.waitForDecisions(1);
  assert.deepEqual(decisions.map((d) => d.slot), ['promo']);
});

test('origin HTML that may not be cached is fetched every time, and HEAD passes through', async (t) => {
  const { origin, mf } = await setup(t, {
    '/': page(HOME, { 'cache-control': 'no-store' }),
    '/cookie': page(HOME, { 'cache-control': 'public, max-age=300', 'set-cookie': 'session=abc' }),
  });
  for (const path of ['/', '/', '/cookie', '/cookie']) {
    const response = await mf.dispatchFetch(`https://shop.example${path}`, { headers: { 'user-agent': DESKTOP } });
    assert.equal(response.headers.get('x-fp-cache'), null);
    assert.ok(slotElement(await response.text(), 'hero').attributes['data-fp-variant']);
  }
  assert.equal(origin.requests.filter((r) => r.path === '/').length, 2);
  assert.equal(origin.requests.filter((r) => r.path === '/cookie').length, 2);
  const head = await mf.dispatchFetch('https://shop.example/', { method: 'HEAD', headers: { 'user-agent': DESKTOP } });
  assert.equal(head.headers.get('x-fp-model'), null);
  assert.equal(head.headers.get('cache-control'), 'no-store');
});

test('decisions from many pages share one POST /v1/decisions', async (t) => {
  // A batch is sent when it holds 100 decisions, or after FP_LOG_BATCH_MS (here: never).
  const { origin, mf } = await setup(t, { '/': page(HOME) }, { FP_LOG_BATCH_MS: '3600000' });
  for (let i = 0; i < 50; i++) {
    await (await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } })).text();
  }
  const decisions = await origin.waitForDecisions(100);
  assert.equal(decisions.length, 100);
  assert.equal(origin.requests.filter((r) => r.path === '/v1/decisions').length, 1);
  assert.equal(new Set(decisions.map((d) => d.decision_id)).size, 100);
});
