// Bundle the worker (or any worker entry) with esbuild, the way `wrangler deploy` does:
// one ES module, JSON imported as objects. Used by the JS tests, the bench and tests/support_edge.py.
//   node edge/build.mjs [outfile] [--no-model]   (--no-model leaves model.json out, for the size budget)

import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const EDGE_DIR = path.dirname(fileURLToPath(import.meta.url));
export const WORKER_ENTRY = path.join(EDGE_DIR, 'src', 'worker.js');

// Tests bundle the worker with another starter model (`modelPath`) in place of src/model.json.
function replaceModel(modelPath) {
  return {
    name: 'replace-model',
    setup(b) {
      b.onResolve({ filter: /^\.\/model\.json$/ }, () => ({ path: path.resolve(modelPath) }));
    },
  };
}

/**
 * Bundle `entry` into `outfile`; with `withoutModel`, `./model.json` stays an external import;
 * with `modelPath`, that file is bundled as the starter model instead.
 */
export async function bundleWorker({ entry = WORKER_ENTRY, outfile, withoutModel = false, modelPath = null, minify = false }) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    minify,
    logLevel: 'error',
    external: withoutModel ? ['./model.json'] : [],
    plugins: modelPath ? [replaceModel(modelPath)] : [],
  });
  return outfile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const outfile = args.find((a) => !a.startsWith('--')) || path.join(EDGE_DIR, '..', 'build', 'edge', 'worker.js');
  await bundleWorker({ outfile, withoutModel: args.includes('--no-model'), minify: args.includes('--minify') });
  console.log(outfile);
}
