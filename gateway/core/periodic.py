"""A background job run every few seconds, started and stopped with its service."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``step()`` every ``interval_s``; a backend outage is logged, not fatal."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def step(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except BackendUnavailable as exc:
                log.warning(f"{self.name}.backend_unavailable", extra={"error": str(exc)})
            await asyncio.sleep(self.interval_s)
