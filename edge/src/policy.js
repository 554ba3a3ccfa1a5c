// The decision policy (model_export/CONTRACT.md §5–§6): check `model.json`, score variants,
// choose with exploration. A port of model_export/policy.py; pure ES module (Web Crypto only
// for the model checksum), shared by the edge worker and the browser snippet.
//
// Loading is async (`checkModel` hashes the model once); deciding is synchronous.

import { features, validateSpec, SpecError } from './features.js';

export const FORMAT = 'firstpaint.model/1';
const TWO_32 = 4294967296.0;

/** A model file that must not be used: wrong format, bad checksum or inconsistent slots. */
export class ModelError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ModelError';
  }
}

// --- canonical JSON and checksum (CONTRACT §5) ------------------------------------------------

function byCodePoint(a, b) {
  // Python sorts keys by code point; JS's default sort compares UTF-16 code units.
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done === y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0) - y.value.codePointAt(0);
    if (d !== 0) return d;
  }
}

/** Sorted keys, no white space, ECMAScript numbers: the text the sha256 covers. */
export function canonicalJson(value) {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ModelError(`non-finite number ${value} cannot be stored in a model`);
    return String(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort(byCodePoint);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  throw new ModelError(`cannot store a ${typeof value} in a model`);
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Hex SHA-256 of the canonical JSON of `model` without its own `sha256` key. */
export async function modelSha256(model) {
  const { sha256, ...body } = model;
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonicalJson(body)));
  return hex(digest);
}

// --- loading ----------------------------------------------------------------------------------

function isNumber(x) {
  return typeof x === 'number' || typeof x === 'boolean'; // Python's bool is an int
}

function checkSlot(name, slot) {
  const variants = slot && slot.variants;
  if (!Array.isArray(variants) || !variants.length || new Set(variants).size !== variants.length) {
    throw new ModelError(`slots.${name}.variants must be a non-empty list of distinct names`);
  }
  if (!variants.includes(slot.default)) {
    throw new ModelError(`slots.${name}.default ${JSON.stringify(slot.default)} is not among its variants`);
  }
  const holdout = slot.holdout ?? 0;
  if (!isNumber(holdout) || !(holdout >= 0 && holdout < 1)) {
    throw new ModelError(`slots.${name}.holdout must be in [0, 1), got ${JSON.stringify(holdout)}`);
  }
  const exploration = slot.exploration || {};
  if (exploration.kind === 'egreedy') {
    const e = exploration.epsilon ?? -1;
    if (!isNumber(e) || !(e >= 0 && e <= 1)) throw new ModelError(`slots.${name}.exploration.epsilon must be in [0, 1]`);
  } else if (exploration.kind === 'softmax') {
    const t = exploration.temperature ?? 0;
    const f = exploration.floor ?? -1;
    if (!isNumber(t) || !isNumber(f) || !(t > 0) || !(f >= 0) || variants.length * f > 1) {
      throw new ModelError(`slots.${name}.exploration: need temperature > 0, 0 <= K·floor <= 1`);
    }
  } else {
    throw new ModelError(`slots.${name}.exploration.kind must be 'egreedy' or 'softmax'`);
  }
}

/** Validate a parsed model (format, sha256, slots, spec); resolves to it or rejects with ModelError. */
export async function checkModel(model) {
  if (model === null || typeof model !== 'object' || Array.isArray(model)) throw new ModelError('a model is a JSON object');
  if (model.format !== FORMAT) throw new ModelError(`format must be '${FORMAT}', got ${JSON.stringify(model.format)}`);
  if (model.sha256 !== (await modelSha256(model))) throw new ModelError("sha256 does not match the model's content");
  try {
    validateSpec(model.features || {});
  } catch (error) {
    if (error instanceof SpecError) throw new ModelError(error.message);
    throw error;
  }
  const slots = model.slots;
  if (slots === null || typeof slots !== 'object' || Array.isArray(slots) || !Object.keys(slots).length) {
    throw new ModelError('slots must be a non-empty object');
  }
  for (const [name, slot] of Object.entries(slots)) checkSlot(name, slot);
  return model;
}

/** Parse (if given text) and validate a model; rejects with ModelError. */
export async function loadModel(source) {
  if (typeof source === 'string') {
    try {
      source = JSON.parse(source);
    } catch (error) {
      throw new ModelError(`model is not JSON: ${error.message}`);
    }
  }
  return checkModel(source);
}

// --- scoring and choosing (CONTRACT §6) -------------------------------------------------------

const FNV_OFFSET = 0x811c9dc5;

// FNV-1a 32-bit state `h` advanced over the UTF-8 bytes of `text`: hashing the parts of a key
// one after another equals hashing their concatenation (no surrogate pair spans two parts).
function fnvUpdate(h, text) {
  EDGE: {
    for (let i = 0; i < text.length; i++) {
      let c = text.charCodeAt(i);
      if (c < 0x80) {
        h = Math.imul(h ^ c, 16777619);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
        }
      }
      // Lead byte, then continuation bytes from the highest six bits down.
      const extra = c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
      h = Math.imul(h ^ ((0xff << (7 - extra)) & 0xff) ^ (c >> (6 * extra)), 16777619);
      for (let k = extra - 1; k >= 0; k--) h = Math.imul(h ^ (0x80 | ((c >> (6 * k)) & 63)), 16777619);
    }
    return h;
  }
  // The snippet's (see features.js on `EDGE:`): the bytes, one per character, from the browser's
  // own UTF-8 encoder. It throws on a lone surrogate, which the snippet's ids and slot names
  // never hold (a tampered stored visitor id might): such a slot keeps its default content,
  // recorded as a fallback — never a choice other than the contract's (surrogatepass above).
  for (const byte of unescape(encodeURIComponent(text))) h = Math.imul(h ^ byte.charCodeAt(0), 16777619);
  return h;
}

/** FNV-1a 32-bit over the UTF-8 bytes of `text` (lone surrogates as Python's surrogatepass). */
export function fnv1a32(text) {
  return fnvUpdate(FNV_OFFSET, text) >>> 0;
}

// fnv1a32(`${a}\x1f${b}\x1f${c}`) / 2^32, without building the string.
function unitHash(a, b, c) {
  let h = fnvUpdate(FNV_OFFSET, String(a));
  h = fnvUpdate(Math.imul(h ^ 0x1f, 16777619), String(b));
  h = fnvUpdate(Math.imul(h ^ 0x1f, 16777619), String(c));
  return (h >>> 0) / TWO_32;
}

export function sigmoid(z) {
  return z >= -700 ? 1.0 / (1.0 + Math.exp(-z)) : 0.0;
}

function own(object, key) {
  return object != null && Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

// A slot compiled for scoring, once per slot object (models are never mutated after loading):
// the variants' biases and, per feature, its non-zero weights as [variant index, weight] pairs,
// flat — weights are sparse, and a missing one adds nothing — found by feature id (features()
// pairs carry it) or by name. A feature's pairs are gathered the first time it is active, so a
// page's one decision reads the weights of its ~20 active features, not all of the slot's
// hundreds; a worker's later decisions find them ready. Deciding is synchronous, so each slot
// also owns scratch space: z, p and π by variant index, and the weights of each active feature.
const compiledSlots = new WeakMap();

function compiled(slot) {
  let c = compiledSlots.get(slot);
  if (c) return c;
  const variants = slot.variants;
  const k = variants.length;
  const weights = variants.map((v) => own(slot.weights, v));
  const bias = Float64Array.from(variants, (v) => own(slot.bias, v) ?? 0.0);
  c = { weights, bias, variants, byId: [], byName: new Map(), z: new Float64Array(k), p: new Float64Array(k), pi: new Float64Array(k), hits: [] };
  compiledSlots.set(slot, c);
  return c;
}

// The [variant index, weight] pairs of feature `name` in compiled slot `c` (empty: none).
function entriesOf(c, name) {
  const entries = [];
  c.weights.forEach((weights, i) => {
    const w = own(weights, name);
    if (w !== null && w !== undefined) entries.push(i, Number(w));
  });
  return entries;
}

// c.p ← σ(b_v + Σ w_v,f · x_f), summed in feature order; c.hits[j] ← the weights of active[j].
function score(c, active) {
  const { byId, byName, z, p, hits } = c;
  z.set(c.bias); // hits past active.length are stale and never read
  for (let j = 0; j < active.length; j++) {
    const feature = active[j];
    const id = feature.id; // none on the snippet's features
    let entries = id === undefined ? byName.get(feature[0]) : byId[id];
    if (entries === undefined) {
      entries = entriesOf(c, feature[0]);
      if (id === undefined) byName.set(feature[0], entries);
      else byId[id] = entries;
    }
    hits[j] = entries;
    const x = feature[1];
    for (let e = 0; e < entries.length; e += 2) z[entries[e]] += entries[e + 1] * x;
  }
  for (let i = 0; i < z.length; i++) p[i] = sigmoid(z[i]);
}

// The index of the first maximal score.
function best(p) {
  let top = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[top]) top = i;
  return top;
}

// c.pi ← π from c.p and the slot's exploration setting.
function explore(c, exploration) {
  const { p, pi } = c;
  const k = p.length;
  if (exploration.kind === 'egreedy') {
    const e = exploration.epsilon;
    const top = best(p);
    for (let i = 0; i < k; i++) pi[i] = e / k + (1 - e) * (i === top ? 1 : 0);
    return;
  }
  const t = exploration.temperature;
  const floor = exploration.floor;
  let m = -Infinity;
  for (let i = 0; i < k; i++) m = Math.max(m, p[i]);
  let total = 0;
  for (let i = 0; i < k; i++) total += pi[i] = Math.exp((p[i] - m) / t);
  for (let i = 0; i < k; i++) pi[i] = floor + (1 - k * floor) * (pi[i] / total);
}

function byVariant(variants, values) {
  const result = {};
  for (let i = 0; i < variants.length; i++) result[variants[i]] = values[i];
  return result;
}

/** Engagement probability per variant: σ(b_v + Σ w_v,f · x_f), summed in feature order. */
export function scores(slot, active) {
  const c = compiled(slot);
  score(c, active);
  return byVariant(c.variants, c.p);
}

/** π_v from the slot's exploration setting, given the scores `p` ({variant: p_v}). */
export function choiceProbabilities(slot, p) {
  const c = compiled(slot);
  c.variants.forEach((v, i) => (c.p[i] = p[v]));
  explore(c, slot.exploration);
  return byVariant(c.variants, c.pi);
}

// Up to 3 [name, w·x] of the variant with index `i`, by |w·x| descending (ties: feature order).
function topFeatures(c, i, active) {
  // The best three so far as (index in `active`, w·x), best first; an index of -1: none yet.
  let j0 = -1;
  let j1 = -1;
  let j2 = -1;
  let w0 = 0;
  let w1 = 0;
  let w2 = 0;
  for (let j = 0; j < active.length; j++) {
    const entries = c.hits[j];
    // Entries are in variant order: variant i's weight, if any, is the first not below i.
    let e = 0;
    while (e < entries.length && entries[e] < i) e += 2;
    if (entries[e] !== i) continue;
    const wx = entries[e + 1] * active[j][1];
    if (wx === 0) continue;
    // After every kept contribution at least as large, so ties keep feature order.
    const size = Math.abs(wx);
    if (j0 < 0 || Math.abs(w0) < size) {
      j2 = j1;
      w2 = w1;
      j1 = j0;
      w1 = w0;
      j0 = j;
      w0 = wx;
    } else if (j1 < 0 || Math.abs(w1) < size) {
      j2 = j1;
      w2 = w1;
      j1 = j;
      w1 = wx;
    } else if (j2 < 0 || Math.abs(w2) < size) {
      j2 = j;
      w2 = wx;
    }
  }
  // Made at the end, at their size: no pair for a contribution displaced later.
  if (j0 < 0) return [];
  const first = [active[j0][0], w0];
  if (j1 < 0) return [first];
  const second = [active[j1][0], w1];
  return j2 < 0 ? [first, second] : [first, second, [active[j2][0], w2]];
}

/** 32 random hex digits: a decision, visitor or session id. */
export function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => (b + 256).toString(16).slice(1)).join('');
}

/**
 * Decide `slotName` for `context`; deterministic given (visitorId, slotName, decisionId).
 * Returns the contract's Decision: slot, variant, propensity, holdout, explored, scores,
 * probabilities, model_version, decision_id, top_features, forced.
 */
export function decide(model, context, slotName, visitorId = '', decisionId = null, force = null) {
  const active = features(context, model.features);
  const made = choose(model, active, slotName, visitorId, decisionId, force);
  // choose() left this decision's scores and π in the slot's scratch space.
  const c = compiled(model.slots[slotName]);
  const { variants, p, pi } = c;
  const chosen = variants.indexOf(made.variant);
  return {
    slot: slotName,
    variant: made.variant,
    propensity: made.propensity,
    holdout: made.holdout,
    explored: !made.forced && !made.holdout && chosen !== best(p),
    scores: byVariant(variants, p),
    probabilities: byVariant(variants, pi),
    model_version: model.model_version,
    decision_id: made.decision_id,
    top_features: topFeatures(c, chosen, active),
    forced: made.forced,
  };
}

/**
 * The choice of `decide`, from already extracted features (`features(context, model.features)`,
 * which one request's slots share), without its explanation (scores, probabilities, top features,
 * explored): {slot, variant, propensity, holdout, forced, model_version, decision_id}. What a
 * page or the edge worker needs to show a variant and have the decision logged, at a fraction of
 * the code and time.
 */
export function choose(model, active, slotName, visitorId = '', decisionId = null, force = null) {
  decisionId = decisionId || randomId();
  const config = model.slots[slotName];
  const c = compiled(config);
  const { variants, pi } = c;
  score(c, active);
  explore(c, config.exploration);
  let chosen;
  let propensity = 1.0;
  let holdout = false;
  const forced = force !== null && force !== undefined && variants.includes(force);
  if (forced) chosen = variants.indexOf(force);
  else if (unitHash('holdout', visitorId || decisionId, slotName) < (config.holdout ?? 0)) {
    chosen = variants.indexOf(config.default);
    holdout = true;
  } else {
    const u = unitHash(visitorId, slotName, decisionId);
    let cumulative = 0.0;
    chosen = variants.length - 1;
    for (let i = 0; i < variants.length; i++) {
      cumulative += pi[i];
      if (u < cumulative) {
        chosen = i;
        break;
      }
    }
    propensity = pi[chosen];
  }
  return { slot: slotName, variant: variants[chosen], propensity, holdout, forced, model_version: model.model_version, decision_id: decisionId };
}
