"""Group commit: concurrent requests' batches share one storage transaction.

A request that must answer 202 only after a durable commit awaits `write()`; batches that
arrive while a commit is in flight are merged into the next one, so under load the fsync cost
is paid once per group instead of once per request. A failed commit fails every batch in
it (none of them was written: one transaction).

Batches queued without waiting (`write_soon`: the decisions made here) linger up to `linger_s`
before their commit when nobody waits on the queue, so that a steady stream of decisions costs
one commit (one fsync, one worker-thread hop) per 25 ms rather than per request. A waiting
`write()` cuts the linger short. Why 25 ms: a commit's fixed cost (the hop, BEGIN, COMMIT, the
fsync) is then shared by ~40 decisions at 1,600 a second instead of ~16 at 10 ms (the writer
thread's CPU per decision ~10 µs instead of ~14.5 µs; longer groups save little more), and a
crash still loses only those 25 ms of decisions, whose commit nobody awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from anyio import to_thread

from origin.storage import Storage

Entries = list[tuple[str, dict[str, Any]]]
log = logging.getLogger("origin.logwriter")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread (Redis sessions run there)
        return None


class LogWriter:
    """Writes log entries to storage in merged transactions, from one background task."""

    def __init__(self, storage: Storage, max_group: int = 20_000, linger_s: float = 0.025) -> None:
        self.storage = storage
        self.max_group = max_group
        self.linger_s = linger_s
        self._queue: deque[tuple[Entries, asyncio.Future[None] | None]] = deque()
        self.lost_soon = 0  # entries queued without waiting whose commit failed
        self._waiting = 0  # queued batches whose writer awaits the commit
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None  # set when a waited-on batch is queued
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def write(self, entries: Entries) -> None:
        """Return once `entries` are committed; raise the storage's error if they are not."""
        if self._task is None:
            await to_thread.run_sync(self.storage.append, entries)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(entries, future)
        await future

    def write_soon(self, entries: Entries) -> None:
        """Queue `entries` without waiting (decisions made here: losing them loses no reward).

        Safe to call from any thread: the queue is only touched on the writer's event loop.
        """
        if self._task is None or self._loop is None:
            self.storage.append(entries)
        elif _running_loop() is self._loop:
            self._enqueue(entries, None)  # on the writer's loop: no self-pipe wake-up needed
        else:
            self._loop.call_soon_threadsafe(self._enqueue, entries, None)

    def _enqueue(self, entries: Entries, future: asyncio.Future[None] | None) -> None:
        self._queue.append((entries, future))
        assert self._wake is not None and self._urgent is not None
        if future is not None:
            self._waiting += 1
            self._urgent.set()
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if self.linger_s and not self._waiting and not self._closing:
                    self._urgent.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), self.linger_s)
                group, size = [], 0
                while self._queue and size < self.max_group:
                    item = self._queue.popleft()
                    group.append(item)
                    size += len(item[0])
                    if item[1] is not None:
                        self._waiting -= 1
                combined = [entry for entries, _ in group for entry in entries]
                try:
                    await to_thread.run_sync(self.storage.append, combined)
                except Exception as exc:
                    for entries, future in group:
                        if future is None:
                            self.lost_soon += len(entries)
                        elif not future.done():
                            future.set_exception(exc)
                    if any(future is None for _, future in group):
                        log.warning("decision log commit failed: %s", exc)
                else:
                    for _, future in group:
                        if future is not None and not future.done():
                            future.set_result(None)
            if self._closing:
                return

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        self._closing = True
        assert self._wake is not None and self._urgent is not None
        self._wake.set()
        self._urgent.set()  # no lingering: commit what is queued now
        await self._task
        self._task = None
