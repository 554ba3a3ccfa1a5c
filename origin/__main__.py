"""`python -m origin serve --host 127.0.0.1 --port 8787 --db origin.db --model model.json`.

Scaling out: many `serve --learner off --redis URL` workers and one `python -m origin learn
--redis URL` (the learner needs every decision and reward of the deployment).

Operating the model: `python -m origin rollback --to VERSION` and `python -m origin models`
(`origin.admin`).

Configuration: flags, else the `FP_*` environment variables (see `origin.services.Settings`).
The token secret is read only from `FP_TOKEN_SECRET` and never printed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import uvicorn

from origin import admin
from origin.app import build_origin, create_app
from origin.services import LEARNER_MODES, ConfigError, Settings
from origin.storage import StorageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m origin")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the origin service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    backend = serve.add_mutually_exclusive_group()
    backend.add_argument("--db", help="SQLite file (default: FP_DB)")
    backend.add_argument("--redis", dest="redis_url", help="redis://… URL (default: FP_REDIS_URL)")
    serve.add_argument("--model", dest="model_path", help="model.json to start from")
    serve.add_argument("--site", dest="site_path", help="site.toml (default: origin/site.toml)")
    serve.add_argument(
        "--learner",
        choices=[m for m in LEARNER_MODES if m != "manual"],
        help="thread (default): learn in this process; off: another process learns",
    )
    serve.add_argument("--log-level", default="info")
    learn = commands.add_parser(
        "learn", help="run only the online learner (for origins started with --learner off)"
    )
    learn_backend = learn.add_mutually_exclusive_group()
    learn_backend.add_argument("--db", help="SQLite file (default: FP_DB)")
    learn_backend.add_argument(
        "--redis", dest="redis_url", help="redis://… URL (default: FP_REDIS_URL)"
    )
    learn.add_argument("--model", dest="model_path", help="model.json to start from")
    learn.add_argument("--site", dest="site_path", help="site.toml (default: origin/site.toml)")
    learn.add_argument("--log-level", default="info")
    admin.add_cli(commands)
    args = parser.parse_args(argv)
    if args.command == "learn":
        return run_learner(args)
    if args.command != "serve":
        return admin.run_cli(args)

    try:
        app = create_app(_settings(args, learner=args.learner))
    except (ConfigError, StorageError) as exc:
        print(f"origin: {exc}", file=sys.stderr)
        return 2
    origin = app.state.origin
    print(
        f"origin: serving model {origin.holder.version} from {origin.backend} "
        f"on http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _settings(args: argparse.Namespace, learner: str | None = None) -> Settings:
    """Logging, and Settings from the flags `serve` and `learn` share (flags win over FP_*)."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    return Settings.from_env(
        db=args.db,
        redis_url=args.redis_url,
        model_path=args.model_path,
        site_path=args.site_path,
        learner=learner,  # None: the default (from_env ignores flags left unset)
    )


def run_learner(args: argparse.Namespace) -> int:
    """The learner alone: one per deployment, however many serving workers run `--learner off`
    (one consumer group, so one joiner sees every decision and every reward)."""
    try:
        origin = build_origin(_settings(args))
    except (ConfigError, StorageError) as exc:
        print(f"origin: {exc}", file=sys.stderr)
        return 2
    loop = origin.learning
    signal.signal(signal.SIGTERM, lambda *_: loop.stop_soon())
    print(
        f"origin: learning from {origin.backend}, starting at model {origin.holder.version}",
        flush=True,
    )
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
        origin.storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
