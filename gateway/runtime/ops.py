"""Operations endpoint: /metrics for Prometheus, /healthz and /readyz for load balancers.

A deliberately small HTTP/1.1 server on asyncio streams (GET only, one response per
connection), so the call path's process needs no web framework.

- /healthz (liveness): 200 whenever the event loop runs this handler; it asks no
  back-end, so an outage of Redis or PostgreSQL never gets a live process restarted.
- /readyz (readiness): 200 when the gateway can answer calls now, else 503 with the
  failing checks, one per line. A check may also report ``Degraded``: still 200, the
  note listed under "ready (degraded)" (PostgreSQL away, settlements spooled in Redis;
  see ``gateway.runtime.readiness``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

from gateway.config import MetricsConfig

log = logging.getLogger(__name__)


class Degraded(str):
    """What a check returns when the gateway still answers calls, with a caveat."""

    __slots__ = ()


Check = Callable[[], Awaitable[str | None]]  # None when fine, else what is wrong
CHECK_TIMEOUT_S = 2.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def metrics_payload() -> bytes:
    """The exposition text; across worker processes when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        ProcessCollector(registry=registry)  # the supervisor's own process_* metrics
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class OpsServer:
    """Serves the three endpoints; ``checks`` decide readiness."""

    name = "ops"

    def __init__(self, config: MetricsConfig, checks: dict[str, Check]) -> None:
        self.config = config
        self.checks = checks
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.config.bind, self.config.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("ops.listening", extra={"bind": self.config.bind, "port": self.port})

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def readiness(self) -> list[str]:
        """The failing checks, as 'name: reason' lines (empty when ready)."""
        return [line for line in await self.report() if not isinstance(line, Degraded)]

    async def report(self) -> list[str]:
        """Every check with something to say, as 'name: reason' lines; ``Degraded``
        lines do not make the gateway unready."""

        async def run(name: str, check: Check) -> str | None:
            try:
                problem = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                problem = f"no answer within {CHECK_TIMEOUT_S}s"
            except Exception as exc:  # a check must report, never crash the endpoint
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return None
            line = f"{name}: {problem}"
            return Degraded(line) if isinstance(problem, Degraded) else line

        results = await asyncio.gather(*(run(n, c) for n, c in self.checks.items()))
        return [r for r in results if r is not None]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            status, ctype, body = await self._respond(line)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, line: bytes) -> tuple[int, str, bytes]:
        parts = line.decode("latin-1").split()
        if len(parts) < 2:
            return 405, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if target == "/metrics":
            return 200, CONTENT_TYPE_LATEST, metrics_payload()
        if target == "/healthz":
            return 200, "text/plain", b"alive\n"
        if target == "/readyz":
            lines = await self.report()
            body = "".join(f"{line}\n" for line in lines).encode()
            if any(not isinstance(line, Degraded) for line in lines):
                return 503, "text/plain", body
            return 200, "text/plain", (b"ready (degraded)\n" + body) if lines else b"ready\n"
        return 404, "text/plain", b"not found\n"


def notify_systemd(state: str) -> None:
    """Tell systemd (Type=notify) about READY=1 / STOPPING=1, when run under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(state.encode())


def monotonic_age(entry_id: bytes | str, now_ms: float | None = None) -> float:
    """Seconds since a Redis stream entry id (``<ms>-<seq>``) was created."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    created_ms = int(text.split("-", 1)[0])
    current = time.time() * 1000 if now_ms is None else now_ms
    return max(0.0, (current - created_ms) / 1000)
