"""Configuration: one TOML file, overridable by environment variables.

Every key lives in a frozen dataclass per subsystem, with its default, its meaning
(``doc``) and its check written next to it, so this module is the one place where
defaults are documented. ``gateway.example.toml`` is generated from it
(``gateway config example``) and a test keeps the two equal.

Environment variables override the file: ``GATEWAY_<SECTION>_<KEY>`` (for example
``GATEWAY_REDIS_URL``, ``GATEWAY_DATABASE_URL``); keys of the ``[service]`` section
drop the section name (``GATEWAY_STATE_DIR``). ``GATEWAY_CONFIG`` names the file.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

# The fronts' sections live in config_fronts, the jobs' in config_jobs and config_care;
# they are imported from here, as all are.
from gateway.config_care import LowBalanceConfig as LowBalanceConfig
from gateway.config_fronts import RadiusClientConfig as RadiusClientConfig
from gateway.config_fronts import RadiusConfig as RadiusConfig
from gateway.config_fronts import RadiusTcpConfig as RadiusTcpConfig
from gateway.config_fronts import RadiusTlsConfig as RadiusTlsConfig
from gateway.config_fronts import SipConfig as SipConfig
from gateway.config_fronts import gateways as gateways
from gateway.config_fronts import reason_codes as reason_codes
from gateway.config_invoices import InvoicesConfig as InvoicesConfig
from gateway.config_jobs import AlertsConfig as AlertsConfig
from gateway.config_jobs import DormancyConfig as DormancyConfig
from gateway.config_jobs import FraudConfig as FraudConfig
from gateway.config_jobs import RecurringConfig as RecurringConfig
from gateway.config_jobs import SmtpConfig as SmtpConfig
from gateway.config_jobs import http_url as http_url
from gateway.configkit import (
    ConfigError,
    at_least,
    build_section,
    env_name,
    key,
    mask_url,
    network,
    one_of,
    port,
    postgres_url,
    render_table,
    url_scheme,
)

__all__ = ["Config", "ConfigError", "env_name", "from_mapping", "load", "mask_url"]

CONFIG_ENV = "GATEWAY_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("gateway.toml"), Path("/etc/gateway/gateway.toml"))


# -- sections --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """[service]: the process itself."""

    state_dir: str = key(
        "var", "Folder for embedded databases, logs and other runtime state (relative to cwd)."
    )
    log_level: str = key(
        "info",
        "Log level: debug, info, warning, error.",
        one_of("debug", "info", "warning", "error"),
    )
    log_format: str = key(
        "auto",
        "Log line format: json, text, or auto (text on a terminal, JSON otherwise).",
        one_of("auto", "json", "text"),
    )
    drain_timeout_s: float = key(
        10.0, "On SIGTERM, how long in-flight work may take to finish before exit.", at_least(0)
    )


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """[redis]: live balances, holds and the settlement stream."""

    url: str = key(
        "",
        "Redis URL: one server (redis://, rediss://, unix://), a Redis Cluster "
        "(redis+cluster://host:port,host:port,... : seed nodes) or the primary that "
        "Sentinels follow (redis+sentinel://host:26379,host:26379/<service>). Empty: start "
        "an embedded Redis with AOF under state_dir.",
        url_scheme(
            "redis",
            "rediss",
            "unix",
            "redis+cluster",
            "rediss+cluster",
            "redis+sentinel",
            "rediss+sentinel",
        ),
    )
    cluster: bool = key(
        False, "Treat a redis:// URL as a Redis Cluster seed (as redis+cluster:// does)."
    )
    key_prefix: str = key(
        "gw", "Prefix of every key the gateway writes, so several deployments can share a server."
    )
    max_connections: int = key(
        32, "Connections in the pool; callers wait for a free one.", at_least(1)
    )
    socket_timeout_s: float = key(
        2.0, "Timeout of one Redis command before it counts as a backend failure.", at_least(0.01)
    )
    shards: int = key(
        0,
        "Hash-tag shards account trees are spread over (a tree's keys and its shard's "
        "settlement stream share a Redis Cluster slot). 0: 64 on a cluster, 1 otherwise. "
        "Fixed once data exists: every gateway of a deployment must use the same.",
        at_least(0),
    )
    replica_acks: int = key(
        -1,
        "Replicas that must hold every balance write before the gateway answers "
        "(Redis WAIT after each pipeline), so a failover loses no answered call. "
        "-1: 1 on a cluster or under Sentinel, 0 on one server.",
        at_least(-1),
    )
    replica_ack_timeout_ms: int = key(
        100,
        "How long a pipeline waits for its replicas; past it the gateway answers anyway "
        "and counts gateway_redis_unreplicated_total.",
        at_least(1),
    )


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """[database]: PostgreSQL, the ledger of record."""

    url: str = key(
        "",
        "PostgreSQL URL (postgresql://user@host:port/db). Several hosts for failover: "
        "postgresql://user@h1:5432,h2:5432/db?target_session_attrs=read-write (each new "
        "connection tries them in order and keeps the one that takes writes). Empty: start "
        "an embedded PostgreSQL under state_dir.",
        postgres_url,
    )
    read_url: str = key(
        "",
        "PostgreSQL URL for CDR reports and traffic reports, which may lag a little: a "
        "standby, or the same hosts with target_session_attrs=prefer-standby. Empty: they "
        "use url.",
        postgres_url,
    )
    pool_min: int = key(1, "Connections opened at start.", at_least(0))
    pool_max: int = key(10, "Most connections at once.", at_least(1))
    command_timeout_s: float = key(10.0, "Timeout of one SQL command.", at_least(0.01))
    migrate_on_start: bool = key(
        True, "Apply pending schema migrations at start-up (under an advisory lock)."
    )


@dataclass(frozen=True, slots=True)
class BalanceConfig:
    """[balance]: reservations, holds and the sweeper."""

    max_call_s: int = key(7200, "The longest time any call is granted.", at_least(1))
    hold_margin_s: int = key(
        120,
        "A hold outlives its granted time by this much before the sweeper ends it "
        "(covers a late Stop).",
        at_least(0),
    )
    ended_retention_s: int = key(
        86400,
        "How long a settled or released call is remembered, so a retransmitted Stop "
        "is answered without charging again.",
        at_least(60),
    )
    orphan_policy: str = key(
        "settle",
        "An answered call whose Stop never came: settle it at its granted time, or "
        "release it free.",
        one_of("settle", "release"),
    )
    sweep_interval_s: float = key(5.0, "How often the sweeper looks for orphans.", at_least(0.1))
    grant: str = key(
        "slice",
        "How money is held for a call: slice (a first slice is held and extended while "
        "the call runs; the switch is told to hang up when no more can be held) or whole "
        "(the whole grant is held at once). Switches without a coa_port always get whole.",
        one_of("slice", "whole"),
    )
    slice_min_s: int = key(
        60,
        "Slice mode: the first slice of a customer with no call history; later first "
        "slices follow its average call length, between slice_min_s and slice_s.",
        at_least(1),
    )
    slice_s: int = key(
        300,
        "Slice mode: the largest slice; each extension holds twice the last slice, up to "
        "this. One slice per call bounds what a call can overspend.",
        at_least(1),
    )
    slice_check_s: float = key(
        1.0,
        "Slice mode: how often answered calls are checked for their next slice and for "
        "held time that ran out (the Disconnect-Request goes out within this).",
        at_least(0.05),
    )
    slice_lead_s: int = key(
        10,
        "Slice mode: the next slice is held this long before the held time runs out.",
        at_least(0),
    )
    setup_timeout_s: int = key(
        120,
        "A hold whose call is never answered (no Accounting Start) is released after this long.",
        at_least(1),
    )
    link_window_s: int = key(
        30,
        "An Access-Request without Acct-Session-Id is linked to the accounting of the "
        "same switch, caller and number that comes within this long (h323-conf-id and "
        "call-id links last until setup_timeout_s).",
        at_least(1),
    )
    overrun_grace_s: int = key(
        0,
        "A Stop longer than the call's limit (its grant, or its held time once cut) is "
        "billed up to the limit plus this; the rest is overrun (see overrun per client).",
        at_least(0),
    )


@dataclass(frozen=True, slots=True)
class CommitterConfig:
    """[committer]: moves settlements from the Redis stream into PostgreSQL."""

    batch_size: int = key(500, "Most settlements in one PostgreSQL transaction.", at_least(1))
    ack_after: str = key(
        "commit",
        "When a Stop is acknowledged: after PostgreSQL committed it (commit), or once "
        "Redis holds it (redis). With commit, a PostgreSQL outage falls back to redis "
        "after commit_wait_s.",
        one_of("commit", "redis"),
    )
    commit_wait_s: float = key(
        2.0,
        "With ack_after = commit, how long a Stop waits for its commit before it is "
        "acknowledged from Redis alone (the stream is then the spool).",
        at_least(0),
    )
    claim_idle_s: float = key(
        30.0,
        "Settlements read by a committer that died are taken over after this long.",
        at_least(1),
    )
    retry_delay_s: float = key(
        1.0, "Pause after a failed batch (PostgreSQL down) before trying again.", at_least(0.01)
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: Prometheus metrics and health checks over HTTP."""

    enabled: bool = key(True, "Serve /metrics, /healthz and /readyz.")
    bind: str = key("0.0.0.0", "Address the HTTP endpoint listens on.", network)
    port: int = key(9812, "Port of /metrics, /healthz and /readyz.", port(allow_zero=True))
    gauge_interval_s: float = key(
        5.0,
        "How often calls up, money held, settlement backlog and committer lag are read.",
        at_least(0.1),
    )
    top_agents: int = key(
        200,
        "Calls and money held are labelled per top-level agent, for at most this many "
        "agents (bounded label cardinality).",
        at_least(0),
    )


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """[api]: the management API and the agent portal (``gateway api``)."""

    bind: str = key("127.0.0.1", "Address the HTTP API and portal listen on.", network)
    port: int = key(8080, "Port of the HTTP API and portal.", port(allow_zero=True))
    session_ttl_s: int = key(
        12 * 3600, "How long a login (token or portal cookie) stays valid unused.", at_least(60)
    )
    cookie_secure: bool = key(
        False, "Mark the portal session cookie Secure (set when served over HTTPS)."
    )
    login_attempts: int = key(
        5, "Failed logins allowed per login name and per source address in a window.", at_least(1)
    )
    login_window_s: int = key(
        300, "The window of login_attempts; further tries get 429 until it passes.", at_least(1)
    )
    page_size_max: int = key(500, "Largest page a list endpoint returns.", at_least(1))
    report_rows_max: int = key(100_000, "Most rows one report or CSV export returns.", at_least(1))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, one attribute per TOML section."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    committer: CommitterConfig = field(default_factory=CommitterConfig)
    radius: RadiusConfig = field(default_factory=RadiusConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    dormancy: DormancyConfig = field(default_factory=DormancyConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    recurring: RecurringConfig = field(default_factory=RecurringConfig)
    invoices: InvoicesConfig = field(default_factory=InvoicesConfig)
    low_balance: LowBalanceConfig = field(default_factory=LowBalanceConfig)

    @property
    def state_path(self) -> Path:
        return Path(self.service.state_dir).resolve()


def _section_types() -> dict[str, type[Any]]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Build a checked ``Config`` from parsed TOML plus environment overrides."""
    env = {} if env is None else env
    sections = _section_types()
    for name in data:
        if name not in sections:
            raise ConfigError(f"[{name}]: unknown section (known: {', '.join(sections)})")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}]: must be a table")
        built[name] = build_section(name, cls, table, env)
    config = Config(**built)
    _check_whole(config)
    return config


def _check_whole(config: Config) -> None:
    """Checks that involve more than one key."""
    names = [c.name for c in config.radius.clients]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"radius.clients: two clients are named {name!r}")
    _check_radius_transports(config.radius)
    if config.sip.enabled and config.sip.accounting_nas not in names:
        raise ConfigError(
            f"sip.accounting_nas: must name one of the [[radius.clients]] "
            f"({', '.join(names) or 'none configured'}), got {config.sip.accounting_nas!r}"
        )
    if config.balance.slice_min_s > config.balance.slice_s:
        raise ConfigError(
            f"balance.slice_min_s: must not exceed balance.slice_s ({config.balance.slice_s}), "
            f"got {config.balance.slice_min_s}"
        )
    if config.database.read_url and not config.database.url:
        raise ConfigError(
            "database.read_url: needs database.url (the embedded PostgreSQL has no standby), "
            f"got {mask_url(config.database.read_url)!r}"
        )
    if config.database.pool_min > config.database.pool_max:
        raise ConfigError(
            f"database.pool_min: must not exceed database.pool_max ({config.database.pool_max}), "
            f"got {config.database.pool_min}"
        )


def _check_radius_transports(radius: RadiusConfig) -> None:
    """Secrets and identities per transport, TLS files, and TLS-PSK (not available)."""
    for i, client in enumerate(radius.clients):
        where = f"radius.clients[{i}]"
        if not client.secret and not client.tls_identity:
            raise ConfigError(
                f"{where}.secret: must not be empty (only a RADIUS/TLS client, with "
                f"tls_identity, may go without), got ''"
            )
        if client.psk_identity or client.psk:
            # Python's ssl gives a server no PSK before 3.13. 3.13's callback sees the
            # identity, but over TLS 1.3 the handshake fails while client certificates
            # are required, and with them optional a wrong key falls back to a full
            # handshake without a certificate, ssl not telling whether the PSK was used
            # (tried on 3.13.0, OpenSSL 3.0): an identity could be claimed without its
            # key. So it is refused, not half supported.
            have = hasattr(ssl.SSLContext, "set_psk_server_callback")
            runtime = f"Python {sys.version.split()[0]}"
            why = (
                f"{runtime}'s ssl module has no TLS-PSK server support"
                if not have
                else f"TLS-PSK is not supported: {runtime}'s ssl cannot tell whether a "
                "TLS 1.3 handshake used the key"
            )
            raise ConfigError(
                f"{where}.psk_identity: {why}; give the switch a certificate (tls_identity) instead"
            )
    tls = radius.tls
    if tls.enabled:
        for name in ("cert_file", "key_file", "ca_file"):
            value = getattr(tls, name)
            if not value:
                raise ConfigError(f"radius.tls.{name}: must be set when radius.tls is enabled")
            if not Path(value).is_file():
                raise ConfigError(f"radius.tls.{name}: file not found, got {value!r}")


def effective_grant(grant: str, client: RadiusClientConfig) -> str:
    """How a switch's calls hold money: ``balance.grant``, except that slices need a
    switch the gateway can tell to hang up (a ``coa_port``)."""
    return "slice" if grant == "slice" and client.coa_port != 0 else "whole"


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The file to read: the explicit one, ``$GATEWAY_CONFIG``, or the first default found."""
    chosen = explicit or env.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {path}: not found")
        return path
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override and check the configuration; raise ``ConfigError`` naming the key."""
    env = dict(os.environ) if env is None else env
    config_path = find_config_path(path, env)
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path}: {exc}") from exc
    return from_mapping(data, env)


# -- rendering -------------------------------------------------------------------------


def render(config: Config, *, with_docs: bool, mask: bool) -> str:
    """The configuration as TOML, optionally with each key's meaning and secrets masked."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        table = getattr(config, section.name)
        if lines:
            lines.append("")
        if with_docs and table.__doc__:
            lines.append(f"# {table.__doc__.strip()}")
        lines.append(f"[{section.name}]")
        nested = render_table(table, section.name, lines, with_docs=with_docs, mask=mask, env=True)
        _render_nested(nested, lines, with_docs=with_docs, mask=mask)
    return "\n".join(lines) + "\n"


def _render_nested(
    nested: list[tuple[str, Any]], lines: list[str], *, with_docs: bool, mask: bool
) -> None:
    """Sub-tables ([radius.tls], with their docs and variables), then arrays of
    tables ([[radius.clients]], documented once at the end of the example)."""
    for where, value in nested:
        if isinstance(value, tuple):
            continue
        lines.append("")
        if with_docs and value.__doc__:
            lines += [f"# {line.strip()}" for line in value.__doc__.strip().splitlines()]
        lines.append(f"[{where}]")
        render_table(value, where, lines, with_docs=with_docs, mask=mask, env=True)
    for where, items in nested:
        if not isinstance(items, tuple):
            continue
        for item in items:
            lines += ["", f"[[{where}]]"]
            render_table(item, where, lines, with_docs=False, mask=mask, env=False)


def _client_example() -> str:
    """A commented [[radius.clients]] table documenting every client key."""
    lines = ["", "# [[radius.clients]]: one per switch; every key with its default:"]
    example_client = RadiusClientConfig(name="kamailio", address="127.0.0.1", secret="testing123")
    body: list[str] = []
    render_table(example_client, "radius.clients", body, with_docs=True, mask=False, env=False)
    lines.append("# [[radius.clients]]")
    lines += [line if line.startswith("#") else f"# {line}" for line in body]
    return "\n".join(lines) + "\n"


def example() -> str:
    """The documented example file: every key with its default and meaning."""
    header = (
        "# gateway configuration: every key, its default and its meaning.\n"
        "# Generated by `gateway config example`; copy to gateway.toml and edit.\n"
        "# The file is found through --config, $GATEWAY_CONFIG, ./gateway.toml or\n"
        "# /etc/gateway/gateway.toml, in that order.\n\n"
    )
    return header + render(Config(), with_docs=True, mask=False) + _client_example()
