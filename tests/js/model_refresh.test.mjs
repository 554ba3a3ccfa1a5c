// Model refresh from GET {FP_ORIGIN}/v1/model: ETag revalidation, invalid models kept out,
// a model that breaks the page path falls back to the origin's HTML.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelSha256 } from '../../edge/src/policy.js';
import { DESKTOP, HOME, page, startOrigin, startWorker, starterModel } from './support.mjs';

async function sealed(changes) {
  const model = { ...structuredClone(starterModel), ...changes };
  model.sha256 = await modelSha256(model);
  return model;
}

/** An origin whose /v1/model serves `current.model` with ETag "<sha256>" (304 on a match). */
function modelRoute(current) {
  return (req, res) => {
    if (typeof current.model === 'string') return res.writeHead(200, { 'content-type': 'application/json' }).end(current.model);
    const etag = `"${current.model.sha256}"`;
    if (req.headers['if-none-match'] === etag) return res.writeHead(304, { etag }).end();
    res.writeHead(200, { 'content-type': 'application/json', etag }).end(JSON.stringify(current.model));
  };
}

/** Request pages until the worker's status shows `refreshes` finished refreshes. */
async function refreshed(mf, refreshes) {
  for (let attempt = 0; attempt < 200; attempt++) {
    await (await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } })).text();
    const status = await (await mf.dispatchFetch('https://shop.example/__fp/status')).json();
    if (status.refreshes >= refreshes && !status.refreshing) return status;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the worker never finished ${refreshes} model refreshes`);
}

async function setup(t, current) {
  const origin = await startOrigin({ '/': page(HOME), '/v1/model': modelRoute(current) });
  const mf = await startWorker({ FP_ORIGIN: origin.url, FP_MODEL_REFRESH_S: '0', FP_DEV: '1' });
  t.after(async () => {
    await mf.dispose();
    await origin.close();
  });
  return { origin, mf };
}

const modelVersionOf = async (mf) => (await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } })).headers.get('x-fp-model');

test('a newer model from the origin replaces the bundled one, revalidated by ETag', async (t) => {
  const current = { model: await sealed({ model_version: '20261125T220000Z-newer' }) };
  const { origin, mf } = await setup(t, current);
  const status = await refreshed(mf, 1);
  assert.equal(status.model_version, '20261125T220000Z-newer');
  assert.equal(status.etag, `"${current.model.sha256}"`);
  assert.equal(status.last_error, null);
  assert.equal(await modelVersionOf(mf), '20261125T220000Z-newer');

  await refreshed(mf, 2);
  const modelRequests = origin.requests.filter((r) => r.path === '/v1/model');
  assert.equal(modelRequests[0].headers['if-none-match'], `"${starterModel.sha256}"`);
  assert.equal(modelRequests[1].headers['if-none-match'], `"${current.model.sha256}"`);
});

test('an invalid model (bad sha256, wrong format, version unfit for a header, not JSON) keeps the last good one', async (t) => {
  const current = { model: await sealed({ model_version: 'good-2' }) };
  const { mf } = await setup(t, current);
  assert.equal((await refreshed(mf, 1)).model_version, 'good-2');

  current.model = { ...(await sealed({ model_version: 'tampered' })), sha256: 'f'.repeat(64) };
  let status = await refreshed(mf, 2);
  assert.equal(status.model_version, 'good-2');
  assert.match(status.last_error, /sha256 does not match/);

  current.model = await sealed({ format: 'firstpaint.model/9', model_version: 'future' });
  status = await refreshed(mf, 3);
  assert.equal(status.model_version, 'good-2');
  assert.match(status.last_error, /format must be/);

  // x-fp-model carries the version: one that is no header value would break every page.
  current.model = await sealed({ model_version: 'v2\r\nset-cookie: fp_vid=forged' });
  status = await refreshed(mf, 4);
  assert.equal(status.model_version, 'good-2');
  assert.match(status.last_error, /model_version must be printable ASCII/);

  current.model = '{"format": "firstpaint.model/1", "slots": ';
  status = await refreshed(mf, 5);
  assert.equal(status.model_version, 'good-2');
  assert.match(status.last_error, /model refresh failed: .*JSON/);
  assert.equal(await modelVersionOf(mf), 'good-2');
});

test('a failing model endpoint keeps the bundled model', async (t) => {
  const origin = await startOrigin({ '/': page(HOME), '/v1/model': (req, res) => res.writeHead(503).end('busy') });
  const mf = await startWorker({ FP_ORIGIN: origin.url, FP_MODEL_REFRESH_S: '0', FP_DEV: '1' });
  t.after(async () => {
    await mf.dispose();
    await origin.close();
  });
  const status = await refreshed(mf, 1);
  assert.equal(status.model_version, starterModel.model_version);
  assert.equal(status.last_error, 'GET /v1/model answered 503');
});

test('a model whose rules break the page path: the origin HTML passes through with x-fp-fallback', async (t) => {
  const broken = structuredClone(starterModel);
  delete broken.features.rules.bot;
  const current = { model: await sealed({ features: broken.features, model_version: 'no-bot-rule' }) };
  const { origin, mf } = await setup(t, current);
  await refreshed(mf, 1);
  const response = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
  assert.equal(response.headers.get('x-fp-fallback'), 'exception');
  assert.equal(await response.text(), HOME);
  assert.ok(origin.decisions.every((d) => d.model_version !== 'no-bot-rule'));
});

test('an invalid bundled model: pages pass through (no-model) until the origin serves a good one', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fp-bad-starter-'));
  const badStarter = path.join(dir, 'model.json');
  fs.writeFileSync(badStarter, JSON.stringify({ ...starterModel, sha256: '0'.repeat(64) }));
  const current = { model: null };
  const origin = await startOrigin({
    '/': page(HOME),
    '/v1/model': (req, res) => {
      if (!current.model) return res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"no model published yet"}');
      res.writeHead(200, { 'content-type': 'application/json', etag: `"${current.model.sha256}"` }).end(JSON.stringify(current.model));
    },
  });
  const mf = await startWorker({ FP_ORIGIN: origin.url, FP_MODEL_REFRESH_S: '0', FP_DEV: '1' }, { modelPath: badStarter });
  t.after(async () => {
    await mf.dispose();
    await origin.close();
  });
  const first = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
  assert.equal(first.headers.get('x-fp-fallback'), 'no-model');
  assert.equal(await first.text(), HOME);
  let status = await (await mf.dispatchFetch('https://shop.example/__fp/status')).json();
  assert.equal(status.model_version, null);
  assert.match(status.last_error ?? '', /starter model rejected: sha256|GET \/v1\/model answered 503/);

  current.model = await sealed({ model_version: 'from-origin' });
  status = await refreshed(mf, 2);
  assert.equal(status.model_version, 'from-origin');
  const later = await mf.dispatchFetch('https://shop.example/', { headers: { 'user-agent': DESKTOP } });
  assert.equal(later.headers.get('x-fp-fallback'), null);
  assert.equal(later.headers.get('x-fp-model'), 'from-origin');
  await later.text();
});
