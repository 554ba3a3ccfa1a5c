// Helpers for the JS tests: the worker inside workerd (Miniflare) and small origins on 127.0.0.1.

import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';
import { bundleWorker } from '../../edge/build.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const COMPATIBILITY_DATE = '2026-04-01';
export const SECRET = 'test-secret-0123456789';

// mulberry32: a small seeded PRNG, so a failure is reproducible from its seed.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const site = JSON.parse(fs.readFileSync(path.join(ROOT, 'edge/src/site.json'), 'utf8'));
export const starterModel = JSON.parse(fs.readFileSync(path.join(ROOT, 'edge/src/model.json'), 'utf8'));

const bundles = new Map();

/** The esbuild bundle of `entry` (built once per test process), optionally with another starter model. */
export async function bundle(entry = path.join(ROOT, 'edge/src/worker.js'), modelPath = null) {
  const key = `${entry}\0${modelPath}`;
  if (!bundles.has(key)) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fp-edge-'));
    bundles.set(key, await bundleWorker({ entry, modelPath, outfile: path.join(dir, 'worker.js') }));
  }
  return bundles.get(key);
}

/** A Miniflare (workerd) instance running the worker with `vars`; dispose it when done. */
export async function startWorker(vars, { entry, modelPath } = {}) {
  const scriptPath = await bundle(entry, modelPath);
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: path.dirname(scriptPath),
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { FP_TOKEN_SECRET: SECRET, FP_MODEL_REFRESH_S: '3600', ...vars },
  });
  await mf.ready;
  return mf;
}

/**
 * An HTTP origin on 127.0.0.1 whose pages come from `routes` (path → handler(req, res, body)).
 * It records every request (`requests`) and every decision batch it is sent (`decisions`).
 */
export async function startOrigin(routes = {}) {
  const requests = [];
  const decisions = [];
  const waiters = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://origin');
    requests.push({ method: req.method, path: url.pathname, headers: req.headers, body });
    if (req.method === 'POST' && url.pathname === '/v1/decisions') {
      decisions.push(...JSON.parse(body).decisions);
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"accepted":true}');
      for (const w of waiters.splice(0)) w();
      return;
    }
    const route = routes[url.pathname];
    if (!route) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    await route(req, res, body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    decisions,
    /** Resolves once at least `n` decisions have arrived (the worker sends them in waitUntil). */
    async waitForDecisions(n, attempts = 200) {
      while (decisions.length < n && attempts-- > 0) {
        await new Promise((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
      return decisions;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A test origin serving `routes` and the worker in front of it, both closed after test `t`. */
export async function setup(t, routes, vars = {}) {
  const origin = await startOrigin(routes);
  const mf = await startWorker({ FP_ORIGIN: origin.url, ...vars });
  t.after(async () => {
    await mf.dispose();
    await origin.close();
  });
  return { origin, mf };
}

/** A route answering `html` as a text/html page, with extra headers. */
export function page(html, headers = {}) {
  return (req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(html);
}

export const HOME = `<!doctype html><html><head><title>Trailhead</title></head><body>
<header>Trailhead Outfitters</header>
<div class="hero" data-fp-slot="hero"><h1>Gear for every trail</h1></div>
<main><p>Welcome.</p></main>
<aside data-fp-slot="promo"><p>Free shipping on orders over $50.</p></aside>
<div data-fp-slot="unknown-slot"><p>left alone</p></div>
</body></html>`;

export const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';
export const DESKTOP = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36';
export const GOOGLEBOT = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

/** Attributes of the element carrying data-fp-slot=`slot` in `html` (a small test parser). */
export function slotElement(html, slot) {
  const match = new RegExp(`<(\\w+)([^>]*data-fp-slot="${slot}"[^>]*)>([\\s\\S]*?)</\\1>`).exec(html);
  if (!match) return null;
  const attributes = {};
  for (const [, name, value] of match[2].matchAll(/([\w-]+)="([^"]*)"/g)) attributes[name] = value;
  return { attributes, inner: match[3] };
}
