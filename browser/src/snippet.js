// The firstpaint script tag: one synchronous <script> in <head>.
//
//   <script src="/fp/firstpaint.js?v=<version>"></script>
//
// The origin serves this bundle inside that file, after the line that sets
// window.firstpaintModel = {model, site} (origin/scripts.py); a site may also load the two
// parts with tags of its own, /fp/model.js?v=<sha8> first, then /fp/snippet.js.
//
// Edge in front (the slot carries `data-fp-decision`): the content is left alone, only measured.
// No edge: each [data-fp-slot] is decided with the edge's own policy.js while the document is
// parsed (a MutationObserver sees the slot before it is ever painted), so nothing flickers and
// nothing is hidden: a slot that cannot be decided in time keeps its default content.
// Only first-paint work lives here; events, decision logging and the Pyodide worker are in
// after-paint.mjs, imported after `load`.
// Every entry point is guarded: a failure never reaches the host page, it falls back to the
// default content and is recorded, with its reason, in `firstpaint.fallbacks`.
import { features, isBot, runtimeZone } from "../../edge/src/features.js";
import { choose, randomId } from "../../edge/src/policy.js";

const W = window;
const D = document;
const script = D.currentScript;
const api = (W.firstpaint = W.firstpaint || {});
const fallbacks = (api.fallbacks = []);
const fallback = (reason) => fallbacks.push(reason);
const guard =
  (fn) =>
  (...args) => {
    try {
      return fn(...args);
    } catch (err) {
      fallback("error: " + (err && err.message));
    }
  };
const option = (name) => (script && script.getAttribute("data-fp-" + name)) || "";
const bundle = W.firstpaintModel;
const model = bundle && bundle.model;

// --- consent and identity: a visitor id, returning flag and session id only with consent ----------

const store = (area, key, value) => {
  try {
    if (value === undefined) return W[area].getItem(key);
    if (value === null) W[area].removeItem(key);
    else W[area].setItem(key, value);
  } catch {
    return null; // storage disabled: the visitor stays anonymous
  }
};

// Before the first decision: the visitor id (created on a first visit) and the returning flag,
// which the tab's session keeps as it was on the session's first page. Only a visitor with an id
// from before can be returning, so a new visitor's pages never touch sessionStorage before the
// first paint (its first access costs a synchronous round trip to the browser process).
let created = false;
function identity(granted) {
  if (!granted) return { visitor: "" };
  store("localStorage", "fp_consent", "1");
  let visitor = store("localStorage", "fp_vid");
  let returning = visitor ? store("sessionStorage", "fp_ret") : "0";
  if (returning === null) store("sessionStorage", "fp_ret", (returning = "1"));
  if ((created = !visitor)) store("localStorage", "fp_vid", (visitor = randomId()));
  return { visitor, returning: returning === "1" };
}

// After the first paint (or when the page is left first): the session id, which only events
// need, and a new visitor's flag for the session's later pages.
function settle() {
  const who = api.who;
  if (!who.visitor || who.session) return;
  if (created) store("sessionStorage", "fp_ret", "0");
  // A page served by the firstpaint origin names its session (the origin's own page views and
  // decisions are kept under it), so the events sent from here join the same session.
  const meta = D.querySelector('meta[name="fp-session"]');
  const stored = store("sessionStorage", "fp_sid");
  const session = (meta && meta.content) || stored || randomId();
  if (session !== stored) store("sessionStorage", "fp_sid", session);
  who.session = session;
}
api.who = { visitor: "" };
api.consent = guard((granted) => {
  if (!granted) {
    for (const area of ["localStorage", "sessionStorage"]) for (const key of ["fp_consent", "fp_vid", "fp_ret", "fp_sid"]) store(area, key, null);
  }
  api.who = identity(granted);
  settle();
});

api.context = () => {
  const n = navigator;
  const hints = n.userAgentData;
  return {
    url: location.href,
    referrer: D.referrer,
    user_agent: n.userAgent,
    ch_ua_mobile: hints ? (hints.mobile ? "?1" : "?0") : undefined,
    accept_language: (n.languages || [n.language]).join(","),
    // The zone of the browser's own clock: features.js then reads local time from Date.
    timezone: runtimeZone(),
    now_ms: Date.now(),
    returning: api.who.returning,
  };
};

// --- first paint: decide each slot as the parser inserts it -------------------------------------

const decisions = (api.decisions = []);
const idle = (api.idleSlots = []);
const ours = new WeakSet();
let context;
let parsing = true;

api.render = (el, slot, variant) => {
  const html = bundle.site.slots[slot].html[variant];
  if (html === undefined) {
    fallback(slot + ": no html for " + variant);
    return false;
  }
  el.innerHTML = html;
  el.setAttribute("data-fp-variant", variant);
  for (const node of el.childNodes) ours.add(node);
  return true;
};

function decideSlot(el, late) {
  if (el.fpSlot) return;
  const slot = (el.fpSlot = el.getAttribute("data-fp-slot"));
  const token = el.getAttribute("data-fp-decision");
  // Decided before it reached the browser (the edge, or the origin on later pages): measure only.
  if (token) return decisions.push({ el, slot, variant: el.getAttribute("data-fp-variant"), token, source: "server" });
  if (!model || !model.slots[slot] || !bundle.site.slots[slot]) return fallback(slot + ": not in the model");
  if (el.getAttribute("data-fp-when") === "idle") return idle.push(el);
  if (late && performance.getEntriesByType("paint").length) return fallback(slot + ": painted before the snippet ran");
  context = context || api.context();
  if (isBot(context.user_agent, model.features.rules)) return fallback(slot + ": bot");
  const started = performance.now();
  // The choice alone: the origin re-decides it in full before it signs and logs it.
  const decision = choose(model, features(context, model.features), slot, api.who.visitor, randomId());
  decision.decide_ms = performance.now() - started;
  if (api.render(el, slot, decision.variant)) {
    el.fpOwned = true;
    decisions.push({ ...decision, el, context, visitor_id: api.who.visitor, source: "snippet" });
  }
}

function scan(node, late) {
  if (node.nodeType !== 1) return;
  if (node.hasAttribute("data-fp-slot")) decideSlot(node, late);
  // The parser inserts an element before its children (each then gets a record of its own), so
  // most nodes have none yet: querying their empty subtrees was most of the observer's cost.
  if (node.firstElementChild) for (const el of node.querySelectorAll("[data-fp-slot]")) decideSlot(el, late);
}

const observer = new MutationObserver(
  guard((records) => {
    for (const m of records) {
      for (const node of m.addedNodes) {
        // The parser may still be appending the slot's default children after we filled it.
        if (parsing && m.target.fpOwned && !ours.has(node) && node.parentNode === m.target) m.target.removeChild(node);
        else scan(node, false);
      }
    }
  }),
);

guard(() => {
  api.who = identity(option("consent") !== "required" || store("localStorage", "fp_consent") === "1");
  if (!model) fallback("model unavailable: window.firstpaintModel is not set");
  scan(D.documentElement, true);
  observer.observe(D.documentElement, { childList: true, subtree: true });
  // Clicks and conversions before after-paint.mjs arrives are kept for it.
  const early = (api.earlyClicks = []);
  const conversions = (api.earlyConversions = []);
  D.addEventListener("click", guard((e) => (api.click ? api.click(e.target) : early.push(e.target))), true);
  api.convert = (value) => conversions.push(value);
  D.addEventListener(
    "DOMContentLoaded",
    guard(() => {
      observer.takeRecords().forEach((m) => m.addedNodes.forEach((node) => scan(node, false)));
      observer.disconnect();
      parsing = false;
    }),
  );
  // Measurement waits for `load` and then for a frame to be painted (`load` may come first on a
  // small page), so it never competes with the first paint; a hidden page paints nothing.
  const afterPaint = (fn) => (D.hidden ? setTimeout(fn) : requestAnimationFrame(() => setTimeout(fn)));
  const start = guard(() => {
    settle();
    import(new URL("after-paint.mjs", script.src))
      .then((m) => m.start({ api, model, option, guard, fallback, randomId }))
      .catch((err) => fallback("after-paint: " + err.message));
  });
  W.addEventListener("load", guard(() => afterPaint(start)));
  W.addEventListener("pagehide", guard(settle));
})();
