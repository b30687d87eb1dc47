"""Wiring and lifecycle: the service container every server plugs into.

Services start in order and stop in reverse. Each has ``start()`` and ``stop()``;
a service that fails to start stops those already started before the error
surfaces. SIGTERM/SIGINT stop intake first, then everything drains within
``service.drain_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from gateway.agents import fraud_blocks
from gateway.agents.context import ManagementContext
from gateway.agents.dormancy import DormancyJob
from gateway.agents.invoice_job import InvoiceJob
from gateway.agents.low_balance import LowBalanceWatch
from gateway.agents.outbox import OutboxSender
from gateway.agents.recurring import RecurringJob
from gateway.agents.webhooks import WebhookSender
from gateway.authz.directory import Directory
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client, redis_errors, shard_count
from gateway.balance.service import Balance
from gateway.calls.credit import SliceKeeper
from gateway.calls.fraud import Block, Crossed, FraudGuard
from gateway.calls.lifecycle import Calls
from gateway.calls.ratecache import RateCache
from gateway.calls.routecache import RouteCache
from gateway.config import AlertsConfig, Config, mask_url
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.periodic import Periodic
from gateway.core.reasons import Reason
from gateway.db import migrate
from gateway.db.pool import create_pool, pg_errors
from gateway.radius.clients import ClientTable
from gateway.radius.server import RadiusFront
from gateway.rating.carriers import Gateway
from gateway.runtime import demo, readiness
from gateway.runtime.embedded import EmbeddedPostgres, EmbeddedRedis
from gateway.runtime.gauges import GaugeSampler
from gateway.runtime.ops import Check, OpsServer, notify_systemd
from gateway.settlement.committer import Committer
from gateway.sip.server import SipFront

log = logging.getLogger(__name__)

# Set by the supervisor for its workers: how many share the UDP ports.
WORKER_COUNT_ENV = "GATEWAY_WORKER_COUNT"


class Service(Protocol):
    """Anything the container runs."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Runtime:
    """What the services share once started: backend URLs and clients."""

    config: Config
    database_url: str = ""
    redis_url: str = ""
    db: asyncpg.Pool | None = None
    read_db: asyncpg.Pool | None = None  # database.read_url's pool, when one is set
    redis: RedisClient | None = None
    keys: Keys = field(init=False)

    def __post_init__(self) -> None:
        self.database_url = self.config.database.url
        self.redis_url = self.config.redis.url
        self.keys = Keys(
            self.config.redis.key_prefix, shard_count(self.config.redis, self.redis_url)
        )

    def pool(self) -> asyncpg.Pool:
        if self.db is None:
            raise RuntimeError("database service not started")
        return self.db

    def read_pool(self) -> asyncpg.Pool:
        """The pool for reports that tolerate replica lag (the main pool without one)."""
        return self.read_db if self.read_db is not None else self.pool()

    def client(self) -> RedisClient:
        if self.redis is None:
            raise RuntimeError("redis service not started")
        return self.redis


class EmbeddedServers:
    """Starts an embedded PostgreSQL and/or Redis for each URL left empty."""

    name = "embedded"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        state = runtime.config.state_path
        self.postgres = EmbeddedPostgres(state / "postgres") if not runtime.database_url else None
        self.redis = EmbeddedRedis(state / "redis") if not runtime.redis_url else None

    async def start(self) -> None:
        if self.redis is not None:
            self.runtime.redis_url = await asyncio.to_thread(self.redis.start)
        else:
            log.info("redis.external", extra={"url": mask_url(self.runtime.redis_url)})
        if self.postgres is not None:
            self.runtime.database_url = await asyncio.to_thread(self.postgres.start)
        else:
            log.info("postgres.external", extra={"url": mask_url(self.runtime.database_url)})

    async def stop(self) -> None:
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)


class Database:
    """The PostgreSQL pool (and the report pool of ``database.read_url``); applies
    pending migrations on start when configured to."""

    name = "database"

    def __init__(self, runtime: Runtime, *, migrate_now: bool | None = None) -> None:
        self.runtime = runtime
        self.migrate_now = (
            runtime.config.database.migrate_on_start if migrate_now is None else migrate_now
        )

    async def start(self) -> None:
        pool = await create_pool(self.runtime.config.database, self.runtime.database_url)
        try:
            if self.migrate_now:
                with pg_errors():
                    async with pool.acquire() as conn:
                        await migrate.migrate(conn)
            read_url = self.runtime.config.database.read_url
            if read_url:
                self.runtime.read_db = await create_pool(self.runtime.config.database, read_url)
        except BaseException:
            await pool.close()
            raise
        self.runtime.db = pool

    async def stop(self) -> None:
        if self.runtime.read_db is not None:
            await self.runtime.read_db.close()
            self.runtime.read_db = None
        if self.runtime.db is not None:
            await self.runtime.db.close()
            self.runtime.db = None


class Redis:
    """The Redis client; checks the server answers before the gateway takes calls."""

    name = "redis"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        client = create_client(self.runtime.config.redis, self.runtime.redis_url)
        try:
            with redis_errors():
                await client.ping()
        except BackendUnavailable:
            await client.aclose()
            raise
        self.runtime.redis = client

    async def stop(self) -> None:
        if self.runtime.redis is not None:
            await self.runtime.redis.aclose()
            self.runtime.redis = None


class DemoSeed:
    """Seeds the demo tree on first start and prints how to place a call, every start."""

    name = "demo"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        async with self.runtime.pool().acquire() as conn:
            summary = await demo.seed(conn)
        api = self.runtime.config.api
        host = "127.0.0.1" if api.bind in ("0.0.0.0", "::", "") else api.bind
        ports = demo.DemoPorts.of(self.runtime.config)
        print(demo.describe(summary, f"http://{host}:{api.port}/portal", ports), flush=True)

    async def stop(self) -> None:
        return None


class CallPath:
    """Everything a call touches, built once the backends are up, started in order:
    balance (scripts, sweeper), committer, rates, directory, then the fronts. Stopped
    in reverse: the fronts stop taking requests and drain first, the committer flushes
    last but one."""

    name = "call-path"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.inner: Container | None = None
        self.balance: Balance | None = None
        self.committer: Committer | None = None
        self.directory: Directory | None = None
        self.rates: RateCache | None = None
        self.routes: RouteCache | None = None
        self.calls: Calls | None = None
        self.radius: RadiusFront | None = None
        self.sip: SipFront | None = None
        self.ops: OpsServer | None = None

    def _blocker(self, pool: asyncpg.Pool, alerts: AlertsConfig) -> Block:
        """What the fraud checks call: disable in PostgreSQL, notify, then make Redis
        refuse the account's next call at once (the directory's NOTIFY would too)."""

        async def block(crossed: Crossed) -> None:
            if await fraud_blocks.block(pool, alerts, crossed) and self.balance is not None:
                await self.balance.mirror.sync(crossed.account_id)

        return block

    async def start(self) -> None:
        rt, cfg = self.runtime, self.runtime.config
        metrics.prime_gateway(tuple(reason.value for reason in Reason))
        pool, client = rt.pool(), rt.client()
        self.balance = Balance(cfg.balance, client, pool, rt.keys, cfg.redis)
        self.committer = Committer(
            cfg.committer, client, pool, rt.keys, drain_timeout_s=cfg.service.drain_timeout_s
        )
        self.rates = RateCache(pool, rt.database_url)
        self.directory = Directory(
            pool, rt.database_url, on_account_change=self.balance.mirror.sync_many
        )
        waits = cfg.committer.ack_after == "commit"
        if cfg.sip.enabled:  # the calls the SIP front authorizes are routed
            self.routes = RouteCache(pool, rt.database_url)
        fraud = FraudGuard(cfg.fraud, self.balance.pipeliner, rt.keys)
        fraud.block = self._blocker(pool, cfg.alerts)
        self.calls = calls = Calls(
            self.directory,
            self.rates,
            self.balance,
            fraud=fraud,
            spend_agents=cfg.metrics.top_agents,
            waiter=self.committer if waits else None,
            commit_wait_s=cfg.committer.commit_wait_s if waits else 0.0,
            routes=self.routes,
            default_route=[
                Gateway.parse(g, priority=i) for i, g in enumerate(cfg.sip.default_route)
            ],
        )
        services: list[Service] = [
            self.balance,
            self.committer,
            self.rates,
            *([self.routes] if self.routes is not None else []),
            self.directory,
            GaugeSampler(cfg.metrics, client, rt.keys, self.directory),
            SliceKeeper(self.balance.store, lambda: calls.hangup, lambda: calls.limit),
        ]
        if cfg.radius.enabled:
            self.radius = RadiusFront(
                cfg.radius,
                self.calls,
                cfg.service.drain_timeout_s,
                workers=int(os.environ.get(WORKER_COUNT_ENV, "1")),
                grant=cfg.balance.grant,
            )
            services.append(self.radius)
        if cfg.sip.enabled:
            self.sip = SipFront(
                cfg.sip,
                cfg.radius.clients,
                self.calls,
                cfg.service.drain_timeout_s,
                grant=cfg.balance.grant,
            )
            services.append(self.sip)
        if cfg.metrics.enabled:
            self.ops = OpsServer(cfg.metrics, self.readiness_checks())
            services.append(self.ops)
        self.inner = Container(services, cfg.service.drain_timeout_s)
        await self.inner.start()

    async def stop(self) -> None:
        if self.inner is not None:
            await self.inner.stop()

    def readiness_checks(self) -> dict[str, Check]:
        rt = self.runtime

        async def redis_ok() -> str | None:
            return await readiness.redis_problem(rt.client(), rt.keys)

        async def postgres_ok() -> str | None:
            return await readiness.postgres_problem(rt.pool(), rt.client(), rt.keys)

        async def radius_ok() -> str | None:
            if self.radius is None or self.radius.listening():
                return None
            return "RADIUS sockets are not listening"

        async def sip_ok() -> str | None:
            if self.sip is None or self.sip.listening():
                return None
            return "SIP sockets are not listening"

        return {"redis": redis_ok, "postgresql": postgres_ok, "radius": radius_ok, "sip": sip_ok}

    async def reload(self, config: Config) -> None:
        """SIGHUP: new switch list, rates and directory re-read; calls keep flowing.

        Other settings are read at start; a change to them is logged as needing a
        restart.
        """
        old = self.runtime.config
        if self.radius is not None:
            self.radius.replace_clients(
                ClientTable.from_config(config.radius.clients, old.balance.grant)
            )
        if self.sip is not None:
            self.sip.reload(config.radius.clients)
        if self.rates is not None:
            self.rates.request_reload()
        if self.routes is not None:
            self.routes.request_reload()
        if self.directory is not None:
            await self.directory.reload_all()
        changed = [
            name
            for name in ("service", "redis", "database", "balance", "committer", "sip", "metrics")
            if getattr(old, name) != getattr(config, name)
        ]
        radius_rest = dataclasses.replace(config.radius, clients=old.radius.clients)
        if radius_rest != old.radius:
            changed.append("radius")
        if changed:
            log.warning("config.reload_needs_restart", extra={"sections": ",".join(changed)})
        log.info("config.reloaded")


class ManagementJobs:
    """Background jobs of the management side: dormancy, recurring charges, invoicing
    and low-balance rounds, the outbox.

    Every process of the call path and ``gateway api`` runs them: the dormancy job's
    Redis lock lets one process act per round, and outbox rows are claimed one by
    one, so all may send; invoices are issued once per account and period whoever
    issues them. Dormancy runs only when ``dormancy.enabled``, invoicing when
    ``invoices.enabled``; the outbox only when ``smtp.host`` is set (otherwise mail
    waits in the table).
    """

    name = "management-jobs"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.jobs: list[Periodic] = []
        self.ctx: ManagementContext | None = None

    async def start(self) -> None:
        cfg, rt = self.runtime.config, self.runtime
        if (
            cfg.dormancy.enabled
            or cfg.recurring.enabled
            or cfg.invoices.enabled
            or cfg.low_balance.enabled
        ):
            self.ctx = ManagementContext.create(cfg, rt.pool(), rt.client(), rt.keys)
            await self.ctx.start()
        if cfg.dormancy.enabled and self.ctx is not None:
            self.jobs.append(DormancyJob(self.ctx))
        if cfg.recurring.enabled and self.ctx is not None:
            self.jobs.append(RecurringJob(self.ctx))
        if cfg.invoices.enabled and self.ctx is not None:
            self.jobs.append(InvoiceJob(self.ctx))
        if cfg.low_balance.enabled and self.ctx is not None:
            # Every process may run it: the conditional update gives each crossing
            # to one of them.
            self.jobs.append(LowBalanceWatch(self.ctx))
        if cfg.smtp.host:
            self.jobs.append(OutboxSender(rt.pool(), cfg.smtp))
        if cfg.alerts.webhook_url:
            self.jobs.append(WebhookSender(rt.pool(), cfg.alerts))
        for job in self.jobs:
            await job.start()

    async def stop(self) -> None:
        while self.jobs:
            await self.jobs.pop().stop()
        if self.ctx is not None:
            await self.ctx.close()
            self.ctx = None


class Container:
    """Starts services in order, stops them in reverse, each stop bounded in time."""

    def __init__(self, services: Sequence[Service], drain_timeout_s: float) -> None:
        self.services = list(services)
        self.drain_timeout_s = drain_timeout_s
        self.started: list[Service] = []

    async def start(self) -> None:
        for service in self.services:
            try:
                await service.start()
            except BaseException:
                log.error("service.start_failed", extra={"service": service.name})
                await self.stop()
                raise
            self.started.append(service)
            log.info("service.started", extra={"service": service.name})

    async def stop(self) -> None:
        while self.started:
            service = self.started.pop()
            try:
                # Shielded: a second signal must not cut a flush in half.
                await asyncio.wait_for(asyncio.shield(service.stop()), self.drain_timeout_s)
                log.info("service.stopped", extra={"service": service.name})
            except TimeoutError:
                log.error("service.stop_timeout", extra={"service": service.name})
            except Exception:
                log.exception("service.stop_failed", extra={"service": service.name})

    async def run_until_signalled(
        self,
        on_reload: Callable[[], Coroutine[Any, Any, None]] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Start, wait for SIGTERM or SIGINT, then stop everything; SIGHUP calls on_reload."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[None]] = set()

        def hangup() -> None:
            if on_reload is not None:
                task = asyncio.create_task(on_reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        try:
            await self.start()
            log.info("gateway.ready")
            notify_systemd("READY=1")
            if on_ready is not None:
                on_ready()
            await stopping.wait()
            log.info("gateway.stopping")
            notify_systemd("STOPPING=1")
        finally:
            # The handlers stay while the services drain: Ctrl-C reaches every process
            # of the group, and the supervisor's SIGTERM follows; with the default
            # action back, that second signal would kill the drain halfway.
            try:
                await self.stop()
            finally:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(signum)


def backend_services(runtime: Runtime, *, migrate_now: bool | None = None) -> list[Service]:
    """Embedded servers (when needed), then PostgreSQL and Redis."""
    return [EmbeddedServers(runtime), Database(runtime, migrate_now=migrate_now), Redis(runtime)]


def gateway_services(runtime: Runtime, *, with_demo: bool) -> list[Service]:
    """Everything ``gateway run`` starts, in start order."""
    services = backend_services(runtime)
    if with_demo:
        services.append(DemoSeed(runtime))
    services.append(CallPath(runtime))
    services.append(ManagementJobs(runtime))
    return services
