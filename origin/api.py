"""The `/v1` API, `/healthz` and `/metrics`.

Handlers only wire: validation (`origin.validation`), the policy (`model_export.policy`),
sessions (`origin.sessions`), the group-committing log writer and the model holder. Every
write is acknowledged only after its commit; a storage failure is a 503 with no partial write.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from typing import Any

import orjson
from anyio import to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from model_export.features import features
from model_export.policy import decision_fields
from origin.models import etag_matches
from origin.services import Origin
from origin.storage import DECISION, EVENT, StorageError
from origin.tokens import sign
from origin.validation import (
    RequestError,
    client_decisions_batch,
    decide_request,
    decisions_batch,
    events_batch,
    held_events,
    parse_json_body,
)


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response (compact UTF-8), encoded by orjson: several times faster."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _origin(request: Request) -> Origin:
    return request.app.state.origin


async def _json_body(request: Request, origin: Origin) -> Any:
    """The request's JSON, refusing bodies over the byte cap before reading them whole."""
    return await _read_json(request.scope, request.receive, origin)


async def _read_json(scope: Scope, receive: Receive, origin: Origin) -> Any:
    """`_json_body` on the raw ASGI request (ClientDisconnect if the client leaves mid-body)."""
    cap = origin.limits.max_body_bytes
    content_type = declared = b""
    for name, value in scope["headers"]:
        if name == b"content-length" and not declared:
            declared = value
        elif name == b"content-type" and not content_type:
            content_type = value
    if declared.isdigit() and int(declared) > cap:
        raise RequestError(
            413, "too_large", f"body is {declared.decode()} bytes; the limit is {cap}"
        )
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise RequestError(413, "too_large", f"body exceeds the limit of {cap} bytes")
        if not message.get("more_body", False):
            break
    return parse_json_body(content_type.decode("latin-1"), b"".join(chunks), origin.limits)


def _rejection(origin: Origin, exc: RequestError) -> dict[str, str]:
    """Count a rejected request; the body that answers it."""
    origin.metrics.rejected.inc(reason=exc.reason)
    return {"error": exc.message, "reason": exc.reason}


def _rejected(origin: Origin, exc: RequestError) -> JSONResponse:
    return JSONResponse(_rejection(origin, exc), status_code=exc.status)


def _unavailable(exc: StorageError) -> JSONResponse:
    return JSONResponse(_outage(exc), status_code=503)


def _outage(exc: StorageError) -> dict[str, str]:
    return {"error": f"storage unavailable: {exc}"}


async def post_decisions(request: Request) -> Response:
    """Decisions made at the edge: validated, token-checked, committed, then 202."""
    origin = _origin(request)
    try:
        body = await _json_body(request, origin)
        records = decisions_batch(
            body,
            origin.slot_variants,
            origin.secret,
            origin.clock.now_ms(),
            origin.settings.token_max_age_ms,
            origin.limits,
        )
        await origin.writer.write([(DECISION, r) for r in records])
    except RequestError as exc:
        return _rejected(origin, exc)
    except StorageError as exc:
        return _unavailable(exc)
    origin.metrics.decisions.inc(len(records), source="edge")
    return JSONResponse({"accepted": len(records)}, status_code=202)


async def post_events(request: Request) -> Response:
    """Engagement and view events (JSON or sendBeacon's text/plain): committed, then 202."""
    origin = _origin(request)
    try:
        body = await _json_body(request, origin)
        records = _events(origin, body)
        await origin.writer.write([(EVENT, r) for r in records])
    except RequestError as exc:
        return _rejected(origin, exc)
    except StorageError as exc:
        return _unavailable(exc)
    await _committed(origin, records)
    return JSONResponse({"accepted": len(records)}, status_code=202)


def _events(origin: Origin, body: Any) -> list[dict[str, Any]]:
    """Validated event records of `body`, reward events checked against their tokens."""
    return events_batch(
        body, origin.secret, origin.clock.now_ms(), origin.settings.token_max_age_ms, origin.limits
    )


async def _committed(origin: Origin, records: list[dict[str, Any]]) -> None:
    """Count committed events and feed their sessions (a failure there only stales context)."""
    for record in records:
        origin.metrics.accepted.inc(type=record["type"])
    if any(r.get("session_id") for r in records):
        try:
            await origin.run_sessions(_observe_all, origin, records)
        except StorageError:
            origin.metrics.session_errors.inc()  # events are committed; only context is stale


def _observe_all(origin: Origin, records: list[dict[str, Any]]) -> None:
    for record in records:
        origin.sessions.observe(record)


async def post_client_decisions(request: Request) -> Response:
    """Decisions made in the browser: re-decided here; logged and signed only if they agree."""
    origin = _origin(request)
    try:
        body = await _json_body(request, origin)
        records = client_decisions_batch(
            body, origin.slot_variants, origin.clock.now_ms(), origin.limits
        )
        held = held_events(body, origin.limits)
        tokens, rejected, logged = await to_thread.run_sync(_recheck, origin, records)
        if logged:
            try:
                await origin.writer.write(logged)
            except StorageError:  # not logged after all: the snippet's next try must log them
                with contextlib.suppress(StorageError):  # the store may be what failed
                    await to_thread.run_sync(_forget_claims, origin, logged)
                raise
        signed = [
            {**e, "token": tokens[e["decision_id"]]} for e in held if e["decision_id"] in tokens
        ]
        events = _events(origin, {"events": signed}) if signed else []
        if events:
            await origin.writer.write([(EVENT, r) for r in events])
    except RequestError as exc:
        return _rejected(origin, exc)
    except StorageError as exc:
        return _unavailable(exc)
    origin.metrics.decisions.inc(len(logged), source="client")
    for reason in rejected.values():
        origin.metrics.rejected.inc(
            reason="client_decision_" + reason.split(":")[0].replace(" ", "_")
        )
    await _committed(origin, events)
    return JSONResponse({"tokens": tokens, "rejected": rejected, "events_accepted": len(events)})


def _recheck(origin: Origin, records: list[dict[str, Any]]):
    """(tokens, rejected, log entries): a client decision counts only if the policy agrees."""
    tokens: dict[str, str] = {}
    rejected: dict[str, str] = {}
    logged: list[tuple[str, dict[str, Any]]] = []
    now = origin.clock.now_ms()
    for record in records:
        decision_id = record["decision_id"]
        model = origin.holder.by_version(record["model_version"])
        if model is None:
            rejected[decision_id] = "unknown model_version"
            continue
        if record["slot"] not in model["slots"]:
            rejected[decision_id] = "slot not in that model"
            continue
        again = decision_fields(
            model, record["context"], record["slot"], record["visitor_id"], decision_id
        )
        variant, propensity = again["variant"], again["propensity"]
        if variant != record["variant"] or not math.isclose(
            propensity, record["propensity"], rel_tol=1e-9, abs_tol=1e-12
        ):
            rejected[decision_id] = f"mismatch: the policy chose {variant} ({propensity:.6g})"
            continue
        record["holdout"] = again["holdout"]
        token = sign(origin.secret, again, now)
        # The snippet may send a decision twice, at once: its token request, still in flight
        # when the visitor leaves, and the pagehide beacon with the events that waited for that
        # token. Whichever is signed first is logged; the other gets the same token. (Remembered
        # for the reward window: later, no event could be joined to the decision anyway.)
        digest = _client_digest(record)
        held, first = origin.storage.claim_once(
            _client_claim(decision_id), f"{digest} {token}", int(origin.settings.reward_window_s)
        )
        held_digest, _, held_token = held.partition(" ")
        if held_digest != digest:  # another decision under that id: its token is not for this one
            rejected[decision_id] = "duplicate decision_id: another decision has it"
            continue
        tokens[decision_id] = held_token
        if first:
            logged.append((DECISION, record))
    return tokens, rejected, logged


def _client_claim(decision_id: str) -> str:
    return "client-decision:" + decision_id


def _client_digest(record: dict[str, Any]) -> str:
    """What makes a client decision itself (not when it was sent), hashed: the same decision
    sent again matches; a different one that reuses a known decision id does not, so it cannot
    obtain the first one's token and forge its rewards."""
    fields = {k: record[k] for k in ("slot", "variant", "model_version", "visitor_id")}
    fields.update(propensity=record["propensity"], context=record["context"])
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _forget_claims(origin: Origin, logged: list[tuple[str, dict[str, Any]]]) -> None:
    for _, record in logged:
        origin.storage.forget_claim(_client_claim(record["decision_id"]))


def _decision_id() -> str:
    """A random version-4 UUID in hex, as `uuid.uuid4().hex` writes it, minus its object.

    The random bytes come from `os.urandom` 256 ids at a time: one `getrandom` call per
    request released the GIL in the middle of the hot path, and each release let the
    background threads (log writer, learner) take the GIL from the request for a while.
    """
    try:
        return _unused_ids.pop()
    except IndexError:  # empty (or emptied by another thread just now): read a new batch
        raw = bytearray(os.urandom(16 * _IDS_PER_READ))
        raw[6::16] = raw[6::16].translate(_VERSION_4)
        raw[8::16] = raw[8::16].translate(_RFC_4122_VARIANT)
        text = raw.hex()
        _unused_ids.extend(text[i : i + 32] for i in range(0, len(text), 32))
        return _unused_ids.pop()


_IDS_PER_READ = 256
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # byte 6: version nibble 4
_RFC_4122_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))  # byte 8: variant bits 10
_unused_ids: list[str] = []  # list.pop is atomic: Redis sessions decide in worker threads
os.register_at_fork(after_in_child=_unused_ids.clear)  # a forked worker must not reuse ids


def decide_slots(origin: Origin, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Decide each requested slot with session context; log the decisions; add token and HTML."""
    model = origin.holder.model
    now = origin.clock.now_ms()
    visitor_id = request["visitor_id"]
    context = origin.sessions.enrich(request["context"], request["session_id"], visitor_id)
    context.setdefault("now_ms", now)
    active = None  # the request's features: the same for every slot of one model
    results, logged = [], []
    for slot in request["slots"]:
        site_slot = origin.site.slots[slot]
        if model is None or slot not in model["slots"]:
            results.append(
                {
                    "slot": slot,
                    "variant": site_slot.default,
                    "html": site_slot.variants[site_slot.default],
                    "propensity": 1.0,
                    "fallback": "slot not in the current model",
                }
            )
            continue
        if active is None:
            active = features(context, model["features"])
        decision = decision_fields(model, context, slot, visitor_id, _decision_id(), active=active)
        decision["token"] = sign(origin.secret, decision, now)
        decision["html"] = site_slot.variants[decision["variant"]]
        results.append(decision)
        logged.append(
            (
                DECISION,
                {
                    "decision_id": decision["decision_id"],
                    "slot": slot,
                    "variant": decision["variant"],
                    "propensity": decision["propensity"],
                    "model_version": decision["model_version"],
                    "visitor_id": visitor_id,
                    "context": context,
                    "ts_ms": now,
                    "holdout": decision["holdout"],
                },
            )
        )
    if logged:
        origin.writer.write_soon(logged)
        origin.metrics.decided(len(logged))
    return results


class DecideEndpoint:
    """`POST /v1/decide` (decisions for later pages, the session's context merged in server-side)
    as a bare ASGI app.

    Why bare: this is the origin's hot path, and a Starlette `Request` and `JSONResponse` (the
    headers parsed into a multidict, the body streamed through an async generator, a response
    object rendered and sent through two exception-handling wrappers) cost a large share of the
    CPU of a decision. The checks and answers are those of the other handlers (`_read_json`,
    `_rejection`, `_outage`); `origin.app` also calls it ahead of the router.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin: Origin = scope["app"].state.origin
        started = time.perf_counter()
        try:
            body = await _read_json(scope, receive, origin)
            request = decide_request(body, origin.slot_variants, origin.limits)
            decisions = await origin.run_sessions(decide_slots, origin, request)
        except ClientDisconnect:
            return  # nobody to answer
        except RequestError as exc:
            await _send_json(send, exc.status, _rejection(origin, exc))
            return
        except StorageError as exc:
            await _send_json(send, 503, _outage(exc))
            return
        origin.metrics.decide_latency.observe(time.perf_counter() - started)
        await _send_json(send, 200, {"decisions": decisions})


post_decide = DecideEndpoint()


async def _send_json(send: Send, status: int, content: Any) -> None:
    """Answer with `content` as JSON: the messages a `JSONResponse` sends, without the object."""
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def get_model(request: Request) -> Response:
    """The current model.json (or only `?slot=` slots), with its sha256 as a strong ETag."""
    origin = _origin(request)
    slots = tuple(
        s for value in request.query_params.getlist("slot") for s in value.split(",") if s
    )
    try:
        served = origin.holder.view(slots)
    except KeyError as exc:
        return JSONResponse({"error": f"slot: unknown slot {exc.args[0]!r}"}, status_code=404)
    except LookupError:
        return JSONResponse({"error": "no model published yet"}, status_code=503)
    headers = {"ETag": served.etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), served.etag):
        return Response(status_code=304, headers=headers)
    return Response(served.body, media_type="application/json", headers=headers)


async def healthz(request: Request) -> Response:
    origin = _origin(request)
    try:
        await to_thread.run_sync(origin.storage.ping)
    except StorageError as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
    return JSONResponse(
        {"ok": True, "model_version": origin.holder.version, "storage": origin.backend}
    )


async def metrics(request: Request) -> Response:
    text = await to_thread.run_sync(_origin(request).metrics.registry.render)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


routes = [
    # POST /v1/decide reaches post_decide ahead of the router (app.DecideFirst); the route stays
    # for other methods (405) and for an app mounted under a root path.
    Route("/v1/decide", post_decide, methods=["POST"]),
    Route("/v1/decisions", post_decisions, methods=["POST"]),
    Route("/v1/decisions/client", post_client_decisions, methods=["POST"]),
    Route("/v1/events", post_events, methods=["POST"]),
    Route("/v1/model", get_model, methods=["GET", "HEAD"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
