// The rewriting worker vs a pass-through worker in front of the same origin, in one run: added
// latency (sequential requests, interleaved) and throughput (concurrent clients, alternating
// rounds). Everything on 127.0.0.1; loops are bounded by request counts. Prints JSON.
//   node edge/bench/http.mjs [sequential] [concurrent_total] [concurrency] [origin_url]
// Without `origin_url` the origin is a trivial Node server answering one fixed page (so the
// figures are the workers' own cost); with it, that origin's `/` (e.g. the demo site), the
// workers' token secret then coming from FP_TOKEN_SECRET so the origin accepts their decisions.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';
import { bundleWorker } from '../build.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const [sequential = 400, concurrentTotal = 1200, concurrency = 8] = process.argv.slice(2, 5).map(Number);
const externalOrigin = process.argv[5];

const PAGE = `<!doctype html><html><head><title>Trailhead</title></head><body>
<div class="hero" data-fp-slot="hero"><h1>Gear for every trail</h1></div>
${'<section><h2>Product</h2><p>Waterproof, breathable, tested on the trail.</p></section>\n'.repeat(150)}
<aside data-fp-slot="promo"><p>Free shipping on orders over $50.</p></aside></body></html>`;

const origin = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url.startsWith('/v1/decisions')) return res.writeHead(202).end();
    if (req.url.startsWith('/v1/model')) return res.writeHead(304).end();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
  });
});
if (!externalOrigin) await new Promise((resolve) => origin.listen(0, '127.0.0.1', resolve));
const originUrl = externalOrigin ?? `http://127.0.0.1:${origin.address().port}`;
const secret = externalOrigin ? process.env.FP_TOKEN_SECRET : 'bench-secret';
if (!secret) throw new Error('FP_TOKEN_SECRET must be the origin\'s token secret');

function childPids() {
  try {
    return execFileSync('pgrep', ['-P', String(process.pid)]).toString().trim().split('\n').map(Number);
  } catch {
    return [];
  }
}

/** CPU time (ms) a process has used so far, from /proc (Linux). */
function cpuMs(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * (1000 / 100); // utime + stime, in 1/100 s
}

async function worker(entry, name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `fp-bench-${name}-`));
  const scriptPath = await bundleWorker({ entry, outfile: path.join(dir, 'worker.js') });
  const before = new Set(childPids());
  const mf = new Miniflare({
    modules: true, scriptPath, modulesRoot: dir, compatibilityDate: '2026-04-01', host: '127.0.0.1', port: 0,
    bindings: { FP_ORIGIN: originUrl, FP_TOKEN_SECRET: secret, FP_MODEL_REFRESH_S: '3600' },
    cf: { country: 'US', timezone: 'America/New_York' },
  });
  const url = (await mf.ready).origin;
  const pid = childPids().find((p) => !before.has(p)); // its workerd process
  return { mf, url, dir, pid };
}

const rewriting = await worker(path.join(HERE, '..', 'src', 'worker.js'), 'rewrite');
const passing = await worker(path.join(HERE, 'passthrough.js'), 'pass');
const floor = await worker(path.join(HERE, 'noop_rewriter.js'), 'floor');
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const HEADERS = {
  'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1',
  referer: 'https://www.google.com/',
  'accept-encoding': 'identity',
};

function get(base, retried = false) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const request = http.get(`${base}/?utm_source=newsletter`, { agent, headers: HEADERS }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => (bytes += chunk.length));
      res.on('end', () => resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, bytes, rewritten: res.headers['x-fp-model'] !== undefined }));
    });
    request.on('error', (error) => {
      // A kept-alive socket the server closed while it idled (during another worker's round):
      // Node's documented race; the request never reached the worker, so it is sent again.
      if (!retried && request.reusedSocket && error.code === 'ECONNRESET') resolve(get(base, true));
      else reject(error);
    });
  });
}

const quantile = (values, q) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))];

let pageBytes = 0; // the origin's page, as the pass-through worker delivers it
for (let i = 0; i < 100; i++) {
  await get(rewriting.url);
  pageBytes = (await get(passing.url)).bytes;
}
const latency = { rewrite: [], pass: [] };
let rewrittenPages = 0;
for (let i = 0; i < sequential; i++) {
  const order = i % 2 ? [['pass', passing], ['rewrite', rewriting]] : [['rewrite', rewriting], ['pass', passing]];
  for (const [name, target] of order) {
    const result = await get(target.url);
    latency[name].push(result.ms);
    if (name === 'rewrite' && result.rewritten) rewrittenPages++;
  }
}

async function throughput(target, total) {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < total) await get(target.url);
  }));
  return total / (Number(process.hrtime.bigint() - started) / 1e9);
}
// Rounds of pass-through / rewriting / no-op-rewriter, in rotating order: the machine's other
// load drifts, so a ratio is the median of the rounds' own ratios rather than one long run each.
const ROUNDS = 15;
const perRound = Math.ceil(concurrentTotal / ROUNDS);
const rounds = { rewrite: [], pass: [], floor: [] };
const cpu = { rewrite: 0, pass: 0, floor: 0 };
for (let round = 0; round < ROUNDS; round++) {
  const order = [['pass', passing], ['rewrite', rewriting], ['floor', floor]];
  for (let k = 0; k < round % 3; k++) order.push(order.shift());
  for (const [name, target] of order) {
    const cpuBefore = cpuMs(target.pid);
    rounds[name].push(await throughput(target, perRound));
    cpu[name] += cpuMs(target.pid) - cpuBefore;
  }
}
const total = (values) => values.reduce((a, b) => a + b, 0);
const ratios = rounds.rewrite.map((rps, i) => rps / rounds.pass[i]);
const floorRatios = rounds.rewrite.map((rps, i) => rps / rounds.floor[i]);
// The ceiling of any worker that rewrites with HTMLRewriter here: the no-op one over pass-through.
const ceilingRatios = rounds.floor.map((rps, i) => rps / rounds.pass[i]);

const result = {
  added_p50_ms: +(quantile(latency.rewrite, 0.5) - quantile(latency.pass, 0.5)).toFixed(3),
  added_p99_ms: +(quantile(latency.rewrite, 0.99) - quantile(latency.pass, 0.99)).toFixed(3),
  rewrite_p50_ms: +quantile(latency.rewrite, 0.5).toFixed(3),
  passthrough_p50_ms: +quantile(latency.pass, 0.5).toFixed(3),
  throughput_ratio: +quantile(ratios, 0.5).toFixed(3),
  throughput_ratio_rounds: ratios.map((r) => +r.toFixed(3)),
  throughput_ratio_vs_noop_rewriter: +quantile(floorRatios, 0.5).toFixed(3),
  noop_rewriter_throughput_ratio: +quantile(ceilingRatios, 0.5).toFixed(3),
  noop_rewriter_rps: +(total(rounds.floor) / rounds.floor.length).toFixed(1),
  rewrite_rps: +(total(rounds.rewrite) / rounds.rewrite.length).toFixed(1),
  passthrough_rps: +(total(rounds.pass) / rounds.pass.length).toFixed(1),
  workerd_cpu_ms_per_request_rewrite: +(cpu.rewrite / (perRound * ROUNDS)).toFixed(3),
  workerd_cpu_ms_per_request_passthrough: +(cpu.pass / (perRound * ROUNDS)).toFixed(3),
  workerd_cpu_ms_per_request_noop_rewriter: +(cpu.floor / (perRound * ROUNDS)).toFixed(3),
  sequential_requests_each: sequential,
  concurrent_requests_each: perRound * ROUNDS,
  concurrency,
  page_bytes: pageBytes,
  rewritten_pages: rewrittenPages,
};
agent.destroy();
for (const w of [rewriting, passing, floor]) {
  await w.mf.dispose();
  fs.rmSync(w.dir, { recursive: true, force: true });
}
if (!externalOrigin) origin.close();
console.log(JSON.stringify(result));
