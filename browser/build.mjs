// Build the browser artefacts into browser/dist/ (served by the origin under /fp/):
//   snippet.js          the snippet's code (IIFE, minified; the origin serves it inside
//                       /fp/firstpaint.js, after the model; shares edge/src/features.js and
//                       policy.js, with browser/src/time_zones.js for edge/src/time_zones.js)
//   after-paint.mjs     what the snippet imports once the document is parsed (events, Pyodide)
//   pyodide-worker.mjs  the module Web Worker that runs the Python policy in Pyodide
//   firstpaint-*.whl    the project's pure-Python wheel (model_export), `pip wheel --no-deps`
//   tzdata-*.whl        IANA zones for zoneinfo inside Pyodide (its npm package has no wheels)
//   manifest.json       file names, sizes and the source hash that makes rebuilds incremental
// `node browser/build.mjs` does nothing when dist/ is up to date; `--force` rebuilds.
// `node browser/build.mjs --policy-bundle` prints, and writes nothing, the edge policy modules as
// the snippet bundles them (same plugin, define and target) in one IIFE that sets `fpPolicy`:
// tests/test_browser_policy.py runs the golden vectors through it in Chromium.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
const DIST = join(HERE, "dist");
const PYTHON = process.env.PYTHON || (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");

function files(dir, suffix) {
  return readdirSync(join(ROOT, dir)).filter((f) => f.endsWith(suffix)).sort().map((f) => join(dir, f));
}

// Everything the outputs depend on; the wheel part is kept apart because pip is the slow step.
const jsSources = [...files("browser/src", ".js"), ...files("browser/src", ".mjs"), ...files("edge/src", ".js"), "browser/build.mjs"];
const pySources = [...files("model_export", ".py"), ...files("origin", ".py"), "pyproject.toml"];

function digest(paths) {
  const hash = createHash("sha256");
  for (const p of paths) hash.update(p + "\0").update(readFileSync(join(ROOT, p))).update("\0");
  return hash.digest("hex");
}

function readManifest() {
  try {
    return JSON.parse(readFileSync(join(DIST, "manifest.json"), "utf8"));
  } catch {
    return null;
  }
}

// The wheel is built from a copy of the package sources, so setuptools writes its build/ and
// egg-info there, never into the shared checkout (a stale build/lib would leak into the wheel).
const WHEEL_SOURCES = ["pyproject.toml", "README.md", "model_export", "origin"];

function buildWheels() {
  const scratch = mkdtempSync(join(tmpdir(), "fp-wheels-"));
  try {
    const source = join(scratch, "src");
    for (const entry of WHEEL_SOURCES) {
      cpSync(join(ROOT, entry), join(source, entry), { recursive: true, filter: (path) => !path.includes("__pycache__") });
    }
    const pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--quiet"];
    execFileSync(pip[0], [...pip.slice(1), "wheel", "--no-deps", "-w", scratch, source], { cwd: scratch, stdio: "inherit" });
    // zoneinfo in Pyodide needs the tzdata package; the npm build of Pyodide ships no wheels.
    execFileSync(pip[0], [...pip.slice(1), "download", "tzdata", "--no-deps", "--only-binary=:all:", "-d", scratch], { cwd: scratch, stdio: "inherit" });
    const wheels = readdirSync(scratch).filter((f) => f.endsWith(".whl")).sort();
    for (const w of wheels) copyFileSync(join(scratch, w), join(DIST, w));
    return wheels;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

// features.js reads local time in the runtime's own zone from Date, which is the only zone the
// snippet decides in; the snippet bundles browser/src/time_zones.js (its own zone's name, no
// other zone) in place of the edge's Intl-based module for any zone.
const browserTimeZones = {
  name: "browser-time-zones",
  setup(build) {
    const edgeModule = join(ROOT, "edge/src/time_zones.js");
    build.onResolve({ filter: /\/time_zones\.js$/ }, (args) =>
      join(args.resolveDir, args.path) === edgeModule ? { path: join(HERE, "src/time_zones.js") } : undefined,
    );
  },
};

const common = { bundle: true, minify: true, legalComments: "none", logLevel: "warning" };
/** Drops the statements of features.js and policy.js labelled `EDGE:` (caches and checks that pay
 * off over a worker's many requests; see features.js). tests/js/snippet_branches.test.mjs
 * bundles with it too. */
export const SNIPPET_BRANCHES = { dropLabels: ["EDGE"] };
// How the snippet's code is bundled: the time-zone stand-in and the snippet's branches.
const snippetOptions = { ...common, ...SNIPPET_BRANCHES, format: "iife", target: ["es2020"], plugins: [browserTimeZones] };

// The policy modules as the snippet bundles them, exposed as `fpPolicy` (see the header).
async function printPolicyBundle() {
  const built = await esbuild.build({
    ...snippetOptions,
    stdin: {
      contents:
        'export { choose, decide, loadModel } from "./edge/src/policy.js";\n' +
        'export { features, isBot, runtimeZone } from "./edge/src/features.js";\n',
      resolveDir: ROOT,
      sourcefile: "policy-entry.js",
    },
    globalName: "fpPolicy",
    write: false,
  });
  process.stdout.write(built.outputFiles[0].text);
}

async function main() {
  if (process.argv.includes("--policy-bundle")) return printPolicyBundle();
  const force = process.argv.includes("--force");
  const jsHash = digest(jsSources);
  const pyHash = digest(pySources);
  const previous = readManifest();
  const present = (names) => names.every((n) => existsSync(join(DIST, n)));
  const wheelsFresh = !force && previous?.py_hash === pyHash && present(previous.wheels);
  const jsFresh = !force && previous?.js_hash === jsHash && present(["snippet.js", "after-paint.mjs", "pyodide-worker.mjs"]);
  if (wheelsFresh && jsFresh) {
    console.log(`browser/dist is up to date (snippet ${previous.snippet_gzip_bytes} B gzipped)`);
    return;
  }
  mkdirSync(DIST, { recursive: true });
  if (!wheelsFresh) for (const f of readdirSync(DIST)) if (f.endsWith(".whl")) rmSync(join(DIST, f));
  const wheels = wheelsFresh ? previous.wheels : buildWheels();

  await esbuild.build({
    ...snippetOptions,
    entryPoints: [join(HERE, "src/snippet.js")],
    outfile: join(DIST, "snippet.js"),
    // V8's explicit compile hint (Chromium ≥ 136; a plain comment elsewhere): compile every
    // function while the script is parsed, off the main thread where it can, instead of one
    // by one as the first decision calls them — that halved the cold decision in Chromium here.
    banner: { js: "//# allFunctionsCalledOnLoad" },
  });
  await esbuild.build({
    ...common,
    entryPoints: [join(HERE, "src/after-paint.mjs")],
    outfile: join(DIST, "after-paint.mjs"),
    format: "esm",
    target: ["es2020"],
  });
  await esbuild.build({
    ...common,
    entryPoints: [join(HERE, "src/pyodide-worker.mjs")],
    outfile: join(DIST, "pyodide-worker.mjs"),
    format: "esm",
    target: ["es2022"],
    // Pyodide is loaded at run time from /fp/pyodide/, next to the worker, never bundled.
    external: ["./pyodide/*"],
    define: { __FP_WHEELS__: JSON.stringify(wheels) },
  });

  const snippet = readFileSync(join(DIST, "snippet.js"));
  const afterPaint = readFileSync(join(DIST, "after-paint.mjs"));
  const manifest = {
    js_hash: jsHash,
    py_hash: pyHash,
    wheels,
    snippet_bytes: snippet.length,
    snippet_gzip_bytes: gzipSync(snippet, { level: 9 }).length,
    after_paint_gzip_bytes: gzipSync(afterPaint, { level: 9 }).length,
  };
  writeFileSync(join(DIST, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  console.log(`built ${relative(ROOT, DIST)}: snippet ${manifest.snippet_gzip_bytes} B + after-paint ${manifest.after_paint_gzip_bytes} B gzipped, wheels ${wheels.join(", ")}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
