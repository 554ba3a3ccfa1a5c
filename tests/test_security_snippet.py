"""The snippet in Chromium never turns visitor input into markup: XSS payloads in the URL's UTM
values, the referrer, cookies, Accept-Language and the snippet's own storage keys leave no script
run, no element carrying them, and only site.toml HTML in the slots it decides."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest

from tests.test_security_injection import MARK, PAYLOADS

pytestmark = pytest.mark.browser

# Before any page script: a trap for payloads that run, and a log of elements that carry one.
TRAP = """
window.__xss = [];
window.%(mark)s = (n) => window.__xss.push('ran ' + n);
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType === 1 && n.outerHTML.includes('%(mark)s')) {
      window.__xss.push('element ' + n.outerHTML.slice(0, 120));
    }
  }
}).observe(document, {childList: true, subtree: true, attributes: true});
try {
  localStorage.setItem('fp_vid', %(payload)s);
  sessionStorage.setItem('fp_sid', %(payload)s);
} catch (e) {}
"""

FROM_SITE = """() => {
  const site = window.firstpaintModel.site.slots;
  return [...document.querySelectorAll('[data-fp-slot]')].map((el) => {
    const known = Object.values(site[el.dataset.fpSlot]?.html || {}).some((h) => {
      const t = document.createElement('template');
      t.innerHTML = h;
      return t.innerHTML === el.innerHTML;
    });
    return {slot: el.dataset.fpSlot, known, variant: el.dataset.fpVariant || null};
  });
}"""


# Three breakouts (element, attribute, URL scheme): a browser page per payload is costly.
@pytest.mark.parametrize("payload", [PAYLOADS[0], PAYLOADS[2], PAYLOADS[4]])
def test_snippet_turns_no_input_into_markup(chromium, site, payload):
    import json

    context = chromium.new_context(
        locale="en-US", extra_http_headers={"accept-language": quote(payload)}
    )
    try:
        context.add_cookies(
            [
                {"name": "fp_vid", "value": quote(payload), "url": site.url},
                {"name": "fp_consent", "value": quote(payload), "url": site.url},
            ]
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.add_init_script(TRAP % {"mark": MARK, "payload": json.dumps(payload)})
        query = urlencode(
            {"utm_source": payload, "utm_medium": payload, "utm_campaign": payload, "q": payload}
        )
        page.goto(
            f"{site.url}/?{query}#{quote(payload)}",
            referer=f"https://evil.example/?q={quote(payload)}",
        )
        page.wait_for_function(
            "window.firstpaint && firstpaint.decisions.length > 0"
        )  # decided at first paint
        assert page.evaluate("window.__xss") == []
        slots = page.evaluate(FROM_SITE)
        assert slots and all(s["known"] for s in slots), slots
        assert any(s["variant"] for s in slots), "the snippet decided at least one slot"
        assert MARK not in page.evaluate("document.documentElement.outerHTML")
        assert errors == []
    finally:
        context.close()
