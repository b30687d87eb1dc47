"""The machinery behind gateway.config: declaring keys, checking and coercing values,
building a section dataclass from TOML plus environment, and writing tables back as
TOML. The sections themselves, and what each key means, live in gateway.config."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

SECRET_WORDS = ("password", "secret", "token")
SECRET_NAMES = ("psk",)  # whole names: a word "psk" would also hide psk_identity


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the reason."""


Check = Callable[[Any], str | None]


def key(default: Any, doc: str, check: Check | None = None) -> Any:
    """Declare one configuration key: its default, what it means, how it is checked."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, list | dict):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


def port(allow_zero: bool = False) -> Check:
    low = 0 if allow_zero else 1

    def check(value: int) -> str | None:
        return None if low <= value <= 65535 else f"must be a port number {low}..65535"

    return check


def at_least(low: float) -> Check:
    def check(value: float) -> str | None:
        return None if value >= low else f"must be >= {low}"

    return check


def one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def url_scheme(*schemes: str) -> Check:
    def check(value: str) -> str | None:
        if value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes:
            return f"must be empty (embedded server) or a URL starting {' or '.join(schemes)}://"
        return None

    return check


POSTGRES_SESSION_ATTRS = (
    "any",
    "primary",
    "standby",
    "prefer-standby",
    "read-write",
    "read-only",
)


def postgres_url(value: str) -> str | None:
    """A libpq-style URL, one host or several (``postgresql://u@h1:5432,h2:5433/db``):
    every host's port is a number, ``target_session_attrs`` one asyncpg knows."""
    if value == "":
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return "must be empty (embedded server) or a URL starting postgresql:// or postgres://"
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    hosts = netloc.rsplit("@", 1)[-1]
    for spec in hosts.split(",") if hosts else ():
        if spec.startswith("["):  # [IPv6]:port
            close = spec.find("]")
            if close < 0:
                return f"host {spec!r}: an IPv6 address needs its closing ]"
            port_text = spec[close + 1 :].removeprefix(":")
        else:
            port_text = spec.partition(":")[2]
        if not spec or spec.startswith(":"):
            return "has an empty host in its host list"
        if port_text and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
            return f"host {spec!r}: the port must be a number 1-65535"
    query = tail.partition("?")[2]
    for pair in query.split("&") if query else ():
        name, _, setting = pair.partition("=")
        if name == "target_session_attrs" and setting not in POSTGRES_SESSION_ATTRS:
            return f"target_session_attrs must be one of {', '.join(POSTGRES_SESSION_ATTRS)}"
    return None


def digits_only(value: str) -> str | None:
    return None if value == "" or value.isdigit() else "must contain digits only"


def network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "must be an IP address or network (10.0.0.1, 10.0.0.0/24, ::1)"
    return None


def nas_name(value: str) -> str | None:
    ok = value and len(value) <= 64 and all(c.isalnum() or c in "._-" for c in value)
    return None if ok else "must be 1-64 letters, digits, '.', '_' or '-'"


def non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def each_of(*choices: str) -> Check:
    def check(values: tuple[str, ...]) -> str | None:
        bad = [v for v in values if v not in choices]
        return f"unknown {', '.join(bad)}; choose from {', '.join(choices)}" if bad else None

    return check


def each_network(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if network(v) is not None]
    return f"not an IP address or network: {', '.join(bad)}" if bad else None


_HINTS: dict[str, dict[str, Any]] = {}


def _field_hints(cls: type[Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in _HINTS:
        _HINTS[name] = get_type_hints(cls)
    return _HINTS[name]


def env_name(section: str, name: str) -> str:
    """The environment variable that overrides ``section.name``."""
    if section == "service":
        return f"GATEWAY_{name.upper()}"
    # A sub-table's keys: [radius.tls] enabled -> GATEWAY_RADIUS_TLS_ENABLED.
    return f"GATEWAY_{section.replace('.', '_').upper()}_{name.upper()}"


def _coerce(where: str, hint: Any, value: Any, from_env: bool) -> Any:
    """Turn a TOML or environment value into the declared type, or say why not."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a table, got {value!r}")
        return build_section(where, hint, value, {})
    if origin is tuple:
        args = get_args(hint)
        if Ellipsis not in args:  # a fixed-length tuple, e.g. a (name, number) pair
            if not isinstance(value, list | tuple) or len(value) != len(args):
                raise ConfigError(f"{where}: must be a list of {len(args)} values, got {value!r}")
            return tuple(_coerce(where, a, v, from_env) for a, v in zip(args, value, strict=True))
        item = args[0]
        if isinstance(value, Mapping) and get_origin(item) is tuple:
            value = [[k, v] for k, v in value.items()]  # a TOML table of name = value pairs
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        return tuple(_coerce(f"{where}[{i}]", item, v, from_env) for i, v in enumerate(value))
    raise TypeError(f"{where}: unsupported config type {hint!r}")


T = TypeVar("T")


def build_section(
    section: str, cls: type[T], table: Mapping[str, Any], env: Mapping[str, str]
) -> T:
    hints = _field_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in table:
        if name not in known:
            raise ConfigError(f"{section}.{name}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        where = f"{section}.{f.name}"
        variable = env_name(section, f.name)
        hint = hints[f.name]
        value: Any
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            # A sub-table ([radius.tls]): its own keys, with their own variables.
            sub = table.get(f.name, {})
            if not isinstance(sub, Mapping):
                raise ConfigError(f"{where}: must be a table, got {sub!r}")
            value = build_section(where, hint, sub, env)
        elif variable in env:
            value = _coerce(f"{where} (from {variable})", hints[f.name], env[variable], True)
        elif f.name in table:
            value = _coerce(where, hints[f.name], table[f.name], False)
        else:
            value = f.default
        check: Check | None = f.metadata.get("check")
        if check is not None:
            reason = check(value)
            if reason is not None:
                raise ConfigError(f"{where}: {reason}, got {value!r}")
        values[f.name] = value
    return cls(**values)


def _is_secret(name: str) -> bool:
    return name in SECRET_NAMES or any(word in name for word in SECRET_WORDS)


def mask_url(url: str) -> str:
    """Hide the password part of a URL (``scheme://user:***@host``)."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _is_pairs(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value)
        and bool(value)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if _is_pairs(value):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value) + " }"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r}")


def _masked(name: str, value: Any, mask: bool) -> Any:
    if mask and isinstance(value, str) and value:
        return "***" if _is_secret(name) else mask_url(value)
    return value


def render_table(
    table: Any, where: str, lines: list[str], *, with_docs: bool, mask: bool, env: bool
) -> list[tuple[str, Any]]:
    """Write a table's keys; return its sub-tables (one dataclass) and arrays of
    tables (a tuple of them) to write after it."""
    nested: list[tuple[str, Any]] = []
    for f in dataclasses.fields(table):
        value = getattr(table, f.name)
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            nested.append((f"{where}.{f.name}", value))
            continue
        if dataclasses.is_dataclass(value):
            nested.append((f"{where}.{f.name}", value))
            continue
        if with_docs:
            lines.append(f"# {f.metadata['doc']}")
            if env and f.name != "clients":
                lines.append(f"# env: {env_name(where, f.name)}")
        lines.append(f"{f.name} = {_toml_value(_masked(f.name, value, mask))}")
    return nested
