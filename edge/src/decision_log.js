// The decision log (CONTRACT §8): every decision shown to a visitor goes to the origin in one
// `POST /v1/decisions` per page, in the background, after the page has streamed.

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

/** POST `records` to `{originBase}/v1/decisions`; failures are reported, never thrown. */
export async function sendDecisions(originBase, records) {
  if (!records.length) return;
  try {
    const response = await fetch(`${originBase}/v1/decisions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ decisions: records }),
    });
    await response.body?.cancel();
    if (!response.ok) console.warn(`firstpaint: POST /v1/decisions answered ${response.status}`);
  } catch (error) {
    console.warn(`firstpaint: POST /v1/decisions failed: ${error.message}`);
  }
}
