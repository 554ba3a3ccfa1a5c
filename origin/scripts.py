"""The snippet's first-paint script: `GET /fp/firstpaint.js?v=<version>`, one file for one tag.

It carries, in this order, V8's compile hint, the model and the site's slot HTML
(`window.firstpaintModel = {model, site}`) and the snippet's code (`browser/dist/snippet.js`),
so a first visit gets everything it decides with in one request, and the page names it with a
version that changes whenever the model or the snippet does: immutable for a year when `v` is
current, `no-cache` (revalidated by ETag) otherwise. `GET /fp/model.js?v=<sha8>` still serves
the data part alone, for a site that loads it and `/fp/snippet.js` with two tags of its own.

Kept apart from `origin.api` (the JSON API): it serves JavaScript for the browser snippet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from model_export.features import per_object
from model_export.site import Site
from origin.models import etag_matches
from origin.services import Origin

# Compile every function while the script is parsed (Chromium ≥ 136; a comment elsewhere). The
# build puts it atop snippet.js; the combined file moves it atop everything it serves.
COMPILE_HINT = b"//# allFunctionsCalledOnLoad\n"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Script:
    """One served script: its bytes, gzipped once, and the version that names them in URLs and
    the ETag (the gzipped representation's ETag adds `-gzip`)."""

    body: bytes
    version: str
    gzipped: bytes

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


_SITE_JSON: dict[int, tuple[Site, str]] = {}


def _site_json(site: Site) -> str:
    """The site as compact JSON, encoded once per Site: every page render looks up the script's
    version, which is cached per (model, site JSON, snippet); a site never changes at run time."""
    return per_object(
        _SITE_JSON,
        site,
        lambda s: json.dumps(s.to_json(), ensure_ascii=False, separators=(",", ":")),
    )


def _model_data(model: bytes, site_json: str) -> bytes:
    """`window.firstpaintModel={"model":…,"site":…};`: the model as served and the site's slots."""
    return b'window.firstpaintModel={"model":' + model + b',"site":' + site_json.encode() + b"};\n"


@functools.lru_cache(maxsize=8)
def _bundle(model: bytes | None, site_json: str, snippet: Path, mtime_ns: int, size: int) -> Script:
    """The combined file for this model body, site and build of the snippet (`mtime_ns` and
    `size` are only the cache key: a rebuilt snippet is picked up without a restart)."""
    code = snippet.read_bytes().removeprefix(COMPILE_HINT)
    # No model yet: the snippet still measures edge-decided slots and keeps the defaults.
    data = b"" if model is None else _model_data(model, site_json)
    body = COMPILE_HINT + data + code
    # A third of the size on the wire (the model's text compresses well), compressed once per
    # bundle: with no CDN in front, this is the file that holds the first paint.
    return Script(body, hashlib.sha256(body).hexdigest()[:16], gzip.compress(body, 9, mtime=0))


def firstpaint_script(origin: Origin) -> Script:
    """The current `/fp/firstpaint.js`; FileNotFoundError when the snippet is not built."""
    snippet = origin.settings.browser_dist / "snippet.js"
    stat = snippet.stat()
    try:
        model: bytes | None = origin.holder.view().body
    except LookupError:
        model = None
    return _bundle(model, _site_json(origin.site), snippet, stat.st_mtime_ns, stat.st_size)


def firstpaint_version(origin: Origin) -> str:
    """The `v` a page puts in its `/fp/firstpaint.js` URL ("" when the snippet is not built)."""
    try:
        return firstpaint_script(origin).version
    except FileNotFoundError:
        return ""


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header admits gzip (RFC 9110 §12.5.3): `gzip` (or
    `x-gzip`) with a weight above 0, or else `*` with one."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").lower().split(","):
        coding, *params = item.split(";")
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def _serve(
    request: Request, body: bytes, etag: str, current: str, gzipped: bytes | None = None
) -> Response:
    """`body` as JavaScript, gzipped when `gzipped` is given and the browser accepts it:
    immutable when the URL's `v` is `current`, else `no-cache`; 304 when the browser
    revalidates with either representation's current ETag."""
    cache = IMMUTABLE if request.query_params.get("v") == current else "no-cache"
    headers = {"Cache-Control": cache, "ETag": etag}
    revalidating = request.headers.get("if-none-match")
    matches = etag_matches(revalidating, etag)
    if gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
        gzip_etag = etag[:-1] + '-gzip"'
        matches = matches or etag_matches(revalidating, gzip_etag)
        if accepts_gzip(request.headers.get("accept-encoding")):
            headers.update({"ETag": gzip_etag, "Content-Encoding": "gzip"})
            body = gzipped
    if matches:
        headers.pop("Content-Encoding", None)
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript", headers=headers)


async def get_firstpaint_js(request: Request) -> Response:
    """The one script tag's file: compile hint, model and site, snippet code."""
    try:
        script = firstpaint_script(request.app.state.origin)
    except FileNotFoundError:
        return Response("not built: snippet.js", status_code=404)
    return _serve(request, script.body, script.etag, script.version, script.gzipped)


async def get_model_js(request: Request) -> Response:
    """`window.firstpaintModel = {model, site}` alone, for a site that loads `/fp/snippet.js`
    with a tag of its own; immutable when `?v=` is the model's first 8 sha256 hex digits."""
    origin = request.app.state.origin
    try:
        served = origin.holder.view()
    except LookupError:
        return JSONResponse({"error": "no model published yet"}, status_code=503)
    body = _model_data(served.body, _site_json(origin.site))
    return _serve(request, body, served.etag, served.etag.strip('"')[:8])


routes = [
    Route("/fp/firstpaint.js", get_firstpaint_js, methods=["GET"]),
    Route("/fp/model.js", get_model_js, methods=["GET"]),
]
