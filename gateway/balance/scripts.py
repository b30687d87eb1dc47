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
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions

from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

WAIT_PAUSE_S = 5.0  # after a WAIT no replica answered, pipelines go without one this long

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
    "adopt",
    "velocity",
)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    # ``EVALSHA <sha>`` as RESP bulk strings: what every call of it starts with.
    head: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", b"$7\r\nEVALSHA\r\n$40\r\n%b\r\n" % self.sha.encode())


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


@dataclass(frozen=True, slots=True)
class Replication:
    """How many replicas must hold a pipeline's writes before its replies count
    (``redis.replica_acks``; 0: do not wait) and for how long to wait for them."""

    acks: int = 0
    timeout_ms: int = 100

    def wait_command(self) -> bytes:
        return pack_command("WAIT", self.acks, self.timeout_ms)


@dataclass(slots=True)
class _Call:
    script: Script
    keys: tuple[str, ...]
    args: tuple[str | int | float, ...]
    done: asyncio.Future[Any]


def _bulk(value: str | int | float) -> bytes:
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bool):
        raise TypeError("a script argument is str, int or float, not bool")
    else:
        data = repr(value).encode()  # as redis-py encodes int and float
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_command(*words: str | int) -> bytes:
    """A plain command in RESP."""
    return b"*%d\r\n%b" % (len(words), b"".join(map(_bulk, words)))


def pack_call(head: bytes, keys: tuple[str, ...], args: tuple[str | int | float, ...]) -> bytes:
    """One EVALSHA command in RESP, ``head`` being ``Script.head``: what redis-py's
    pipeline would send for it, without its per-command bookkeeping."""
    parts = [b"*%d\r\n" % (3 + len(keys) + len(args)), head, _bulk(len(keys))]
    parts.extend(map(_bulk, keys))
    parts.extend(map(_bulk, args))
    return b"".join(parts)


class Pipeliner:
    """Sends script calls in pipelines: whatever queued while others were in flight.

    At most ``max_in_flight`` pipelines are out at once; calls that arrive meanwhile
    wait and go together in the next. One by default: with whole calls through two
    workers on two vCPUs, a second pipeline in flight halved the batches, and the extra
    socket writes (each also runs loopback TCP and wakes Redis) cost more than the wait
    they save (one run each: saturation near 1,550 calls/s with two, 2,000 with one).
    A connection failure fails the calls of that pipeline with ``BackendUnavailable``;
    the scripts' idempotency makes a retry safe.

    With ``replication.acks``, each pipeline ends with a WAIT: its replies are read
    only once that many replicas hold its writes, so a replica that takes over has
    every call the gateway answered. A wait that times out (the primary has lost its
    replica) is counted, and the next ``WAIT_PAUSE_S`` of pipelines go without one
    (counted too): a shard without a replica keeps its speed, unprotected, visibly.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        scripts: dict[str, Script],
        max_in_flight: int = 1,
        replication: Replication | None = None,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.max_in_flight = max_in_flight
        self.replication = replication or Replication()
        self._wait = self.replication.wait_command() if self.replication.acks > 0 else b""
        self._queue: deque[_Call] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        self.pipelines_sent = 0
        self.calls_sent = 0
        self._timeout_s = self._batch_timeout()
        if self._wait and self._timeout_s is not None:
            # the WAIT may take its whole timeout before it answers: not a dead server
            self._timeout_s += self.replication.timeout_ms / 1000
        self._connections: list[Any] = []  # idle, at most max_in_flight
        self._closed = False
        self._warn_after = 0.0
        self._wait_paused_until = 0.0

    def _batch_timeout(self) -> float | None:
        """The client's socket timeout: one covers each batch."""
        timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout else None

    async def call(
        self, name: str, keys: tuple[str, ...], args: tuple[str | int | float, ...]
    ) -> Any:
        """Run script ``name`` and return its reply (or raise what it raised)."""
        if self._closed:
            raise BackendUnavailable("redis", "the balance service is stopping")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(self.scripts[name], keys, args, done))
        if len(self._senders) < self.max_in_flight:
            sender = asyncio.create_task(self._send_all())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await done

    async def load(self) -> None:
        """SCRIPT LOAD every script (at start-up, and after a NOSCRIPT)."""
        with redis_errors():
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
        """Send the batch as one pipeline and read every reply; a script's error reply
        is returned in its place (as ``raise_on_error=False``).

        Done on a redis-py connection of the pipeliner's own rather than through its
        ``Pipeline``: no per-command bookkeeping, no pool check (a socket read) per
        batch, no task and timeout per write and per reply. One timeout, the client's
        socket timeout, covers the batch; a batch that fails or times out leaves its
        connection closed, so no reply of it can be read by the next.
        """
        wait = self._wait
        if wait and time.monotonic() < self._wait_paused_until:
            wait = b""
            metrics.REDIS_UNREPLICATED.inc()
        packed = b"".join([pack_call(c.script.head, c.keys, c.args) for c in batch]) + wait
        self.pipelines_sent += 1
        self.calls_sent += len(batch)
        started = time.perf_counter()
        replies: list[Any] = []
        with redis_errors():
            connection = await self._connection()
            try:
                async with asyncio.timeout(self._timeout_s):
                    if not connection.is_connected:
                        # connect() and not the send's own: under Sentinel it asks the
                        # Sentinels where the primary is now
                        await connection.connect()
                    await connection.send_packed_command(packed, check_health=False)
                    read = connection.read_response
                    for _ in batch:
                        try:
                            replies.append(await read())
                        except redis.exceptions.ResponseError as exc:
                            replies.append(exc)  # read whole: the stream stays in step
                    if wait:
                        self._replicated(await read())
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
            finally:
                self._connections.append(connection)
        metrics.child(metrics.BACKEND_SECONDS, "redis").observe(time.perf_counter() - started)
        return replies

    def _replicated(self, reply: Any) -> None:
        if isinstance(reply, int) and reply >= self.replication.acks:
            return
        metrics.REDIS_UNREPLICATED.inc()
        now = time.monotonic()
        # No replica answered in time: most likely the primary has none (it lost it, or
        # it is a replica just promoted). Waiting on every pipeline would add the
        # timeout to each call; send without WAIT for a while, then look again.
        self._wait_paused_until = now + WAIT_PAUSE_S
        if now >= self._warn_after:  # once a minute, not once per pipeline
            self._warn_after = now + 60
            log.warning(
                "redis.unreplicated",
                extra={"wanted": self.replication.acks, "replicas": str(reply)},
            )

    async def close(self) -> None:
        """Stop taking calls, let the batches in flight finish, then give the
        pipeliner's connections back to the client's pool (at stop: a client shared by
        many pipeliners, as in tests, would otherwise run out; and a batch sent after
        the client closed would open a connection nobody closes)."""
        self._closed = True
        if self._senders:
            await asyncio.gather(*list(self._senders), return_exceptions=True)
        timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        while self._connections:
            connection = self._connections.pop()
            connection.socket_timeout = timeout
            await self.client.connection_pool.release(connection)

    async def _connection(self) -> Any:
        """An idle connection of this pipeliner's, or a new one taken from the pool for
        good (closing the client closes it too). Its socket timeout is off: each batch
        has one timeout (``_execute``)."""
        if self._connections:
            return self._connections.pop()
        connection: Any = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        connection.socket_timeout = None
        return connection


class ScriptRunner(Protocol):
    """What the balance verbs need of a pipeliner: ``Pipeliner`` on one server,
    ``balance.cluster_pipeliner.ClusterPipeliner`` on a cluster."""

    @property
    def client(self) -> RedisClient: ...

    @property
    def pipelines_sent(self) -> int: ...

    @property
    def calls_sent(self) -> int: ...

    async def call(
        self, name: str, keys: tuple[str, ...], args: tuple[str | int | float, ...]
    ) -> Any: ...

    async def load(self) -> None: ...

    async def close(self) -> None: ...
