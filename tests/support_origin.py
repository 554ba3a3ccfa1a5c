"""Start the real origin (and a real redis-server) for tests: subprocesses on 127.0.0.1.

    from tests.support_origin import running_origin, running_redis, redis_server, TEST_SECRET

    with running_origin(tmp_path, model="build/model/model.json") as origin:
        httpx.post(origin.url + "/v1/events", json=...)
        origin.kill()            # SIGKILL, for durability tests
    with running_origin(tmp_path, redis_url=url, env={"FP_PUBLISH_INTERVAL_S": "1"}) as o: ...

`redis_server` is a pytest fixture (session scope) yielding a `RedisServer` (`.url`, `.port`,
`.process`, `.client()`), started with `appendonly yes` / `appendfsync always`; `running_redis(dir)`
is the same as a context manager. `start_origin(...)` returns a `RunningOrigin` (`.url`, `.port`,
`.pid`, `.db`, `.redis_url`, `.kill()` = SIGKILL, `.stop()` = SIGTERM, `.log_text()`) that the
caller stops. `start_learner(tmp_path, db=… | redis_url=…)` runs `python -m origin learn` for
origins started with `args=["--learner", "off"]`; `stop_process(p)` stops it. Every server binds
127.0.0.1 on a free port, and processes are stopped by PID only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

TEST_SECRET = "test-secret-not-for-production"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class StartError(RuntimeError):
    """A server did not become ready; the message carries the end of its log."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@dataclass
class RunningOrigin:
    """An origin subprocess: `url`, `port`, its storage (`db` or `redis_url`) and `log`."""

    url: str
    port: int
    process: subprocess.Popen
    log: Path
    db: Path | None = None
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the server (no shutdown hooks run) and reap it."""
        _stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)

    def log_text(self) -> str:
        return _tail(self.log, 200)


def start_origin(
    tmp_path: Path,
    *,
    db: Path | str | None = None,
    redis_url: str | None = None,
    model: Path | str | None = None,
    site: Path | str | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    port: int | None = None,
    ready_timeout_s: float = 60.0,
) -> RunningOrigin:
    """Start `python -m origin serve` and wait for /healthz; SQLite in `tmp_path` by default."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if redis_url is None and db is None:
        db = tmp_path / "origin.db"
    command = [sys.executable, "-m", "origin", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--redis", redis_url] if redis_url else ["--db", str(db)]
    if model:
        command += ["--model", str(model)]
    if site:
        command += ["--site", str(site)]
    command += args or []
    full_env = {
        **os.environ,
        "FP_TOKEN_SECRET": TEST_SECRET,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    for name in ("FP_DB", "FP_REDIS_URL"):
        full_env.pop(name, None)
    log = tmp_path / f"origin-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    running = RunningOrigin(
        url=f"http://127.0.0.1:{port}",
        port=port,
        process=process,
        log=log,
        db=Path(db) if db else None,
        redis_url=redis_url,
        env=env or {},
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"origin exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(running.url + "/healthz", timeout=2).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    running.kill()
    raise StartError(f"origin not ready after {ready_timeout_s}s:\n{_tail(log)}")


def start_learner(
    tmp_path: Path,
    *,
    db: Path | str | None = None,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `python -m origin learn` (for origins run with `--learner off`); stop it by PID."""
    command = [sys.executable, "-m", "origin", "learn"]
    command += ["--redis", redis_url] if redis_url else ["--db", str(db)]
    full_env = {
        **os.environ,
        "FP_TOKEN_SECRET": TEST_SECRET,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log = Path(tmp_path) / "learner.log"
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it does not exit; by PID only."""
    _stop(process)


@contextlib.contextmanager
def running_origin(tmp_path: Path, **options) -> Iterator[RunningOrigin]:
    """`start_origin(...)`, stopped (by PID) on exit."""
    origin = start_origin(tmp_path, **options)
    try:
        yield origin
    finally:
        origin.stop()


@dataclass
class RedisServer:
    """A redis-server subprocess with append-only fsync-always persistence in `directory`."""

    url: str
    port: int
    process: subprocess.Popen
    directory: Path

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


def start_redis(directory: Path, port: int | None = None) -> RedisServer:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [
        REDIS_SERVER,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--logfile",
        str(directory / "redis.log"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, process, directory)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"redis-server exited:\n{_tail(directory / 'redis.log')}")
        try:
            if server.client().ping():
                return server
        except Exception:
            time.sleep(0.05)
    _stop(process, signal.SIGKILL)
    raise StartError(f"redis-server not ready:\n{_tail(directory / 'redis.log')}")


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = start_redis(directory)
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 for the whole test session."""
    if not Path(REDIS_SERVER).exists():
        pytest.fail("redis-server is not installed: `make system-deps` installs it")
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
