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

/** FNV-1a 32-bit over the UTF-8 bytes of `text` (lone surrogates as Python's surrogatepass). */
export function fnv1a32(text) {
  let h = 0x811c9dc5;
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
    let bytes;
    if (c < 0x800) bytes = [0xc0 | (c >> 6), 0x80 | (c & 63)];
    else if (c < 0x10000) bytes = [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    else bytes = [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    for (const b of bytes) h = Math.imul(h ^ b, 16777619);
  }
  return h >>> 0;
}

export function sigmoid(z) {
  return z >= -700 ? 1.0 / (1.0 + Math.exp(-z)) : 0.0;
}

function own(object, key) {
  return object != null && Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

// A slot's weights by feature (one entry per variant, NaN = no weight), built once per slot
// object: models are never mutated after loading, and object-key lookups dominate otherwise.
const compiledSlots = new WeakMap();

function compiled(slot) {
  let c = compiledSlots.get(slot);
  if (c) return c;
  const variants = slot.variants;
  const bias = variants.map((v) => Number(own(slot.bias, v) ?? 0.0));
  const byFeature = new Map();
  variants.forEach((v, i) => {
    const weights = own(slot.weights, v) ?? {};
    for (const name of Object.keys(weights)) {
      const w = weights[name];
      if (w === null || w === undefined) continue;
      if (!byFeature.has(name)) byFeature.set(name, new Float64Array(variants.length).fill(NaN));
      byFeature.get(name)[i] = w;
    }
  });
  c = { variants, bias, byFeature };
  compiledSlots.set(slot, c);
  return c;
}

/** Engagement probability per variant: σ(b_v + Σ w_v,f · x_f), summed in feature order. */
export function scores(slot, active) {
  const { variants, bias, byFeature } = compiled(slot);
  const z = bias.slice();
  for (const [name, value] of active) {
    const w = byFeature.get(name);
    if (w === undefined) continue;
    for (let i = 0; i < z.length; i++) if (w[i] === w[i]) z[i] += w[i] * value;
  }
  const result = {};
  for (let i = 0; i < variants.length; i++) result[variants[i]] = sigmoid(z[i]);
  return result;
}

function best(variants, p) {
  let top = variants[0];
  for (let i = 1; i < variants.length; i++) if (p[variants[i]] > p[top]) top = variants[i];
  return top;
}

/** π_v from the slot's exploration setting. */
export function choiceProbabilities(slot, p) {
  const variants = slot.variants;
  const k = variants.length;
  const exploration = slot.exploration;
  const pi = {};
  if (exploration.kind === 'egreedy') {
    const e = exploration.epsilon;
    const top = best(variants, p);
    for (const v of variants) pi[v] = e / k + (1 - e) * (v === top ? 1 : 0);
    return pi;
  }
  const t = exploration.temperature;
  const floor = exploration.floor;
  let m = -Infinity;
  for (const v of variants) m = Math.max(m, p[v]);
  const expd = {};
  let total = 0;
  for (const v of variants) {
    expd[v] = Math.exp((p[v] - m) / t);
    total += expd[v];
  }
  for (const v of variants) pi[v] = floor + (1 - k * floor) * (expd[v] / total);
  return pi;
}

function topFeatures(slot, variant, active) {
  const { variants, byFeature } = compiled(slot);
  const i = variants.indexOf(variant);
  const contributions = [];
  for (const [name, x] of active) {
    const w = byFeature.get(name)?.[i];
    if (w === undefined || w !== w) continue;
    if (w * x !== 0) contributions.push([name, w * x]);
  }
  contributions.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])); // stable: ties keep feature order
  return contributions.slice(0, 3);
}

// getRandomValues, not randomUUID: browsers offer only the former on plain-http pages.
function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Decide `slotName` for `context`; deterministic given (visitorId, slotName, decisionId).
 * Returns the contract's Decision: slot, variant, propensity, holdout, explored, scores,
 * probabilities, model_version, decision_id, top_features, forced.
 */
export function decide(model, context, slotName, visitorId = '', decisionId = null, force = null) {
  return decideActive(model, features(context, model.features), slotName, visitorId, decisionId, force);
}

/**
 * `decide` from already extracted features (`features(context, model.features)`), so that one
 * request's slots share one extraction.
 */
export function decideActive(model, active, slotName, visitorId = '', decisionId = null, force = null) {
  decisionId = decisionId || randomId();
  const config = model.slots[slotName];
  const variants = config.variants;
  const p = scores(config, active);
  const pi = choiceProbabilities(config, p);
  const top = best(variants, p);

  const made = (variant, propensity, flags) => ({
    slot: slotName,
    variant,
    propensity,
    holdout: Boolean(flags.holdout),
    explored: Boolean(flags.explored),
    scores: p,
    probabilities: pi,
    model_version: model.model_version,
    decision_id: decisionId,
    top_features: topFeatures(config, variant, active),
    forced: Boolean(flags.forced),
  });

  if (force !== null && force !== undefined && variants.includes(force)) return made(force, 1.0, { forced: true });
  const unit = visitorId || decisionId;
  if (fnv1a32(`holdout\x1f${unit}\x1f${slotName}`) / TWO_32 < (config.holdout ?? 0)) {
    return made(config.default, 1.0, { holdout: true });
  }
  const u = fnv1a32(`${visitorId}\x1f${slotName}\x1f${decisionId}`) / TWO_32;
  let cumulative = 0.0;
  let chosen = variants[variants.length - 1];
  for (const v of variants) {
    cumulative += pi[v];
    if (u < cumulative) {
      chosen = v;
      break;
    }
  }
  return made(chosen, pi[chosen], { explored: chosen !== top });
}
