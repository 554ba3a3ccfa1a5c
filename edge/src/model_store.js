// The worker's current model: the bundled starter model until `GET {FP_ORIGIN}/v1/model`
// brings a newer one. Refreshes run in the background (ctx.waitUntil) at most every
// FP_MODEL_REFRESH_S seconds and never block a request (stale-while-revalidate); a failed
// fetch or a model that fails its checks keeps the last good one.

import starter from './model.json';
import { checkModel, ModelError } from './policy.js';

const DEFAULT_REFRESH_S = 10;
const HEADER_SAFE = /^[\x20-\x7e]+$/; // the version goes out in x-fp-model
const STUCK_REFRESH_MS = 30_000; // a refresh whose request context died never reports back

// Module state lives as long as the isolate. Only settled values are kept here: workerd ties a
// pending promise to the request that created it, so no promise is shared between requests.
const state = {
  model: null,
  etag: null,
  starterChecked: false,
  checkedAtMs: 0,
  refreshingSinceMs: 0,
  refreshes: 0,
  lastError: null,
};

/** The model to decide with now (null when not even the starter model is valid). */
export async function currentModel() {
  if (!state.starterChecked) {
    try {
      const model = await usableModel(starter);
      if (!state.model) adopt(model, null);
    } catch (error) {
      state.lastError = `starter model rejected: ${error.message}`;
    }
    state.starterChecked = true;
  }
  return state.model;
}

/** `model` once it passes checkModel and its version can be sent as a header value. */
async function usableModel(model) {
  const checked = await checkModel(model);
  if (typeof checked.model_version !== 'string' || !HEADER_SAFE.test(checked.model_version)) {
    throw new ModelError(`model_version must be printable ASCII, got ${JSON.stringify(checked.model_version)}`);
  }
  return checked;
}

function adopt(model, etag) {
  state.model = model;
  state.etag = etag || `"${model.sha256}"`;
}

/** Seconds between refreshes from FP_MODEL_REFRESH_S (default 10; 0 = on every request). */
export function refreshSeconds(env) {
  const raw = env.FP_MODEL_REFRESH_S;
  if (raw === undefined || raw === '') return DEFAULT_REFRESH_S;
  const seconds = Number(raw);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_REFRESH_S;
}

/** Start a background refresh through ctx.waitUntil when one is due. */
export function refreshIfDue(env, ctx, originBase, nowMs) {
  if (state.refreshingSinceMs && nowMs - state.refreshingSinceMs < STUCK_REFRESH_MS) return;
  if (state.checkedAtMs && nowMs - state.checkedAtMs < refreshSeconds(env) * 1000) return;
  state.checkedAtMs = nowMs;
  state.refreshingSinceMs = nowMs;
  ctx.waitUntil(
    refresh(originBase).finally(() => {
      state.refreshingSinceMs = 0;
    }),
  );
}

async function refresh(originBase) {
  state.refreshes += 1;
  try {
    const headers = state.etag ? { 'if-none-match': state.etag } : {};
    const response = await fetch(`${originBase}/v1/model`, { headers });
    if (response.status === 304) {
      state.lastError = null;
      return;
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      state.lastError = `GET /v1/model answered ${response.status}`;
      return;
    }
    const model = await usableModel(JSON.parse(await response.text()));
    adopt(model, response.headers.get('etag'));
    state.lastError = null;
  } catch (error) {
    state.lastError = `model refresh failed: ${error.message}`;
  }
}

/** What the worker knows about its model (for the FP_DEV status endpoint). */
export function modelStatus() {
  return {
    model_version: state.model?.model_version ?? null,
    sha256: state.model?.sha256 ?? null,
    etag: state.etag,
    checked_at_ms: state.checkedAtMs,
    refreshing: Boolean(state.refreshingSinceMs),
    refreshes: state.refreshes,
    last_error: state.lastError,
  };
}
