"""`python -m origin.demo --model build/model/model.json` (what `make demo` runs).

Starts the origin (SQLite in `build/demo/`) and the edge worker in front of it (`wrangler dev`,
workerd from npm, with `wrangler.toml`), prints the URL to open, and stops both on Ctrl-C. The
token secret is `FP_TOKEN_SECRET` if set, else a random one for this run, handed to both
processes (to wrangler through a 0600 env file) and never printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wait_healthy(process: subprocess.Popen, url: str, timeout_s: float) -> bool:
    """Poll `url`/healthz until it answers 200 (True), or the process exits or time runs out.

    Standard library only: the demo is part of the installed package, httpx is a test extra.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass  # not listening yet, or not healthy yet (URLError and HTTPError are OSErrors)
        time.sleep(0.2)
    return False


def _stop(process: subprocess.Popen, name: str) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print(f"demo: {name} did not stop; killing pid {process.pid}", file=sys.stderr)
        process.kill()
        process.wait()


def _start_origin(args: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "origin",
        "serve",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--db",
        args.db,
        "--log-level",
        "warning",
    ]
    if args.model:
        command += ["--model", args.model]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://{args.host}:{args.port}"
    if _wait_healthy(process, url, timeout_s=60):
        return process, url
    _stop(process, "origin")
    raise SystemExit(f"demo: the origin did not start (exit {process.poll()})")


def _start_edge(args: argparse.Namespace, origin_url: str, env: dict[str, str]):
    """`wrangler dev` serving the edge worker, or (None, reason) when it cannot run here.

    The token secret reaches wrangler through an env file readable only by this user (wrangler
    prints `--var` values in its bindings table only as "(hidden)", but a file keeps it off the
    command line too). Wrangler's own state goes under `build/demo/`.
    """
    wrangler = ROOT / "node_modules" / ".bin" / "wrangler"
    if not wrangler.exists():
        return None, "wrangler is not installed (npm ci installs it)"
    state = Path(args.db).parent / "wrangler"
    state.mkdir(parents=True, exist_ok=True)
    secrets_file = state / "secrets.env"
    secrets_file.touch(mode=0o600)
    secrets_file.chmod(0o600)
    secrets_file.write_text(f"FP_TOKEN_SECRET={env['FP_TOKEN_SECRET']}\n")
    command = [
        str(wrangler),
        "dev",
        "--ip",
        args.host,
        "--port",
        str(args.edge_port),
        "--env-file",
        str(secrets_file),
        "--var",
        f"FP_ORIGIN:{origin_url}",
        "--var",
        f"FP_MODEL_REFRESH_S:{args.refresh_s}",
        "--persist-to",
        str(state / "state"),
        "--show-interactive-dev-session=false",
        "--log-level",
        "info" if args.verbose else "error",
    ]
    edge_env = {**env, "WRANGLER_SEND_METRICS": "false", "WRANGLER_LOG_PATH": str(state / "logs")}
    edge_env.pop("FP_TOKEN_SECRET")  # from the env file only
    try:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=edge_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        return None, f"wrangler dev could not start ({exc})"

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if args.verbose:
                print(f"[edge] {line.rstrip()}", flush=True)

    threading.Thread(target=pump, daemon=True).start()
    url = f"http://{args.host}:{args.edge_port}"
    if _wait_healthy(process, url, timeout_s=120):
        return (process, url), ""
    _stop(process, "edge worker")
    return None, f"wrangler dev did not start (exit {process.poll()}; --verbose shows its output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m origin.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", help="model.json to start from (default: a cold-start model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="origin port")
    parser.add_argument("--edge-port", type=int, default=8788)
    parser.add_argument("--db", default=str(ROOT / "build" / "demo" / "origin.db"))
    parser.add_argument("--refresh-s", default="5", help="edge model refresh interval")
    parser.add_argument("--verbose", action="store_true", help="show the edge worker's output")
    args = parser.parse_args(argv)
    if args.model and not Path(args.model).exists():
        print(f"demo: {args.model} does not exist (make model builds it)", file=sys.stderr)
        return 2

    env = {
        **os.environ,
        "FP_TOKEN_SECRET": os.environ.get("FP_TOKEN_SECRET") or secrets.token_urlsafe(32),
    }
    origin, origin_url = _start_origin(args, env)
    edge, reason = _start_edge(args, origin_url, env)
    print()
    if edge is not None:
        print(f"firstpaint demo: open {edge[1]}/  (the edge worker, in front of {origin_url})")
    else:
        print(f"firstpaint demo: {reason}; open {origin_url}/ (the snippet decides in the browser)")
    print(f"  model: {origin_url}/v1/model   metrics: {origin_url}/metrics   Ctrl-C stops the demo")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            if origin.poll() is not None:
                print("demo: the origin exited", file=sys.stderr)
                break
            if edge is not None and edge[0].poll() is not None:
                print("demo: the edge worker exited", file=sys.stderr)
                break
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\ndemo: stopping")
        if edge is not None:
            _stop(edge[0], "edge worker")
        _stop(origin, "origin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
