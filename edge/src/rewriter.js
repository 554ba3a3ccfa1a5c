// Swap the content of `[data-fp-slot]` elements inside the HTML stream (HTMLRewriter streams:
// each chunk goes out as soon as it has been rewritten; the body is never held whole).

/**
 * Rewrite `response` with the prepared `slots` (slot name → {variant, html, token}).
 * `onShown(slot)` is called for each slot actually found in the page, `onEnd()` at the end.
 */
export function rewriteSlots(response, slots, { onShown, onEnd }) {
  return new HTMLRewriter()
    .on('[data-fp-slot]', {
      element(element) {
        const prepared = slots.get(element.getAttribute('data-fp-slot'));
        if (!prepared) return; // a slot the model or the site config does not know stays as it is
        // The origin already decided (and logged) this slot: showing another variant would make
        // its logged decision a lie.
        if (element.hasAttribute('data-fp-decision')) return;
        element.setInnerContent(prepared.html, { html: true });
        element.setAttribute('data-fp-variant', prepared.variant);
        if (prepared.token) element.setAttribute('data-fp-decision', prepared.token);
        else element.removeAttribute('data-fp-decision');
        onShown(prepared.slot);
      },
    })
    .onDocument({ end: onEnd })
    .transform(response);
}
