// The decision log (CONTRACT §8): every decision shown to a visitor goes to the origin in
// `POST /v1/decisions`, in the background after its page has streamed, batched across the
// requests this isolate serves: the first record of a batch schedules a send FP_LOG_BATCH_MS
// later (default 100), and later records join it until it holds MAX_BATCH.

const MAX_BATCH = 100;
const DEFAULT_BATCH_MS = 100;

// Records waiting to be sent, by origin. Only plain data is shared between requests here; each
// send runs in the waitUntil of the request that scheduled it.
const pending = new Map();
let scheduledAtMs = 0; // when the pending send was scheduled (0: none)
const LOST_SEND_MS = 30_000; // a send whose request context was cancelled never runs

/** The log record of one decision, with the raw request context it was made from. */
export function logRecord(decision, visitorId, context, token) {
  return {
    decision_id: decision.decision_id,
    slot: decision.slot,
    variant: decision.variant,
    propensity: decision.propensity,
    model_version: decision.model_version,
    visitor_id: visitorId,
    context,
    ts_ms: context.now_ms,
    holdout: decision.holdout,
    token,
  };
}

function batchDelayMs(env) {
  const ms = Number(env.FP_LOG_BATCH_MS ?? DEFAULT_BATCH_MS);
  return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_BATCH_MS;
}

/**
 * Queue `records` for `{originBase}/v1/decisions`. Returns the promise of the send this call
 * scheduled (for the caller's waitUntil), or null when an already scheduled send takes them.
 */
export function queueDecisions(env, originBase, records) {
  if (!records.length) return null;
  const queue = pending.get(originBase) ?? [];
  queue.push(...records);
  pending.set(originBase, queue);
  if (queue.length >= MAX_BATCH) return flush();
  const delayMs = batchDelayMs(env);
  const now = Date.now();
  if (scheduledAtMs && now - scheduledAtMs < delayMs + LOST_SEND_MS) return null;
  scheduledAtMs = now;
  return new Promise((resolve) => setTimeout(resolve, delayMs)).then(flush);
}

async function flush() {
  scheduledAtMs = 0;
  const batches = [];
  for (const [base, queue] of pending) {
    while (queue.length) batches.push(sendDecisions(base, queue.splice(0, MAX_BATCH)));
  }
  pending.clear();
  await Promise.all(batches);
}

/** POST `records` to `{originBase}/v1/decisions`; failures are reported, never thrown. */
export async function sendDecisions(originBase, records) {
  try {
    const response = await fetch(`${originBase}/v1/decisions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ decisions: records }),
    });
    await response.body?.cancel();
    if (!response.ok) console.warn(`firstpaint: POST /v1/decisions answered ${response.status} for ${records.length} decisions`);
  } catch (error) {
    console.warn(`firstpaint: POST /v1/decisions failed for ${records.length} decisions: ${error.message}`);
  }
}
