// Hardening of the edge worker inside workerd (Miniflare), in front of small HTTP origins:
// hostile request input never reaches the HTML, a corrupt model is refused by its sha256, and
// with the origin stopped the worker still serves cached pages with its last good model.
import test from 'node:test';
import assert from 'node:assert/strict';
import { modelSha256 } from '../../edge/src/policy.js';
import { DESKTOP, HOME, page, setup, site, slotElement, startOrigin, startWorker, starterModel } from './support.mjs';

const MARK = 'fpXSS';
const PAYLOADS = [
  `"><script>${MARK}(1)</script>`,
  `javascript:${MARK}(1)`,
  `"onmouseover="${MARK}(1)`,
  `'><img src=x onerror=${MARK}(1)>`,
  `</script><script>${MARK}(2)</script>`,
  `\\u003cscript\\u003e${MARK}(3)\\u003c/script\\u003e`,
  `%3Cscript%3E${MARK}(4)%3C%2Fscript%3E`,
  `<svg/onload=${MARK}(5)>`,
];
const VARIANT_HTML = new Set(Object.values(site.slots).flatMap((slot) => Object.values(slot.html)));
const TOKEN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/;

/** Every slot the page carries holds site.json HTML and safe attributes, and no payload leaked. */
function assertClean(html, response) {
  assert.ok(!html.includes(MARK), `a payload reached the HTML:\n${html}`);
  for (const slot of ['hero', 'promo']) {
    const element = slotElement(html, slot);
    assert.ok(VARIANT_HTML.has(element.inner), `${slot} holds HTML that is not from site.json`);
    assert.ok(site.slots[slot].variants.includes(element.attributes['data-fp-variant']));
    const token = element.attributes['data-fp-decision'];
    assert.ok(token === undefined || TOKEN.test(token), token);
  }
  const cookie = response.headers.get('set-cookie');
  assert.ok(cookie === null || /^fp_vid=([0-9a-f]{32})?; /.test(cookie), cookie);
  for (const [name, value] of response.headers) assert.ok(!value.includes(MARK), `header ${name}: ${value}`);
}

test('referrer, UTM values, Accept-Language, cookies and the URL never reach the HTML', async (t) => {
  const { origin, mf } = await setup(t, { '/': page(HOME), '/running': page(HOME) });
  let tried = 0;
  for (const payload of PAYLOADS) {
    const query = new URLSearchParams({ utm_source: payload, utm_medium: payload, utm_campaign: payload, q: payload });
    const requests = [
      [`https://shop.example/?${query}`, { referer: `https://www.google.com/search?q=${encodeURIComponent(payload)}` }],
      ['https://shop.example/running', { referer: payload, 'accept-language': `${payload},en;q=0.5` }],
      ['https://shop.example/', { cookie: `fp_vid=${payload}; fp_consent=${payload}`, 'sec-ch-ua-mobile': payload }],
      ['https://shop.example/', { 'user-agent': `${DESKTOP} ${payload}`, cookie: `fp_vid="${payload}"` }],
    ];
    for (const [url, headers] of requests) {
      const clean = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.replace(/[^\x20-\x7e]/g, '')]));
      const response = await mf.dispatchFetch(url, { headers: { 'user-agent': DESKTOP, ...clean }, cf: { country: payload, timezone: payload } });
      assert.equal(response.status, 200);
      assertClean(await response.text(), response);
      tried += 1;
    }
  }
  // The decision log carries the raw context (it is data, JSON-encoded), never HTML.
  const logged = await origin.waitForDecisions(2 * tried);
  assert.ok(logged.length >= 2 * tried);
  console.log(`edge injection: ${tried} hostile requests, ${PAYLOADS.length} payloads`);
});

test('a preview naming a variant that is not in site.json cannot inject HTML', async (t) => {
  const { mf } = await setup(t, { '/': page(HOME) }, { FP_DEV: '1' });
  for (const payload of PAYLOADS) {
    const url = `https://shop.example/?fp_preview=${encodeURIComponent(`hero:${payload},promo:${payload}`)}`;
    const response = await mf.dispatchFetch(url, { headers: { 'user-agent': DESKTOP } });
    const html = await response.text();
    assert.ok(!html.includes(MARK), html);
    for (const slot of ['hero', 'promo']) assert.ok(VARIANT_HTML.has(slotElement(html, slot).inner));
  }
});

async function sealed(model, version) {
  const copy = structuredClone(model);
  copy.model_version = version;
  delete copy.sha256;
  copy.sha256 = await modelSha256(copy);
  return copy;
}

async function status(mf) {
  return (await mf.dispatchFetch('https://shop.example/__fp/status')).json();
}

async function until(mf, predicate, what) {
  for (let i = 0; i < 200; i++) {
    const now = await status(mf);
    if (predicate(now)) return now;
    await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } }).then((r) => r.text());
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await status(mf))}`);
}

test('corrupt model refused by sha256; origin stopped → cached pages with the last good model', async (t) => {
  const newer = await sealed(starterModel, '20261125T220000Z-edgefalt');
  const corrupt = structuredClone(await sealed(starterModel, '20261125T230000Z-corrupt0'));
  corrupt.slots.hero.bias[corrupt.slots.hero.default] = 50; // content changed, sha256 kept
  let served = corrupt;
  const origin = await startOrigin({
    '/': page(HOME, { 'cache-control': 'public, max-age=600' }),
    '/v1/model': (req, res) => res.writeHead(200, { 'content-type': 'application/json', etag: `"${served.sha256}"` }).end(JSON.stringify(served)),
  });
  const mf = await startWorker({ FP_ORIGIN: origin.url, FP_MODEL_REFRESH_S: '0', FP_DEV: '1' });
  t.after(() => mf.dispose());

  const rejected = await until(mf, (s) => /sha256/.test(s.last_error || ''), 'the corrupt model to be refused');
  assert.equal(rejected.model_version, starterModel.model_version);

  served = newer;
  await until(mf, (s) => s.model_version === newer.model_version, 'the newer model');
  const primed = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
  await primed.text();

  await origin.close(); // the origin is down from here on
  for (let i = 0; i < 3; i++) {
    const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
    const html = await response.text();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-fp-cache'), 'hit');
    assert.equal(response.headers.get('x-fp-model'), newer.model_version);
    assert.equal(response.headers.get('x-fp-fallback'), null);
    assertClean(html, response);
  }
  const after = await until(mf, (s) => /refresh failed/.test(s.last_error || ''), 'a failed refresh');
  assert.equal(after.model_version, newer.model_version);

  const uncached = await mf.dispatchFetch('https://shop.example/never-cached', { headers: { 'user-agent': DESKTOP } });
  await uncached.text();
  assert.equal(uncached.status, 502);
  assert.equal(uncached.headers.get('x-fp-fallback'), 'origin-unreachable');
});
