"""``gateway run --workers N``: N processes share the UDP ports (SO_REUSEPORT).

The supervisor (the parent) owns what must exist once: the embedded servers when
no URLs are configured, the schema migration, the demo seed, and the /metrics,
/healthz, /readyz endpoint (metrics summed over the workers through
prometheus_client's multiprocess mode). Each worker runs the whole call path. A
worker that dies is started again; SIGTERM and SIGHUP are passed to every worker,
and the supervisor exits once they have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.config import Config
from gateway.runtime import readiness
from gateway.runtime.app import (
    WORKER_COUNT_ENV,
    Container,
    DemoSeed,
    Runtime,
    Service,
    backend_services,
)
from gateway.runtime.ops import Check, OpsServer, notify_systemd

log = logging.getLogger(__name__)

READY_FD_ENV = "GATEWAY_READY_FD"
SUPERVISOR_PID_ENV = "GATEWAY_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
START_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


def end_with_supervisor() -> None:
    """In a worker: have the kernel send SIGTERM when the supervisor dies (SIGKILL, a
    crash), so the worker drains and exits rather than go on answering as a gateway
    its operator believes dead. Linux only; elsewhere a no-op."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("worker.no_parent_death_signal", extra={"errno": ctypes.get_errno()})
        return
    if os.getppid() != int(supervisor):  # it died before the prctl: too late to be told
        os.kill(os.getpid(), signal.SIGTERM)


def signal_ready() -> None:
    """The process is serving: tell the supervisor (in a worker; no-op elsewhere), and
    move what start-up built out of the cyclic garbage collector's way.

    The rate index and the directory can be millions of long-lived objects, and every
    full collection would walk them all again (with ~100k start-up objects it cost
    ~12% of an authorization's CPU in tests/bench). ``gc.freeze`` keeps them out of
    collections; refcounting still frees them when a reload replaces them.
    """
    gc.freeze()
    fd = os.environ.get(READY_FD_ENV)
    if fd:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"ready\n")
            os.close(int(fd))


class Worker:
    """One child process and the pipe it reports readiness on."""

    def __init__(self, index: int, argv: list[str], env: dict[str, str]) -> None:
        self.index = index
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = asyncio.Event()
        self.restarts = 0

    async def spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        env = {**self.env, READY_FD_ENV: str(write_fd)}
        self.ready.clear()
        # Popen returns once the child is forked; it is then watched by polling.
        self.proc = subprocess.Popen(self.argv, env=env, pass_fds=(write_fd,))  # noqa: ASYNC220
        os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )

        async def watch() -> None:
            try:
                if await reader.readline() == b"ready\n":
                    self.ready.set()
            finally:
                transport.close()

        self._watch = asyncio.create_task(watch())
        log.info("worker.started", extra={"worker": self.index, "pid": self.proc.pid})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class Supervisor:
    """Runs N workers over shared back-ends until SIGTERM."""

    def __init__(
        self,
        config: Config,
        worker_argv: Sequence[str],
        count: int,
        *,
        with_demo: bool,
        api_argv: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.worker_argv = list(worker_argv)
        # The management API runs as one more child: supervised like the workers, but
        # apart from them, so a heavy report never stalls a call.
        self.api_argv = list(api_argv)
        self.count = count
        self.with_demo = with_demo
        self.workers: list[Worker] = []
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        runtime = Runtime(self.config)
        services: list[Service] = list(backend_services(runtime))
        if self.with_demo:
            services.append(DemoSeed(runtime))
        backends = Container(services, self.config.service.drain_timeout_s)
        await backends.start()
        metrics_dir = self.config.state_path / f"metrics-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        ops: OpsServer | None = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._each(signal.SIGHUP))
        try:
            env = self._worker_env(runtime, metrics_dir)
            self.workers = [Worker(i, self.worker_argv, env) for i in range(self.count)]
            if self.api_argv:
                self.workers.append(Worker(self.count, self.api_argv, env))
            for worker in self.workers:
                await worker.spawn()
            if self.config.metrics.enabled:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                ops = OpsServer(self.config.metrics, self._checks(runtime))
                await ops.start()
            await self._wait_ready()
            log.info("gateway.ready", extra={"workers": self.count})
            notify_systemd("READY=1")
            await self._supervise()
            log.info("gateway.stopping")
            notify_systemd("STOPPING=1")
            return await self._stop_workers()
        finally:
            try:  # signal handlers stay until everything stopped (see Container)
                await self._stop_workers()
                if ops is not None:
                    await ops.stop()
                await backends.stop()
                shutil.rmtree(metrics_dir, ignore_errors=True)
            finally:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(signum)

    def _worker_env(self, runtime: Runtime, metrics_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "GATEWAY_DATABASE_URL": runtime.database_url,
                "GATEWAY_REDIS_URL": runtime.redis_url,
                "GATEWAY_DATABASE_MIGRATE_ON_START": "false",
                "GATEWAY_METRICS_ENABLED": "false",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                WORKER_COUNT_ENV: str(self.count),
                SUPERVISOR_PID_ENV: str(os.getpid()),
            }
        )
        return env

    def _checks(self, runtime: Runtime) -> dict[str, Check]:
        async def redis_ok() -> str | None:
            return await readiness.redis_problem(runtime.client(), runtime.keys)

        async def postgres_ok() -> str | None:
            return await readiness.postgres_problem(runtime.pool(), runtime.client(), runtime.keys)

        async def workers_ok() -> str | None:
            down = [w.index for w in self.workers if not (w.alive() and w.ready.is_set())]
            return f"workers not ready: {down}" if down else None

        return {"redis": redis_ok, "postgresql": postgres_ok, "workers": workers_ok}

    async def _wait_ready(self) -> None:
        waits = [asyncio.wait_for(w.ready.wait(), START_TIMEOUT_S) for w in self.workers]
        try:
            await asyncio.gather(*waits)
        except TimeoutError as exc:
            raise RuntimeError("workers did not start within the timeout") from exc

    async def _supervise(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.5)
            if self._stopping.is_set():
                return
            for worker in self.workers:
                if not worker.alive():
                    code = worker.proc.returncode if worker.proc is not None else None
                    log.error("worker.died", extra={"worker": worker.index, "code": code})
                    worker.restarts += 1
                    await asyncio.sleep(RESTART_DELAY_S)
                    await worker.spawn()

    def _each(self, signum: int) -> None:
        for worker in self.workers:
            worker.signal(signum)

    async def _stop_workers(self) -> int:
        """SIGTERM every worker, wait for the drain, kill what is left; 0 when all drained."""
        self._each(signal.SIGTERM)
        deadline = time.monotonic() + self.config.service.drain_timeout_s + 5
        worst = 0
        for worker in self.workers:
            if worker.proc is None:
                continue
            remaining = max(0.1, deadline - time.monotonic())
            try:
                code = await asyncio.to_thread(worker.proc.wait, remaining)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                code = await asyncio.to_thread(worker.proc.wait)
            worst = worst or (code or 0)
        self.workers = [w for w in self.workers if w.alive()]
        return worst


def api_argv(config_path: str | None) -> list[str]:
    """The command line of the management API child (``gateway run --api``)."""
    argv = [sys.executable, "-m", "gateway"]
    if config_path:
        argv += ["--config", config_path]
    return [*argv, "api"]


def worker_argv(config_path: str | None, with_demo: bool) -> list[str]:
    """The command line a worker process runs."""
    argv = [sys.executable, "-m", "gateway"]
    if config_path:
        argv += ["--config", config_path]
    argv += ["run", "--worker"]
    if with_demo:
        argv.append("--demo")
    return argv
