"""The demo shop, served by the origin: home, category and product pages.

The home page carries the un-personalized default HTML in its slots (the edge or the snippet
decides them before first paint). Later pages are decided here, server-side, with the
session's context: each page view is recorded in the session, so a visitor who just looked
at running shoes gets running content on the next page. Every value taken from the request
is escaped before it reaches HTML; slot HTML comes only from site.toml.
"""

from __future__ import annotations

import html
import mimetypes
import string
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from origin.api import decide_slots
from origin.scripts import firstpaint_version
from origin.services import Origin
from origin.storage import EVENT

SITE_DIR = Path(__file__).with_name("site")
SESSION_COOKIE, VISITOR_COOKIE, CONSENT_COOKIE = "fp_sid", "fp_vid", "fp_consent"
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    blurb: str


def load_catalog(path: Path = SITE_DIR / "catalog.toml") -> dict[str, Product]:
    return {p["id"]: Product(**p) for p in tomllib.loads(path.read_text("utf-8"))["products"]}


class OptionalStatic:
    """Static files from a directory that may not exist (yet): 404, not 500, when it does not."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: StaticFiles | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._files is None and self.directory.is_dir():
            self._files = StaticFiles(directory=self.directory)
        if self._files is None:
            await Response("not built: " + self.directory.name, status_code=404)(
                scope, receive, send
            )
            return
        await self._files(scope, receive, send)


class Shop:
    """Renders the demo pages for one origin."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.catalog = load_catalog()
        self.template = string.Template((SITE_DIR / "page.html").read_text("utf-8"))

    def _page(self, title: str, content: str, session_id: str = "") -> str:
        """The page template; `session_id` goes into `<meta name="fp-session">` so the snippet's
        events join the same session as this origin's own page views and decisions."""
        sections = self.origin.site.sections
        nav = "".join(f'<a href="/{html.escape(s)}">{html.escape(s.title())}</a>' for s in sections)
        return self.template.substitute(
            title=html.escape(title),
            site_name=html.escape(self.origin.site.name),
            nav=nav,
            content=content,
            script_version=html.escape(firstpaint_version(self.origin)),
            session_id=html.escape(session_id),
        )

    def _consent(self, request: Request) -> bool:
        """The edge worker's consent rule: `fp_consent=0` refuses; if required, only `1` allows."""
        consent = request.cookies.get(CONSENT_COOKIE)
        return consent == "1" if self.origin.settings.consent_required else consent != "0"

    def _ids(self, request: Request) -> tuple[str, str]:
        sid = request.cookies.get(SESSION_COOKIE, "")
        # Without consent the visitor id lives for this request only: nothing ties visits together.
        vid = request.cookies.get(VISITOR_COOKIE, "") if self._consent(request) else ""
        valid = (
            all(c.isalnum() or c in "-_" for c in sid + vid) and len(sid) <= 64 and len(vid) <= 64
        )
        return (
            (sid or uuid.uuid4().hex, vid or uuid.uuid4().hex)
            if valid
            else (uuid.uuid4().hex, uuid.uuid4().hex)
        )

    def _respond(
        self, request: Request, body: str, ids: tuple[str, str], status: int = 200
    ) -> HTMLResponse:
        response = HTMLResponse(body, status_code=status)
        # HttpOnly: the snippet learns the session id from the page's <meta name="fp-session">.
        secure = request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE,
            ids[0],
            max_age=self.origin.settings.session_ttl_s,
            httponly=True,
            secure=secure,
            samesite="lax",
        )
        if self._consent(request):
            response.set_cookie(
                VISITOR_COOKIE,
                ids[1],
                max_age=365 * 86400,
                httponly=True,
                secure=secure,
                samesite="lax",
            )
        elif VISITOR_COOKIE in request.cookies:
            response.delete_cookie(VISITOR_COOKIE, httponly=True, secure=secure, samesite="lax")
        return response

    def _view(
        self, ids: tuple[str, str], path: str, category: str | None, price: float | None
    ) -> None:
        event = {
            "type": "view",
            "session_id": ids[0],
            "visitor_id": ids[1],
            "category": category,
            "price": price,
            "path": path,
            "ts_ms": self.origin.clock.now_ms(),
        }
        self.origin.writer.write_soon([(EVENT, event)])
        self.origin.sessions.observe(event)

    def _slot(self, name: str, decision: dict[str, Any] | None, when: str = "") -> str:
        """A slot element: decided here (its token in `data-fp-decision`, as the edge marks
        the slots it decided, so the snippet only measures it) or holding the default."""
        slot = self.origin.site.slots[name]
        attrs = f' data-fp-slot="{html.escape(name)}"'
        if when:
            attrs += f' data-fp-when="{html.escape(when)}"'
        if decision is None:
            return f"<div{attrs}>{slot.variants[slot.default]}</div>"
        attrs += "".join(
            f' data-fp-{key}="{html.escape(str(decision[field]))}"'
            for key, field in (("variant", "variant"), ("decision", "token"))
            if field in decision
        )
        return f"<div{attrs}>{decision['html']}</div>"

    def _decide(self, request: Request, ids: tuple[str, str], slots: list[str]) -> dict[str, dict]:
        """Decide `slots` for this page: the session holds what the visitor did *before* it
        (this page's view is recorded after), the URL says where they are now."""
        context = {
            "url": str(request.url),
            "referrer": request.headers.get("referer", ""),
            "user_agent": request.headers.get("user-agent", ""),
            "accept_language": request.headers.get("accept-language", ""),
            "ch_ua_mobile": request.headers.get("sec-ch-ua-mobile", ""),
        }
        request_body = {
            "slots": slots,
            "context": context,
            "session_id": ids[0],
            "visitor_id": ids[1],
        }
        return {d["slot"]: d for d in decide_slots(self.origin, request_body)}

    def _products(self, products: list[Product]) -> str:
        items = "".join(
            f'<li><a href="/product/{html.escape(p.id)}">{html.escape(p.name)}</a>'
            f"<p>{html.escape(p.blurb)}</p><strong>${p.price:.2f}</strong></li>"
            for p in products
        )
        return f'<ul class="products">{items}</ul>'

    def _ranked(self, ids: tuple[str, str]) -> list[Product]:
        """Products, the session's (and profile's) categories first."""
        interests = self.origin.sessions.context(ids[0], ids[1]).get("categories", [])
        rank = {c: i for i, c in enumerate(interests)}
        return sorted(self.catalog.values(), key=lambda p: rank.get(p.category, len(rank)))

    async def home(self, request: Request) -> Response:
        ids = self._ids(request)
        content = (
            self._slot("hero", None)
            + "<h2>Picked for you</h2>"
            + self._products((await self.origin.run_sessions(self._ranked, ids))[:6])
            + '<div class="spacer"></div>'
            + self._slot("promo", None, when="idle")
        )
        return self._respond(request, self._page("Home", content, ids[0]), ids)

    async def section(self, request: Request) -> Response:
        name = request.path_params["section"]
        if name not in self.origin.site.sections:
            return await self.not_found(request)
        ids = self._ids(request)
        decided = await self.origin.run_sessions(self._decide, request, ids, ["hero", "promo"])
        await self.origin.run_sessions(self._view, ids, request.url.path, name, None)
        products = [p for p in self.catalog.values() if p.category == name]
        content = (
            self._slot("hero", decided.get("hero"))
            + f"<h2>{html.escape(name.title())}</h2>"
            + self._products(products)
            + self._slot("promo", decided.get("promo"))
        )
        return self._respond(request, self._page(name.title(), content, ids[0]), ids)

    async def product(self, request: Request) -> Response:
        product = self.catalog.get(request.path_params["product_id"])
        if product is None:
            return await self.not_found(request)
        ids = self._ids(request)
        decided = await self.origin.run_sessions(self._decide, request, ids, ["hero", "promo"])
        await self.origin.run_sessions(
            self._view, ids, request.url.path, product.category, product.price
        )
        ranked = await self.origin.run_sessions(self._ranked, ids)
        related = [p for p in ranked if p.id != product.id][:3]
        content = (
            f"<h1>{html.escape(product.name)}</h1><p>{html.escape(product.blurb)}</p>"
            f"<p><strong>${product.price:.2f}</strong></p>"
            + self._slot("hero", decided.get("hero"))
            + "<h2>You may also like</h2>"
            + self._products(related)
            + self._slot("promo", decided.get("promo"))
        )
        return self._respond(request, self._page(product.name, content, ids[0]), ids)

    async def not_found(self, request: Request) -> Response:
        content = (
            f"<h1>Not found</h1><p>No page at <code>{html.escape(request.url.path)}</code>.</p>"
        )
        return HTMLResponse(self._page("Not found", content), status_code=404)


def routes(origin: Origin) -> list[BaseRoute]:
    shop = Shop(origin)
    settings = origin.settings
    return [
        Route("/", shop.home),
        Route("/product/{product_id}", shop.product),
        Mount("/static", app=StaticFiles(directory=SITE_DIR / "static")),
        Mount("/fp/pyodide", app=OptionalStatic(settings.pyodide_dir)),
        Mount("/fp", app=OptionalStatic(settings.browser_dist)),
        Route("/{section}", shop.section),
    ]
