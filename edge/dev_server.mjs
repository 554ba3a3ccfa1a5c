// Serve the worker over HTTP from workerd (Miniflare) on 127.0.0.1 — what tests/support_edge.py
// and the benchmark start. Prints `ready <url>` once it accepts requests; SIGTERM stops it.
//   node edge/dev_server.mjs --port 8788 --origin http://127.0.0.1:8787 [--var NAME=VALUE]…
//                            [--cf '{"country":"US","timezone":"America/New_York"}'] [--entry file.js]
// Secrets come from the environment (FP_TOKEN_SECRET), never from the command line.
// Per request, the header `MF-CF-Blob: <json>` replaces `request.cf` (Miniflare's own hook).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Miniflare } from 'miniflare';
import { bundleWorker, WORKER_ENTRY } from './build.mjs';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    origin: { type: 'string' },
    var: { type: 'string', multiple: true, default: [] },
    cf: { type: 'string' },
    entry: { type: 'string' },
  },
});

const bindings = {};
for (const item of values.var) {
  const eq = item.indexOf('=');
  if (eq <= 0) throw new Error(`--var wants NAME=VALUE, got ${JSON.stringify(item)}`);
  bindings[item.slice(0, eq)] = item.slice(eq + 1);
}
if (values.origin) bindings.FP_ORIGIN = values.origin;
if (process.env.FP_TOKEN_SECRET) bindings.FP_TOKEN_SECRET = process.env.FP_TOKEN_SECRET;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fp-edge-dev-'));
const scriptPath = await bundleWorker({ entry: values.entry ? path.resolve(values.entry) : WORKER_ENTRY, outfile: path.join(dir, 'worker.js') });
const mf = new Miniflare({
  modules: true,
  scriptPath,
  modulesRoot: dir,
  compatibilityDate: '2026-04-01',
  bindings,
  host: '127.0.0.1',
  port: Number(values.port),
  cf: values.cf ? JSON.parse(values.cf) : { country: 'US', timezone: 'America/New_York' },
});
const url = await mf.ready;
console.log(`ready ${url.origin}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
