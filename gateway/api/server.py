"""``gateway api``: the management API and portal as a container service (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.core.errors import GatewayError
from gateway.runtime.app import Runtime

log = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the container owns SIGTERM and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """Serves the API on ``api.bind``:``api.port`` until stopped."""

    name = "api"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.ctx: ManagementContext | None = None
        self.port = 0

    async def start(self) -> None:
        cfg = self.runtime.config
        ctx = ManagementContext.create(
            cfg,
            self.runtime.pool(),
            self.runtime.client(),
            self.runtime.keys,
            read_pool=self.runtime.read_db,
        )
        await ctx.start()
        self.ctx = ctx
        app = create_app(ctx)
        config = uvicorn.Config(
            app,
            host=cfg.api.bind,
            port=cfg.api.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="none",
            proxy_headers=False,
        )
        self.server = _QuietServer(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                # uvicorn logs why (port taken, bad address) and exits the task.
                with contextlib.suppress(SystemExit):
                    await self.task
                raise GatewayError(f"api: cannot listen on {cfg.api.bind}:{cfg.api.port}")
            await asyncio.sleep(0.02)
        sockets = [s for server in self.server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1] if sockets else cfg.api.port
        log.info("api.listening", extra={"bind": cfg.api.bind, "port": self.port})

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        if self.ctx is not None:
            await self.ctx.close()
        self.server = None
        self.task = None
        self.ctx = None
