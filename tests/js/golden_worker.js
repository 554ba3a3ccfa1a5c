// A test worker: runs edge/src/policy.js and features.js inside workerd on the cases it is
// POSTed ({model, cases}) and answers what they computed, for golden.test.mjs to compare.
import { checkModel, choose, decide, canonicalJson, modelSha256 } from '../../edge/src/policy.js';
import { features } from '../../edge/src/features.js';

export default {
  async fetch(request) {
    const { model, cases } = await request.json();
    const url = new URL(request.url);
    if (url.pathname === '/sha256') return Response.json({ canonical: canonicalJson(model), sha256: await modelSha256(model) });
    if (url.pathname === '/check') {
      try {
        await checkModel(model);
        return Response.json({ ok: true });
      } catch (error) {
        return Response.json({ ok: false, name: error.name, message: error.message });
      }
    }
    await checkModel(model);
    const results = cases.map((c) => ({
      id: c.id,
      features: features(c.context, model.features),
      decision: decide(model, c.context, c.slot, c.visitor_id, c.decision_id),
      // What the browser snippet runs: the same choice, without its explanation.
      choice: choose(model, features(c.context, model.features), c.slot, c.visitor_id, c.decision_id),
    }));
    return Response.json(results);
  },
};
