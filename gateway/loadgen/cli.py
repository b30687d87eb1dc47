"""``gateway loadgen``: the command line of the switch simulator.

Kept apart from ``gateway.cli`` (which only registers the parser and calls
``run``): the run is synchronous on its own epoll loop, with PostgreSQL touched
only before (population) and after (verification) the clock runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import asyncpg

from gateway import config as config_mod
from gateway.config import Config, RadiusClientConfig, mask_url
from gateway.core.errors import GatewayError
from gateway.loadgen import population as population_mod
from gateway.loadgen.engine import (
    ACKED,
    AUTH_HOLD,
    AUTH_RELEASE,
    CALLS,
    Engine,
    EngineOptions,
    RunResult,
    Target,
    prepare,
)
from gateway.loadgen.packets import RequestBuilder
from gateway.loadgen.plan import CallSpec, Population, parse_duration, plan_calls
from gateway.loadgen.stats import format_summary, summary
from gateway.loadgen.verify import Placed, Verdict, verify
from gateway.rating.numbers import NumberPlan
from gateway.runtime import demo

DEFAULT_SECONDS = 10.0  # with neither --calls nor --seconds
MAX_CALLS = 2_000_000  # every datagram is built up front: about 1.5 kB per call
EXIT_MISMATCH = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad option value; the message says which."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``loadgen`` under the main parser."""
    p = sub.add_parser(
        "loadgen",
        help="place whole calls over RADIUS at a target rate and check the billing",
        description="A RADIUS switch simulator: Access-Request, Accounting Start, "
        "Interim-Updates and Stop per call, at a target rate, retransmitting like a switch.",
    )
    gw = p.add_argument_group("the gateway")
    gw.add_argument("--server", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    gw.add_argument("--auth-port", type=int, help="default: radius.auth_port of the config")
    gw.add_argument("--acct-port", type=int, help="default: radius.acct_port of the config")
    gw.add_argument("--source", default="", help="address to send from (default: the OS's)")
    gw.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="HOST:AUTH_PORT:ACCT_PORT",
        help="another gateway (repeatable): calls are spread over all, and a request "
        "unanswered twice goes to the next, as a switch's RADIUS server list does",
    )
    gw.add_argument(
        "--secret",
        help="shared secret (default: the configured client matching the source, else "
        f"the demo's {demo.DEMO_RADIUS_SECRET!r})",
    )
    load = p.add_argument_group("the load")
    load.add_argument("--rate", type=float, default=100.0, help="calls started per second (100)")
    load.add_argument("--calls", type=int, help="calls to place (default: rate x seconds)")
    load.add_argument(
        "--seconds", type=float, help=f"stop starting calls after this long ({DEFAULT_SECONDS:g})"
    )
    load.add_argument(
        "--duration",
        default="0:300",
        help="simulated call length in seconds, MIN:MAX uniform or one value (default 0:300)",
    )
    load.add_argument("--interims", type=int, default=0, help="Interim-Updates per call")
    load.add_argument(
        "--hold-ms",
        type=float,
        default=100.0,
        help="real time between the Start's answer and the Stop (default 100)",
    )
    load.add_argument(
        "--refuse-share",
        type=float,
        default=0.0,
        help="share of calls meant to be refused (unrated destination, unknown caller)",
    )
    load.add_argument("--timeout-ms", type=float, default=1000.0, help="reply timeout (1000)")
    load.add_argument("--retries", type=int, default=3, help="retransmissions per request (3)")
    load.add_argument("--sockets", type=int, default=8, help="source ports per gateway port (8)")
    load.add_argument("--seed", type=int, default=1, help="random seed of the call plan")
    load.add_argument(
        "--auth-only",
        nargs="?",
        const="hold",
        choices=("hold", "release"),
        help="send each call's Access-Request alone: 'hold' (the default) carries the "
        "session, so the hold is left to expire (the sweeper ends it); 'release' carries "
        "none, so the gateway reserves and gives the hold back at once",
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=0,
        metavar="N",
        help="start no call while N requests wait for an answer (0: no limit): with a "
        "rate above the server's, the run measures its capacity",
    )
    pop = p.add_argument_group("who calls")
    pop.add_argument(
        "--setup",
        type=int,
        default=0,
        metavar="N",
        help="create N customers in PostgreSQL first (0: call as the demo data's customers)",
    )
    pop.add_argument(
        "--customer-balance",
        type=int,
        default=population_mod.CUSTOMER_BALANCE_MICROS,
        help="opening balance of each created customer, micro-units",
    )
    pop.add_argument(
        "--call-rules",
        action="store_true",
        help="with --setup: give every created account call rules of every kind that "
        "refuse none of the planned calls (to measure what checking them costs)",
    )
    pop.add_argument(
        "--ready-timeout-s",
        type=float,
        default=15.0,
        help="how long to wait for the gateway to accept the population",
    )
    out = p.add_argument_group("checks and output")
    out.add_argument(
        "--verify",
        action="store_true",
        help="after the run, check CDRs and balances in PostgreSQL (exit 1 on mismatch)",
    )
    out.add_argument("--verify-timeout-s", type=float, default=60.0, help="wait for the committer")
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    out.add_argument("--quiet", action="store_true", help="no progress line on stderr")


@dataclass(frozen=True, slots=True)
class Settings:
    """The checked options."""

    calls: int
    seconds: float | None
    durations: tuple[int, int]
    engine: EngineOptions
    mode: str = CALLS


def _settings(args: argparse.Namespace) -> Settings:
    if not args.rate > 0:
        raise UsageError(f"--rate: must be > 0, got {args.rate}")
    if args.calls is not None and args.calls < 0:
        raise UsageError(f"--calls: must be >= 0, got {args.calls}")
    if args.seconds is not None and not args.seconds > 0:
        raise UsageError(f"--seconds: must be > 0, got {args.seconds}")
    for name in ("interims", "retries", "setup"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name}: must be >= 0")
    if args.max_in_flight < 0:
        raise UsageError(f"--max-in-flight: must be >= 0, got {args.max_in_flight}")
    if not 1 <= args.sockets <= 1024:
        raise UsageError(f"--sockets: must be 1..1024, got {args.sockets}")
    if not args.timeout_ms > 0 or args.hold_ms < 0:
        raise UsageError("--timeout-ms must be > 0 and --hold-ms >= 0")
    if not 0 <= args.refuse_share <= 1:
        raise UsageError(f"--refuse-share: must be between 0 and 1, got {args.refuse_share}")
    try:
        durations = parse_duration(args.duration)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    calls = args.calls
    if calls is None:
        calls = math.ceil(args.rate * (args.seconds or DEFAULT_SECONDS))
    if calls > MAX_CALLS:
        raise UsageError(
            f"{calls:,} calls: at most {MAX_CALLS:,} per run (their datagrams are built "
            "before the clock starts); lower --calls, --rate or --seconds"
        )
    options = EngineOptions(
        rate=args.rate,
        seconds=args.seconds,
        timeout_s=args.timeout_ms / 1000,
        retries=args.retries,
        hold_s=args.hold_ms / 1000,
        interims=args.interims,
        sockets=args.sockets,
        max_in_flight=args.max_in_flight,
    )
    mode = {None: CALLS, "hold": AUTH_HOLD, "release": AUTH_RELEASE}[args.auth_only]
    return Settings(calls, args.seconds, durations, options, mode)


def _others(specs: list[str]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for spec in specs:
        host, _, ports = spec.rpartition(":")
        host, _, auth = host.rpartition(":")
        try:
            server = (host.strip("[]"), int(auth), int(ports))
        except ValueError:
            raise UsageError(f"--also: want HOST:AUTH_PORT:ACCT_PORT, got {spec!r}") from None
        if not server[0]:
            raise UsageError(f"--also: want HOST:AUTH_PORT:ACCT_PORT, got {spec!r}")
        out.append(server)
    return tuple(out)


def _source_address(server: str, port: int, source: str) -> str:
    """The address datagrams to ``server`` leave from (what the gateway matches)."""
    family = socket.getaddrinfo(server, port, type=socket.SOCK_DGRAM)[0][0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
        s.connect((server, port))
        return str(s.getsockname()[0])


def _matching_client(cfg: Config, address: str) -> RadiusClientConfig | None:
    ip = ipaddress.ip_address(address)
    for client in cfg.radius.clients:
        if ip in ipaddress.ip_network(client.address, strict=False):
            return client
    return None


def _client_snippet(address: str, secret: str) -> str:
    return (
        "# The gateway must know this switch: in its configuration (then kill -HUP it)\n"
        "[[radius.clients]]\n"
        'name = "loadgen"\n'
        f'address = "{address}"\n'
        f'secret = "{secret}"\n'
        'profile = "cisco"\n'
    )


@contextlib.asynccontextmanager
async def _database(url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection, its failures told as a ``GatewayError`` naming the server."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise GatewayError(f"PostgreSQL at {mask_url(url)}: {exc}") from exc
    try:
        yield conn
    except asyncpg.PostgresError as exc:
        raise GatewayError(f"PostgreSQL at {mask_url(url)}: {exc}") from exc
    finally:
        await conn.close()


async def _population(url: str, args: argparse.Namespace, run_id: str) -> Population:
    async with _database(url) as conn:
        if args.setup:
            return await population_mod.create(
                conn,
                args.setup,
                run_id,
                customer_balance=args.customer_balance,
                call_rules=args.call_rules,
            )
        return await population_mod.from_demo(conn, NumberPlan())


async def _verify(
    url: str, population: Population, run_id: str, result: RunResult, timeout_s: float
) -> Verdict:
    placed = [
        Placed(call.spec, call.accepted, call.outcome == ACKED)
        for call in result.calls
        if call.spec.customer_id is not None
    ]
    async with _database(url) as conn:
        return await verify(conn, population, run_id, placed, timeout_s)


@contextlib.contextmanager
def _first_interrupt_stops(engine: Engine) -> Iterator[None]:
    """Ctrl-C once: start no new call, let the others end; twice: abort."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if engine.stopping:
            raise KeyboardInterrupt
        engine.stopping = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _probe_spec(population: Population, k: int) -> CallSpec:
    caller = population.callers[-1]
    dial = caller.destinations[k % len(caller.destinations)]
    return CallSpec(
        index=-1,
        session_id="",
        username=caller.extension,
        password=caller.password,
        calling=caller.caller_ids[0],
        called=dial + "0" * population.suffix_digits,
        dial_prefix=dial,
        customer_id=caller.account_id,
        duration_s=0,
    )


def _say(text: str) -> None:
    print(f"gateway loadgen: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Switch:
    """Where the simulated switch sends, from where, with which secret."""

    target: Target
    source: str  # the address the gateway sees
    secret: str
    configured: bool  # a [[radius.clients]] of the configuration matches the source


def _switch(args: argparse.Namespace, cfg: Config) -> Switch:
    auth_port = args.auth_port or cfg.radius.auth_port
    acct_port = args.acct_port or cfg.radius.acct_port
    source = _source_address(args.server, auth_port, args.source)
    client = _matching_client(cfg, source)
    secret = args.secret or (client.secret if client else demo.DEMO_RADIUS_SECRET)
    target = Target(args.server, auth_port, acct_port, args.source, _others(args.also))
    return Switch(target, source, secret, client is not None)


def _place(
    args: argparse.Namespace,
    settings: Settings,
    switch: Switch,
    population: Population,
    run_id: str,
) -> tuple[RunResult, float] | None:
    """Build every datagram, check the gateway answers, run the clock; the result and
    the seconds spent building. None (and a message) when the gateway does not answer."""
    began = time.perf_counter()
    specs = plan_calls(
        population,
        settings.calls,
        run_id=run_id,
        durations=settings.durations,
        refuse_share=args.refuse_share,
        seed=args.seed,
    )
    secret = switch.secret.encode()
    nas_ip = switch.source if ipaddress.ip_address(switch.source).version == 4 else None
    builder = RequestBuilder(secret, nas_ip=nas_ip)
    calls = prepare(
        specs, builder, settings.engine.sockets, settings.engine.interims, settings.mode
    )
    precompute_s = time.perf_counter() - began
    progress = None if args.quiet else sys.stderr
    engine = Engine(calls, switch.target, settings.engine, secret, progress)

    def probe(k: int, attempt: int) -> bytes:
        return builder.probe(attempt % 256, os.urandom(16), _probe_spec(population, k))

    try:
        trouble = engine.probe(probe, args.ready_timeout_s) if calls else None
        if trouble is not None:
            t = switch.target
            _say(
                f"the gateway at {t.host} (ports {t.auth_port}/{t.acct_port}) did not accept "
                f"a test call within {args.ready_timeout_s:g}s ({trouble}); is "
                f"{switch.source} a [[radius.clients]] with this secret?"
            )
            return None
        with _first_interrupt_stops(engine):
            return engine.run(), precompute_s
    finally:
        engine.close()


def run(args: argparse.Namespace) -> int:
    """Run ``gateway loadgen`` with parsed ``args``; the exit status."""
    try:
        settings = _settings(args)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    cfg = config_mod.load(args.config)
    url = cfg.database.url
    if not url:
        _say(
            "needs PostgreSQL to find or create its callers: set GATEWAY_DATABASE_URL (an "
            "embedded server's URL is in the gateway's log, event embedded.postgres.started)"
        )
        return EXIT_USAGE
    try:
        switch = _switch(args, cfg)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    run_id = secrets.token_hex(3)
    population = asyncio.run(_population(url, args, run_id))
    if not population.callers:
        _say("no callers: the demo data has none that can be rated (try --setup N)")
        return EXIT_USAGE
    if args.setup and not args.quiet:
        _say(f"created {args.setup} customers (run {run_id})")
        if switch.configured:
            _say(f"calling as the configured [[radius.clients]] matching {switch.source}")
        else:
            sys.stderr.write(_client_snippet(switch.source, switch.secret))
    placed = _place(args, settings, switch, population, run_id)
    ended_unix = time.time()
    if placed is None:
        return EXIT_MISMATCH
    result, precompute_s = placed
    t = switch.target
    report: dict[str, Any] = {
        "run": run_id,
        "mode": settings.mode,
        "server": ", ".join(f"{h}:{a}/{c}" for h, a, c in t.servers),
        "customers": len(population.callers),
        # When the calls were placed, by the wall clock: lets a benchmark attribute the
        # CPU time of the servers to this window (set-up and --verify excluded).
        "window_unix": [round(ended_unix - result.wall_s, 3), round(ended_unix, 3)],
        **summary(
            result.counters,
            result.latencies,
            planned=settings.calls,
            target_rate=args.rate,
            wall_s=result.wall_s,
            cpu_s=result.cpu_s,
            precompute_s=precompute_s,
        ),
    }
    verdict: Verdict | None = None
    if args.verify:
        verdict = asyncio.run(_verify(url, population, run_id, result, args.verify_timeout_s))
        report["verify"] = verdict.as_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_summary(report))
        if verdict is not None:
            print(verdict.describe())
    return EXIT_MISMATCH if verdict is not None and not verdict.ok else 0
