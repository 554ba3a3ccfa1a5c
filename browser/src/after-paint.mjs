// Everything the snippet does after `load`, kept out of the first-paint path: decision tokens,
// impression / click / conversion events batched through sendBeacon, and, when the page is
// idle, the Python policy in a Pyodide module worker for `data-fp-when="idle"` slots,
// re-decided on in-session signals (scroll depth, exit intent).
// `host` is what snippet.js shares: {api, model, option, guard, fallback, randomId}.

export function start(host) {
  const { api, model, option, guard, fallback, randomId } = host;
  const W = window;
  const D = document;
  const origin = new URL(option("api") || import.meta.url).origin;
  const decisions = api.decisions;

  // --- events -----------------------------------------------------------------------------------

  const queue = [];
  let timer = 0;
  const engagement = (e) => ({ type: e.type, ts_ms: e.ts_ms, value: e.value, session_id: api.who.session });
  // One beacon for the queued events `sent`, which leave the queue once the browser took it.
  function send(path, body, sent) {
    if (navigator.sendBeacon(origin + path, JSON.stringify(body))) {
      for (const e of sent) queue.splice(queue.indexOf(e), 1);
    }
  }
  function flush() {
    clearTimeout(timer);
    timer = 0;
    const ready = queue.filter((e) => e.decision.token);
    if (ready.length) send("/v1/events", { events: ready.map((e) => ({ ...engagement(e), token: e.decision.token })) }, ready);
  }
  function track(decision, type, value, now) {
    queue.push({ decision, type, value, ts_ms: Date.now() });
    if (now) flush();
    else timer = timer || setTimeout(guard(flush), 2000);
  }

  const current = new WeakMap(); // slot element → its latest decision
  const inView = new WeakSet();
  const watcher = new IntersectionObserver(
    guard((entries) => {
      for (const { target, intersectionRatio } of entries) {
        const decision = current.get(target);
        if (intersectionRatio < 0.5) inView.delete(target);
        else inView.add(target);
        if (intersectionRatio >= 0.5 && decision && !decision.seen) {
          decision.seen = true;
          track(decision, "impression");
        }
      }
    }),
    { threshold: 0.5 },
  );

  function measure(decision) {
    current.set(decision.el, decision);
    watcher.unobserve(decision.el);
    watcher.observe(decision.el);
  }

  api.click = guard((target) => {
    const control = target.closest && target.closest("a,button");
    const slot = control && control.closest("[data-fp-slot]");
    if (slot && current.has(slot)) track(current.get(slot), "click", undefined, true);
  });
  api.convert = guard((value) => {
    for (const d of decisions) track(d, "conversion", Number(value) || 0, false);
    flush();
  });

  // --- decision tokens --------------------------------------------------------------------------

  // Client decisions get their tokens from the origin, which re-decides with the same model
  // version and inputs before it signs: no token for a choice the policy did not make.
  const decisionRecord = (d) => ({
    decision_id: d.decision_id,
    slot: d.slot,
    variant: d.variant,
    propensity: d.propensity,
    model_version: d.model_version,
    visitor_id: d.visitor_id,
    context: d.context,
    ts_ms: d.context.now_ms,
  });

  function logDecisions(batch) {
    const body = batch.map(decisionRecord);
    return fetch(origin + "/v1/decisions/client", { method: "POST", body: JSON.stringify({ decisions: body }), keepalive: true })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then(
        guard((answer) => {
          for (const d of batch) d.token = answer.tokens[d.decision_id];
          flush();
        }),
      )
      .catch((err) => fallback("decision log: " + err.message));
  }

  function adopt(batch) {
    batch.forEach(measure);
    const unsigned = batch.filter((d) => !d.token);
    if (unsigned.length) logDecisions(unsigned);
  }

  adopt(decisions);
  api.earlyConversions.forEach(api.convert);
  api.idleSlots.forEach((el) => watcher.observe(el));
  api.earlyClicks.forEach(api.click);
  // Leaving the page: what still waits for a token (a click right after load, before the
  // origin answered) goes out with its decisions, which the origin re-decides, signs and then
  // records the events for; a decision it already signed is not logged twice.
  function flushUnsigned() {
    const held = queue.filter((e) => !e.decision.token);
    if (!held.length) return;
    const body = {
      decisions: [...new Set(held.map((e) => e.decision))].map(decisionRecord),
      events: held.map((e) => ({ ...engagement(e), decision_id: e.decision.decision_id })),
    };
    send("/v1/decisions/client", body, held);
  }
  const leave = guard(() => {
    flush();
    flushUnsigned();
  });
  W.addEventListener("pagehide", leave);
  D.addEventListener("visibilitychange", guard(() => D.visibilityState === "hidden" && leave()));

  // --- the Python policy in Pyodide, after load -------------------------------------------------

  const idle = api.idleSlots;
  let last = "view";
  let busy = false; // one Python call at a time; a signal meanwhile asks for one more
  let again = false;

  function decideIdle() {
    if (busy) {
      again = true;
      return;
    }
    // A slot on screen is never swapped under the visitor's eyes; it waits for the next signal.
    const slots = idle.filter((el) => !inView.has(el));
    if (!slots.length) return;
    busy = true;
    const context = { ...api.context(), session: { pages: 1, categories: [], last_event: last } };
    const requests = slots.map((el) => ({ context, slot: el.fpSlot, visitor_id: api.who.visitor, decision_id: randomId() }));
    api
      .python(requests)
      .then(
        guard((results) => {
          const batch = [];
          results.forEach(({ decision }, i) => {
            const el = slots[i];
            if (inView.has(el)) return;
            if (el.getAttribute("data-fp-variant") === decision.variant || api.render(el, decision.slot, decision.variant)) {
              batch.push({ ...decision, el, context, visitor_id: api.who.visitor, source: "pyodide" });
            }
          });
          decisions.push(...batch);
          adopt(batch);
        }),
      )
      .catch((err) => fallback("pyodide decide: " + err.message))
      .then(() => {
        busy = false;
        if (again) {
          again = false;
          decideIdle();
        }
      });
  }

  // fp-features/1 knows in-session signals only through `session.last_event`.
  function watchSignals() {
    let depth = 0;
    const signal = (event) => {
      last = event;
      decideIdle();
    };
    W.addEventListener(
      "scroll",
      guard(() => {
        const reached = Math.floor((4 * (W.scrollY + W.innerHeight)) / D.documentElement.scrollHeight) / 4;
        if (reached > depth) {
          depth = reached;
          signal("scroll");
        }
      }),
      { passive: true },
    );
    D.addEventListener(
      "mouseout",
      guard((e) => !e.relatedTarget && e.clientY <= 0 && last !== "exit" && signal("exit")),
    );
  }

  function startPython() {
    if (option("pyodide") === "off" || !idle.length || !model) return;
    const started = performance.now();
    const worker = new Worker(new URL("pyodide-worker.mjs", import.meta.url), { type: "module" });
    const waiting = new Map();
    const modelText = JSON.stringify(model);
    const state = (api.pyodide = { ready: false });
    let next = 0;
    api.python = (requests) =>
      new Promise((resolve, reject) => {
        waiting.set(++next, { resolve, reject });
        worker.postMessage({ id: next, type: "decide", model: modelText, requests });
      });
    worker.onmessage = guard(({ data }) => {
      const waiter = waiting.get(data.id);
      if (waiter) {
        waiting.delete(data.id);
        return data.type === "decided" ? waiter.resolve(data.results) : waiter.reject(new Error(data.reason));
      }
      if (data.type === "failed") {
        for (const waiter of waiting.values()) waiter.reject(new Error(data.reason));
        waiting.clear();
        return fallback("pyodide: " + data.reason);
      }
      // Its load time, for the page (performance entry, event) and for the bench.
      Object.assign(state, { ready: true, ready_ms: performance.now() - started, worker_ms: data.load_ms, phases: data.phases, python: data.python });
      performance.measure("firstpaint:pyodide-ready", { start: started, duration: state.ready_ms });
      W.dispatchEvent(new CustomEvent("firstpaint:pyodide-ready", { detail: state }));
      decideIdle();
      watchSignals();
    });
    worker.onerror = guard((e) => fallback("pyodide worker: " + e.message));
  }

  (W.requestIdleCallback || setTimeout)(guard(startPython)); // start() runs after `load`
}
