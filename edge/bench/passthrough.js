// The baseline for the edge benchmark: a worker that only forwards to the same origin.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(new Request(`${env.FP_ORIGIN}${url.pathname}${url.search}`, request));
  },
};
