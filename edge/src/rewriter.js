// Swap the content of `[data-fp-slot]` elements inside the HTML stream (HTMLRewriter streams:
// each chunk goes out as soon as it has been rewritten; the body is never held whole).

/**
 * Rewrite `response` with the prepared `slots` (slot name → {slot, variant, html, token}).
 * `onShown(prepared)` is called once per slot, when it is first found in the page (a slot nested
 * in a rewritten slot is not in the page).
 * (No document-end handler: workerd then holds the stream's last chunk for a JS round trip.)
 */
export function rewriteSlots(response, slots, onShown) {
  const seen = new Set();
  return new HTMLRewriter()
    .on('[data-fp-slot]', {
      element(element) {
        // A slot inside a slot rewritten above it went with the old content: HTMLRewriter still
        // calls the handler, but the visitor never sees it, so it is neither rewritten nor logged.
        if (element.removed) return;
        const prepared = slots.get(element.getAttribute('data-fp-slot'));
        if (!prepared) return; // a slot the model or the site config does not know stays as it is
        // The origin already decided (and logged) this slot: showing another variant would make
        // its logged decision a lie.
        if (element.hasAttribute('data-fp-decision')) return;
        element.setInnerContent(prepared.html, { html: true });
        element.setAttribute('data-fp-variant', prepared.variant);
        if (prepared.token) element.setAttribute('data-fp-decision', prepared.token);
        if (!seen.has(prepared.slot)) {
          seen.add(prepared.slot);
          onShown(prepared);
        }
      },
    })
    .transform(response);
}
