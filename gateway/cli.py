"""The ``gateway`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvloop

from gateway import config as config_mod
from gateway.config import Config, ConfigError
from gateway.core import logs
from gateway.core.errors import GatewayError
from gateway.db import migrate
from gateway.loadgen import cli as cli_loadgen
from gateway.runtime import demo
from gateway.runtime import rates_cli as cli_rates
from gateway.runtime.app import (
    CallPath,
    Container,
    DemoSeed,
    ManagementJobs,
    Runtime,
    backend_services,
    gateway_services,
)
from gateway.runtime.workers import (
    Supervisor,
    api_argv,
    end_with_supervisor,
    signal_ready,
    worker_argv,
)
from gateway.settlement.reconcile import reconcile

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG, ./gateway.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway until SIGTERM")
    run.add_argument("--demo", action="store_true", help="seed demo data and print how to call")
    run.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes sharing the UDP ports (default: the number of CPUs)",
    )
    run.add_argument(
        "--api", action="store_true", help="also serve the management API and agent portal"
    )
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    api = sub.add_parser("api", help="serve the management API and agent portal")
    api.add_argument("--demo", action="store_true", help="seed the demo data first")

    cfg = sub.add_parser("config", help="check or show the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_sub.add_parser("check", help="load and check; exit 1 naming the bad key")
    cfg_sub.add_parser("show", help="print the effective configuration, secrets masked")
    cfg_sub.add_parser("example", help="print the documented example file")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply pending migrations")
    db_sub.add_parser("status", help="list applied and pending migrations")

    sub.add_parser("demo", help="seed the demo data and print logins and call commands")

    rec = sub.add_parser("reconcile", help="compare Redis balances with PostgreSQL")
    rec.add_argument("--repair", action="store_true", help="bring Redis to PostgreSQL's values")
    cli_rates.add_parser(sub)
    cli_loadgen.add_parser(sub)
    return parser


def _run_async(work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop: the call path's event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work())


async def _with_backends(
    cfg: Config, job: Callable[[Runtime], Awaitable[int]], *, migrate_now: bool | None = None
) -> int:
    runtime = Runtime(cfg)
    services = backend_services(runtime, migrate_now=migrate_now)
    container = Container(services, cfg.service.drain_timeout_s)
    await container.start()
    try:
        return await job(runtime)
    finally:
        await container.stop()


async def _migrate(runtime: Runtime) -> int:
    """``db migrate``: apply what is pending (start-up did not: see main) and say what the
    database holds, e.g. "schema current, 11 migrations"."""
    async with runtime.pool().acquire() as conn:
        done = await migrate.migrate(conn)
        held = await migrate.applied(conn)
    shipped = migrate.available()
    names = {m.version: f"{m.version:04d}_{m.name}" for m in shipped}
    if done:
        print(f"applied {len(done)} migration(s): {', '.join(names[v] for v in done)}")
    unknown = sorted(set(held) - set(names))
    if unknown:
        print(f"the database holds migrations this version does not ship: {unknown}")
    print(f"schema current, {len(held)} migrations")
    return 0


async def _status(runtime: Runtime) -> int:
    async with runtime.pool().acquire() as conn:
        done = await migrate.applied(conn)
    for m in migrate.available():
        state = "applied" if m.version in done else "pending"
        print(f"{m.version:04d}_{m.name}: {state}")
    return 0


def _reconcile(repair: bool) -> Callable[[Runtime], Awaitable[int]]:
    async def job(runtime: Runtime) -> int:
        report = await reconcile(runtime.pool(), runtime.client(), runtime.keys, repair=repair)
        print(
            f"checked {report.accounts_checked} accounts; {report.pending_settlements} "
            f"settlements not yet committed; {report.live_sessions} calls up"
        )
        if report.dead_letters:
            print(
                f"{report.dead_letters} settlement(s) in the dead-letter streams "
                "(debited in Redis, not in PostgreSQL): inspect them before repairing"
            )
        for d in report.drifts:
            print(
                f"account {d.account_id}: {d.field} redis={d.redis_value} "
                f"expected={d.expected} ({d.difference:+d})"
            )
        if not report.drifts:
            print("no drift")
            return 0
        print("repaired" if report.repaired else "drift found (run with --repair to fix)")
        return 0 if report.repaired else 1

    return job


async def _demo(runtime: Runtime) -> int:
    async with runtime.pool().acquire() as conn:
        summary = await demo.seed(conn)
    print(demo.describe(summary, ports=demo.DemoPorts.of(demo.with_demo_network(runtime.config))))
    return 0


def grant_notes(config: Config) -> list[str]:
    """One line per switch saying how its calls hold money (for ``config check``)."""
    notes = []
    for client in config.radius.clients:
        mode = config_mod.effective_grant(config.balance.grant, client)
        why = ""
        if mode != config.balance.grant:
            why = " (no coa_port: it cannot be told to hang up)"
        notes.append(f"radius client {client.name}: {mode} grants{why}")
    return notes


def _config_command(args: argparse.Namespace) -> int:
    if args.config_command == "example":
        sys.stdout.write(config_mod.example())
        return 0
    cfg = config_mod.load(args.config)
    if args.config_command == "check":
        for note in grant_notes(cfg):
            print(note)
        print("configuration OK")
    else:
        sys.stdout.write(config_mod.render(cfg, with_docs=False, mask=True))
    return 0


def _run(args: argparse.Namespace, cfg: Config) -> int:
    """``gateway run``: one process, or a supervisor of ``--workers`` processes."""
    cfg = demo.with_demo_network(cfg) if args.demo else cfg
    if args.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {args.workers}")
    if args.workers > 1 and not args.worker:
        supervisor = Supervisor(
            cfg,
            worker_argv(args.config, args.demo),
            args.workers,
            with_demo=args.demo,
            api_argv=api_argv(args.config) if args.api else (),
        )
        return _run_async(supervisor.run)
    end_with_supervisor()
    runtime = Runtime(cfg)
    services = gateway_services(runtime, with_demo=args.demo and not args.worker)
    if args.api and not args.worker:
        from gateway.api.server import ApiServer  # one process: the API shares its loop

        services.append(ApiServer(runtime))
    container = Container(services, cfg.service.drain_timeout_s)
    path = next(s for s in container.services if isinstance(s, CallPath))

    async def reload() -> None:
        try:
            fresh = config_mod.load(args.config)
            fresh = demo.with_demo_network(fresh) if args.demo else fresh
        except ConfigError as exc:
            log.error("config.reload_refused", extra={"error": str(exc)})
            return
        await path.reload(fresh)

    async def serve() -> int:
        await container.run_until_signalled(reload, on_ready=signal_ready)
        return 0

    return _run_async(serve)


def _api(args: argparse.Namespace, cfg: Config) -> int:
    """``gateway api``: the management API and portal, apart from the call path."""
    from gateway.api.server import ApiServer  # FastAPI stays out of the call path's import

    end_with_supervisor()
    runtime = Runtime(cfg)
    services = backend_services(runtime)
    if args.demo:
        services.append(DemoSeed(runtime))
    container = Container(
        [*services, ManagementJobs(runtime), ApiServer(runtime)], cfg.service.drain_timeout_s
    )

    async def reload() -> None:
        log.info("api.reload_ignored", extra={"why": "restart gateway api to apply config"})

    async def serve() -> int:
        await container.run_until_signalled(reload, on_ready=signal_ready)
        return 0

    return _run_async(serve)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            return _config_command(args)
        cfg = config_mod.load(args.config)
        logs.setup(cfg.service.log_level, cfg.service.log_format)
        if args.command == "run":
            return _run(args, cfg)
        if args.command == "api":
            return _api(args, cfg)
        if args.command == "loadgen":
            return cli_loadgen.run(args)
        if args.command == "db":
            if args.db_command == "migrate":  # the command migrates, and reports it
                return _run_async(lambda: _with_backends(cfg, _migrate, migrate_now=False))
            return _run_async(lambda: _with_backends(cfg, _status))
        if args.command == "reconcile":
            return _run_async(lambda: _with_backends(cfg, _reconcile(args.repair)))
        if args.command == "demo":
            return _run_async(lambda: _with_backends(cfg, _demo))
        if args.command == "rates":
            rates_job = cli_rates.job(args)
            return _run_async(lambda: _with_backends(cfg, rates_job))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")
