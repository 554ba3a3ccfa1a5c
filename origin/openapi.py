"""`GET /openapi.json`: the origin's HTTP API as an OpenAPI 3.0 description.

Written by hand next to the handlers it describes (`origin/api.py`, `origin/admin.py`) and
checked against them by schemathesis (`tests/test_security_fuzz.py`): every documented status
code, content type and response body must be what the server really answers.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

JSON = "application/json"
JAVASCRIPT = {
    "description": "JavaScript.",
    "content": {"text/javascript": {"schema": {"type": "string"}}},
}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request; `error` names the field.",
        401: "No readable token (or no bearer token for /admin).",
        403: "Forged, mismatched or expired token (or a wrong bearer token).",
        404: "Unknown slot or model version.",
        409: "Nothing to roll back to or to promote.",
        413: "Body, batch, slot list or context over its cap.",
        415: "Content type other than application/json or text/plain.",
        422: "A model that fails its checks; the current one is kept.",
        429: "Over the per-IP or per-visitor rate limit; see Retry-After.",
        503: "Storage unavailable (locked, full, unreachable); nothing was written.",
    }
    return {str(c): {"description": text[c], "content": {JSON: {"schema": _ERROR}}} for c in codes}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    # text/plain: what navigator.sendBeacon sends; the body is JSON all the same.
    return {
        "required": True,
        "content": {JSON: {"schema": schema}, "text/plain": {"schema": {"type": "string"}}},
    }


_LIMITED = {
    "429": {**_errors(429)["429"], "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
    },
    "Context": {
        "type": "object",
        "description": "Raw request signals (CONTRACT §1); every key optional.",
        "properties": {
            "url": {"type": "string"},
            "referrer": {"type": "string"},
            "site_host": {"type": "string"},
            "user_agent": {"type": "string"},
            "ch_ua_mobile": {"type": "string"},
            "accept_language": {"type": "string"},
            "country": {"type": "string"},
            "timezone": {"type": "string"},
            "now_ms": {"type": "number"},
            "returning": {"type": "boolean"},
        },
    },
    "DecideRequest": {
        "type": "object",
        "required": ["slots"],
        "properties": {
            "slots": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "context": {"$ref": "#/components/schemas/Context"},
            "session_id": {"type": "string"},
            "visitor_id": {"type": "string"},
        },
    },
    "Decision": {
        "type": "object",
        "required": ["slot", "variant", "propensity", "html"],
        "properties": {
            "slot": {"type": "string"},
            "variant": {"type": "string"},
            "propensity": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1},
            "html": {"type": "string"},
            "token": {"type": "string"},
            "decision_id": {"type": "string"},
            "model_version": {"type": "string"},
            "holdout": {"type": "boolean"},
        },
    },
    "LoggedDecision": {
        "type": "object",
        "required": ["decision_id", "slot", "variant", "propensity", "model_version"],
        "properties": {
            "decision_id": {"type": "string"},
            "slot": {"type": "string"},
            "variant": {"type": "string"},
            "propensity": {"type": "number"},
            "model_version": {"type": "string"},
            "visitor_id": {"type": "string"},
            "ts_ms": {"type": "number"},
            "holdout": {"type": "boolean"},
            "context": {"$ref": "#/components/schemas/Context"},
            "token": {"type": "string"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["impression", "click", "conversion", "view"]},
            "token": {"type": "string"},
            "ts_ms": {"type": "number"},
            "session_id": {"type": "string"},
            "value": {"type": "number"},
            "category": {"type": "string"},
            "price": {"type": "number"},
            "path": {"type": "string"},
            "visitor_id": {"type": "string"},
        },
    },
    "HeldEvent": {
        "type": "object",
        "required": ["decision_id", "type"],
        "properties": {
            "decision_id": {"type": "string"},
            "type": {"type": "string", "enum": ["impression", "click", "conversion"]},
            "ts_ms": {"type": "number"},
            "value": {"type": "number", "minimum": 0},
            "session_id": {"type": "string"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["accepted"],
        "properties": {"accepted": {"type": "integer"}},
    },
}


def _batch(key: str, item: str, optional: dict[str, str] | None = None) -> dict[str, Any]:
    """A body holding a non-empty list `key` of `item`s, and lists named in `optional`."""
    lists: dict[str, Any] = {key: {**_list_of(item), "minItems": 1}}
    lists.update((name, _list_of(schema)) for name, schema in (optional or {}).items())
    return {"type": "object", "required": [key], "properties": lists}


def _list_of(schema: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}


def _admin(
    summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    operation = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {**responses, **_errors(401, 403, 503)},
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def description(slots: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document; `slots`: the site's slot names, when known."""
    schemas = json.loads(json.dumps(SCHEMAS))
    if slots:
        schemas["DecideRequest"]["properties"]["slots"]["items"]["enum"] = slots
        schemas["LoggedDecision"]["properties"]["slot"]["enum"] = slots
    accepted = {
        "202": {
            "description": "Committed durably.",
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        }
    }
    model = {
        "description": "model.json (CONTRACT §5)",
        "content": {JSON: {"schema": {"type": "object"}}},
        "headers": {"ETag": {"schema": {"type": "string"}}},
    }
    admin_ok = {"description": "Done.", "content": {JSON: {"schema": {"type": "object"}}}}
    paths = {
        "/v1/decide": {
            "post": {
                "summary": "Decide slots for a later page, with the session's context.",
                "requestBody": _json_body({"$ref": "#/components/schemas/DecideRequest"}),
                "responses": {
                    "200": {
                        "description": "One decision per slot.",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["decisions"],
                                    "properties": {
                                        "decisions": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Decision"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    **_errors(400, 413, 415, 503),
                    **_LIMITED,
                },
            }
        },
        "/v1/decisions": {
            "post": {
                "summary": "Decisions made at the edge, each with its token.",
                "requestBody": _json_body(_batch("decisions", "LoggedDecision")),
                "responses": {**accepted, **_errors(400, 401, 403, 413, 415, 503)},
            }
        },
        "/v1/decisions/client": {
            "post": {
                "summary": "Decisions the snippet made in the browser: re-checked, then signed.",
                "description": (
                    "At pagehide the snippet repeats decisions still waiting for their token, with"
                    " the events that waited (`events`, each naming its `decision_id`): a decision"
                    " already signed is not logged again, and the events of every signed decision"
                    " are recorded as if sent with its token. A different decision under an id"
                    " already signed is rejected (`duplicate decision_id`), never given that"
                    " decision's token."
                ),
                "requestBody": _json_body(
                    _batch("decisions", "LoggedDecision", optional={"events": "HeldEvent"})
                ),
                "responses": {
                    "200": {
                        "description": "Tokens for the decisions the policy agrees with.",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["tokens", "rejected", "events_accepted"],
                                    "properties": {
                                        "tokens": {"type": "object"},
                                        "rejected": {"type": "object"},
                                        "events_accepted": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    **_errors(400, 413, 415, 503),
                },
            }
        },
        "/v1/events": {
            "post": {
                "summary": "Impressions, clicks and conversions (with their token) and views.",
                "requestBody": _json_body(_batch("events", "Event")),
                "responses": {**accepted, **_errors(400, 401, 403, 413, 415, 503), **_LIMITED},
            }
        },
        "/v1/model": {
            "get": {
                "summary": "The current model.json (or only some slots), with its sha256 as ETag.",
                "parameters": [
                    {"name": "slot", "in": "query", "schema": {"type": "string"}},
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": model,
                    "304": {"description": "Not modified."},
                    **_errors(404, 503),
                },
            }
        },
        "/fp/firstpaint.js": {
            "get": {
                "summary": "The one script tag's file: compile hint, model and site, snippet code.",
                "description": "Immutable when `v` is the current version (the body's sha256, "
                "first 16 hex digits, also its ETag), else `no-cache`.",
                "parameters": [{"name": "v", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": JAVASCRIPT,
                    "304": {"description": "Not modified."},
                    "404": {"description": "The snippet is not built (`node browser/build.mjs`)."},
                },
            }
        },
        "/fp/model.js": {
            "get": {
                "summary": "The model and the site's variant HTML alone, for two-tag pages.",
                "parameters": [{"name": "v", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": JAVASCRIPT,
                    "304": {"description": "Not modified."},
                    **_errors(503),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and storage health.",
                "responses": {
                    "200": {
                        "description": "Healthy.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "Storage unavailable.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/admin/models": {
            "get": _admin("Published versions and the held candidate.", {"200": admin_ok}),
            "post": _admin(
                "Publish a model.json.",
                {"201": admin_ok, **_errors(413, 422)},
                {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
            ),
        },
        "/admin/rollback": {
            "post": _admin(
                "Serve an earlier version again.",
                {"200": admin_ok, **_errors(400, 404, 409)},
                {
                    "content": {
                        JSON: {
                            "schema": {"type": "object", "properties": {"to": {"type": "string"}}}
                        }
                    }
                },
            )
        },
        "/admin/promote": {
            "post": _admin(
                "Publish the candidate the promotion gate held.", {"201": admin_ok, **_errors(409)}
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "firstpaint origin", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: Request) -> Response:
    origin = getattr(request.app.state, "origin", None)
    return JSONResponse(description(list(origin.site.slots) if origin is not None else None))


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
