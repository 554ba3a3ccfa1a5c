"""The snippet's first-paint script delivery: `GET /fp/model.js?v=<sha8>`.

Kept apart from `origin.api` (the JSON API): it serves JavaScript for the browser snippet.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def get_model_js(request: Request) -> Response:
    """`window.firstpaintModel = {model, site}` for the snippet; immutable when `?v=` is current."""
    origin = request.app.state.origin
    try:
        served = origin.holder.view()
    except LookupError:
        return JSONResponse({"error": "no model published yet"}, status_code=503)
    site = json.dumps(origin.site.to_json(), ensure_ascii=False, separators=(",", ":"))
    body = b'window.firstpaintModel={"model":' + served.body + b',"site":' + site.encode() + b"};\n"
    current = served.etag.strip('"')[:8]
    cache = (
        "public, max-age=31536000, immutable"
        if request.query_params.get("v") == current
        else "no-cache"
    )
    return Response(
        body, media_type="text/javascript", headers={"Cache-Control": cache, "ETag": served.etag}
    )


routes = [Route("/fp/model.js", get_model_js, methods=["GET"])]
