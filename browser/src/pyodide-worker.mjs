// The Python policy in the visitor's browser: a module Web Worker that loads Pyodide (served
// by the origin under /fp/pyodide/) and the project's own wheel, then answers decide requests
// with `model_export.policy` — the module the origin runs — so every runtime makes one choice.
//
// Messages in:  {id, type: "decide", model: <model.json text>, requests: [{context, slot,
//               visitor_id, decision_id}]}
// Messages out: {type: "ready", load_ms, phases, python} once, or {type: "failed", reason};
//               {id, type: "decided", results: [{decision, features}]} or {id, type: "failed", reason}.
import { loadPyodide } from "./pyodide/pyodide.mjs";

// Filled in by browser/build.mjs with the wheels it put next to this file.
const WHEELS = __FP_WHEELS__;

const GLUE = `
import json
from model_export import features, policy

_models = {}

def fp_decide(model_text, requests_text):
    model = _models.get(model_text)
    if model is None:
        model = policy.load_model(model_text)  # checks format and sha256 before any use
        _models.clear()
        _models[model_text] = model
    results = []
    for r in json.loads(requests_text):
        decision = policy.decide(model, r["context"], r["slot"], r.get("visitor_id") or "", r.get("decision_id"))
        results.append({"decision": decision.to_dict(), "features": features.features(r["context"], model["features"])})
    return json.dumps(results)
`;

const started = performance.now();
const ready = (async () => {
  const phases = {};
  const lap = (name, since) => (phases[name] = performance.now() - since);
  const pyodide = await loadPyodide({ indexURL: new URL("./pyodide/", import.meta.url).href });
  lap("pyodide_ms", started);
  const packagesStarted = performance.now();
  await pyodide.loadPackage(WHEELS.map((w) => new URL(w, import.meta.url).href), { messageCallback: () => {} });
  lap("wheels_ms", packagesStarted);
  const importStarted = performance.now();
  pyodide.runPython(GLUE);
  lap("import_ms", importStarted);
  const decideInPython = pyodide.globals.get("fp_decide");
  const python = pyodide.runPython("import sys; sys.version.split()[0]");
  postMessage({ type: "ready", load_ms: performance.now() - started, phases, python });
  return decideInPython;
})();
ready.catch((err) => postMessage({ type: "failed", reason: `pyodide did not start: ${err && err.message}` }));

self.onmessage = async ({ data }) => {
  if (!data || data.type !== "decide") return;
  try {
    const decideInPython = await ready;
    const results = JSON.parse(decideInPython(data.model, JSON.stringify(data.requests)));
    postMessage({ id: data.id, type: "decided", results });
  } catch (err) {
    postMessage({ id: data.id, type: "failed", reason: String(err && err.message).slice(-500) });
  }
};
