"""The Lua scripts, loaded once, and the pipeline that carries their calls.

Each ``.lua`` file under ``lua/`` is one script with its KEYS/ARGV contract at the
top; ``lib.lua`` (pricing shared by all) is prepended to each. Calls go through
``Pipeliner``: one awaited EVALSHA at a time costs the client ~100 µs, while calls
that arrive while a pipeline is in flight, sent together as the next one, cost
~15 µs each. Every balance script is idempotent by session, so a batch hit by
NOSCRIPT (a restarted or flushed Redis) is simply loaded and sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from gateway import metrics
from gateway.errors import BackendUnavailable
from gateway.redisconn import translate_errors

SCRIPT_NAMES = (
    "reserve",
    "start",
    "extend",
    "settle",
    "release",
    "load_account",
    "sync_account",
    "apply_move",
    "charge",
)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def load_scripts() -> dict[str, Script]:
    """Read every script from the package, with lib.lua prepended."""
    folder = resources.files("gateway.balance") / "lua"
    lib = (folder / "lib.lua").read_text(encoding="utf-8")
    scripts: dict[str, Script] = {}
    for name in SCRIPT_NAMES:
        body = (folder / f"{name}.lua").read_text(encoding="utf-8")
        source = f"{lib}\n{body}"
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts


@dataclass(slots=True)
class _Call:
    script: Script
    keys: tuple[str, ...]
    args: tuple[str | int | float, ...]
    done: asyncio.Future[Any]


class Pipeliner:
    """Sends script calls in pipelines: whatever queued while others were in flight.

    At most ``max_in_flight`` pipelines are out at once (two: Redis runs one while
    the client encodes the next); calls that arrive meanwhile wait and go together
    in the next. A connection failure fails the calls of that pipeline with
    ``BackendUnavailable``; the scripts' idempotency makes a retry safe.
    """

    def __init__(
        self, client: aioredis.Redis, scripts: dict[str, Script], max_in_flight: int = 2
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.max_in_flight = max_in_flight
        self._queue: deque[_Call] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        self.pipelines_sent = 0
        self.calls_sent = 0

    async def call(
        self, name: str, keys: tuple[str, ...], args: tuple[str | int | float, ...]
    ) -> Any:
        """Run script ``name`` and return its reply (or raise what it raised)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(self.scripts[name], keys, args, done))
        if len(self._senders) < self.max_in_flight:
            sender = asyncio.create_task(self._send_all())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await done

    async def load(self) -> None:
        """SCRIPT LOAD every script (at start-up, and after a NOSCRIPT)."""
        with translate_errors():
            for script in self.scripts.values():
                await self.client.script_load(script.source)

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                await self._send(batch)
        finally:
            # Leave the set before the callers this sender woke can run: a done
            # callback would come after them, and a call made in between would find
            # the set full and no sender left to take it.
            task = asyncio.current_task()
            if task is not None:
                self._senders.discard(task)

    async def _send(self, batch: list[_Call]) -> None:
        for attempt in range(2):
            try:
                replies = await self._execute(batch)
            except BackendUnavailable as exc:
                for call in batch:
                    if not call.done.done():
                        call.done.set_exception(exc)
                return
            missing = [
                c
                for c, r in zip(batch, replies, strict=True)
                if isinstance(r, redis.exceptions.NoScriptError)
            ]
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
                    continue
                if call.done.done():
                    continue
                if isinstance(reply, Exception):
                    call.done.set_exception(reply)
                else:
                    call.done.set_result(reply)
            if not missing or attempt == 1:
                return
            await self._reload_or_fail(missing)
            batch = missing

    async def _reload_or_fail(self, calls: list[_Call]) -> None:
        try:
            await self.load()
        except BackendUnavailable as exc:
            for call in calls:
                if not call.done.done():
                    call.done.set_exception(exc)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        self.pipelines_sent += 1
        self.calls_sent += len(batch)
        started = time.perf_counter()
        with translate_errors():
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        metrics.BACKEND_SECONDS.labels("redis").observe(time.perf_counter() - started)
        return replies
