"""Operating the served model: publish, roll back, promote — behind a bearer token — and the CLI.

HTTP (every route needs `Authorization: Bearer <FP_ADMIN_TOKEN>`; no header → 401, a wrong
token → 403, no FP_ADMIN_TOKEN configured → 403 for everyone):
- `GET  /admin/models`            the published versions, newest first, and the held candidate;
- `POST /admin/models`            publish a `model.json` (format, sha256 and site checked first);
- `POST /admin/rollback`          `{"to": VERSION}` (default: the version before the current one);
- `POST /admin/promote`           publish the candidate the promotion gate held back.

One command, no running origin needed (storage from `--db`/`--redis` or FP_DB/FP_REDIS_URL;
running origins pick the change up within `model_poll_s`, and their learner continues from it):

    python -m origin rollback --to 20261125T210000Z-3f2a9c1d
    python -m origin models
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from model_export.policy import ModelError, load_model
from origin.promotion import PromotionGate
from origin.services import ConfigError, Origin
from origin.storage import Storage, StorageError, StoredModel, open_storage

MAX_MODEL_BYTES = 8 * 1024 * 1024


class AdminError(ValueError):
    """An admin action that cannot be done; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def rollback(storage: Storage, to: str | None, now_ms: int) -> StoredModel:
    """Make version `to` (default: the one before the current) current again; re-checked first."""
    history = storage.model_history(100)
    if not history:
        raise AdminError("no model has been published yet", 409)
    if to is None:
        target = next((m for m in history if m.sha256 != history[0].sha256), None)
        if target is None:
            raise AdminError("there is no earlier version to roll back to", 409)
    else:
        target = next((m for m in history if m.version == to), None)
        if target is None:
            known = ", ".join(m.version for m in history[:10])
            raise AdminError(f"unknown model version {to!r}; recent versions: {known}", 404)
    try:
        model = load_model(target.body)
    except ModelError as exc:
        raise AdminError(
            f"stored model {target.version} fails its checks, not served: {exc}", 409
        ) from exc
    if model["sha256"] != target.sha256:
        raise AdminError(f"stored model {target.version} does not match its recorded sha256", 409)
    republished = StoredModel(target.version, target.sha256, target.body, now_ms)
    storage.publish_model(republished)
    return republished


def _authorized(request: Request, origin: Origin) -> Response | None:
    """None when the bearer token is right; else the 401/403 to answer."""
    expected = origin.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not given.strip():
        return JSONResponse(
            {"error": "admin API: send Authorization: Bearer <FP_ADMIN_TOKEN>"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="firstpaint-admin"'},
        )
    if not expected:
        return JSONResponse(
            {"error": "admin API disabled: FP_ADMIN_TOKEN is not set"}, status_code=403
        )
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return JSONResponse({"error": "admin API: wrong bearer token"}, status_code=403)
    return None


def _summary(model: StoredModel) -> dict[str, Any]:
    return {"version": model.version, "sha256": model.sha256, "published_ms": model.published_ms}


def routes(origin: Origin, gate: PromotionGate | None = None) -> list[Route]:
    """The `/admin` routes of one origin process (`gate`: its promotion gate, if any)."""

    async def guarded(request: Request, action) -> Response:
        denied = _authorized(request, origin)
        if denied is not None:
            return denied
        try:
            return await action(request)
        except AdminError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except StorageError as exc:
            return JSONResponse({"error": f"storage unavailable: {exc}"}, status_code=503)

    async def list_models(request: Request) -> Response:
        history = await to_thread.run_sync(origin.storage.model_history, 50)
        held = origin.learning.held if origin.learning is not None else None
        return JSONResponse(
            {
                "current": origin.holder.version,
                "models": [_summary(m) for m in history],
                "held": None if held is None else held["model_version"],
                "gate": None if gate is None or gate.last is None else gate.last.to_dict(),
            }
        )

    async def publish(request: Request) -> Response:
        from origin.app import check_against_site  # app imports this module

        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_MODEL_BYTES:
                raise AdminError(f"model larger than {MAX_MODEL_BYTES} bytes", 413)
        try:
            model = load_model(bytes(body).decode("utf-8"))
            check_against_site(model, origin.site)
        except (ModelError, ConfigError, UnicodeDecodeError) as exc:
            raise AdminError(f"model rejected, the current one is kept: {exc}", 422) from exc
        await to_thread.run_sync(origin.holder.publish, model, origin.clock.now_ms())
        return JSONResponse(
            {"published": model["model_version"], "sha256": model["sha256"]}, status_code=201
        )

    async def roll_back(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise AdminError(f"body is not JSON: {exc}") from exc
        to = body.get("to") if isinstance(body, dict) else None
        if to is not None and not isinstance(to, str):
            raise AdminError("to: must be a model version string")
        model = await to_thread.run_sync(rollback, origin.storage, to, origin.clock.now_ms())
        await to_thread.run_sync(origin.holder.refresh)
        return JSONResponse({"current": model.version, "sha256": model.sha256})

    async def promote(request: Request) -> Response:
        held = origin.learning.held if origin.learning is not None else None
        if held is None:
            raise AdminError("no candidate is held back by the promotion gate", 409)
        await to_thread.run_sync(origin.holder.publish, held, origin.clock.now_ms())
        origin.learning.held = None
        return JSONResponse(
            {"published": held["model_version"], "sha256": held["sha256"]}, status_code=201
        )

    def route(path: str, action, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await guarded(request, action)

        return Route(path, endpoint, methods=[method])

    return [
        route("/admin/models", list_models, "GET"),
        route("/admin/models", publish, "POST"),
        route("/admin/rollback", roll_back, "POST"),
        route("/admin/promote", promote, "POST"),
    ]


# --- the command line -------------------------------------------------------------------------


def add_cli(commands: Any) -> None:
    """`rollback` and `models` on `python -m origin`."""
    for name, text in (
        ("rollback", "make an earlier model version current again"),
        ("models", "list published model versions"),
    ):
        command = commands.add_parser(name, help=text)
        backend = command.add_mutually_exclusive_group()
        backend.add_argument("--db", help="SQLite file (default: FP_DB)")
        backend.add_argument(
            "--redis", dest="redis_url", help="redis://… URL (default: FP_REDIS_URL)"
        )
        if name == "rollback":
            command.add_argument(
                "--to", help="the version to serve (default: the one before the current)"
            )


def run_cli(args: argparse.Namespace) -> int:
    """Run `rollback` or `models`; 0 on success, 1 when the action is refused, 2 on bad setup."""
    from origin.clock import SystemClock

    db = args.db or (None if args.redis_url else os.environ.get("FP_DB"))
    redis_url = args.redis_url or (None if args.db else os.environ.get("FP_REDIS_URL"))
    try:
        storage = open_storage(db=db, redis_url=redis_url)
    except (ValueError, StorageError) as exc:
        print(f"origin {args.command}: {exc}")
        return 2
    try:
        if args.command == "models":
            for model in storage.model_history(50):
                print(
                    f"{model.version}  sha256={model.sha256[:12]}"
                    f"  published_ms={model.published_ms}"
                )
            return 0
        model = rollback(storage, args.to, SystemClock().now_ms())
        print(f"origin rollback: now serving {model.version} (sha256 {model.sha256[:12]})")
        return 0
    except (AdminError, StorageError) as exc:
        print(f"origin {args.command}: {exc}")
        return 1
    finally:
        storage.close()
