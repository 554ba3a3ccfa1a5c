// A second baseline for the edge benchmark: the platform's floor for any slot rewriting — the
// same origin response through HTMLRewriter with a handler on [data-fp-slot] that does nothing.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const response = await fetch(new Request(`${env.FP_ORIGIN}${url.pathname}${url.search}`, request));
    return new HTMLRewriter().on('[data-fp-slot]', { element() {} }).transform(response);
  },
};
