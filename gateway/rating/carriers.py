"""Routes: which carrier gateways take a call, by rate group and destination prefix.

Pure, no I/O (loaded by ``gateway.db.carriers``, kept current by
``gateway.calls.routecache.RouteCache``). A ``RouteIndex`` holds one ``RouteTable`` per
rate group; a lookup is the longest matching prefix of the normalized number, as
for rates. A route whose gateway list is empty blocks its prefix.

Gateways of one route are tried by ascending priority; among equal priorities the
order is drawn per call in proportion to the weights (weighted random order,
Efraimidis-Spirakis), seeded by the Call-ID so a call always gets the same order.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

TRANSPORTS = ("udp", "tcp", "tls")
_HOST_NAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class Gateway:
    """One carrier gateway: where a routed call is sent."""

    host: str  # a name, an IPv4 address, or an IPv6 address without brackets
    port: int = 5060
    transport: str = "udp"
    priority: int = 0
    weight: int = 1

    @classmethod
    def parse(cls, text: str, priority: int = 0) -> Gateway:
        """``host:port``, ``[v6]:port``, ``host`` with optional ``;transport=tcp``.

        Raises ValueError naming what is wrong.
        """
        address, *options = text.strip().split(";")
        transport = "udp"
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() != "transport" or value.strip().lower() not in TRANSPORTS:
                raise ValueError(f"{text!r}: only ;transport=udp|tcp|tls may follow the address")
            transport = value.strip().lower()
        host, port = _split_host_port(address.strip(), text)
        return cls(host, port, transport, priority)


def _split_host_port(address: str, text: str) -> tuple[str, int]:
    port_text = ""
    if address.startswith("["):
        host, _, tail = address[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"{text!r}: expected [address]:port")
            port_text = tail[1:]
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host = address
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: bad IPv6 address") from None
    elif not _HOST_NAME.match(host) or len(host) > 253:
        raise ValueError(f"{text!r}: bad host name")
    if not port_text:
        return host, 5060
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: bad port")
    return host, int(port_text)


class RouteTable:
    """The routes of one rate group: prefix -> gateways, longest prefix wins."""

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(self, routes: Mapping[str, Iterable[Gateway]]) -> None:
        self._by_prefix = {p: tuple(sorted(g, key=lambda x: x.priority)) for p, g in routes.items()}
        self._lengths = tuple(sorted({len(p) for p in self._by_prefix}, reverse=True))

    def __len__(self) -> int:
        return len(self._by_prefix)

    def lookup(self, number: str) -> tuple[Gateway, ...] | None:
        """The gateways of the longest prefix of ``number``; None when none matches."""
        by_prefix = self._by_prefix
        size = len(number)
        for length in self._lengths:
            if length <= size:
                found = by_prefix.get(number[:length])
                if found is not None:
                    return found
        return None


class RouteIndex(Mapping[int, RouteTable]):
    """Route tables by rate group id; replaced as a whole on change, never mutated."""

    def __init__(self, tables: Mapping[int, RouteTable] | None = None) -> None:
        self._tables = dict(tables or {})

    def __getitem__(self, group_id: int) -> RouteTable:
        return self._tables[group_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def lookup(self, group_id: int, number: str) -> tuple[Gateway, ...] | None:
        table = self._tables.get(group_id)
        return None if table is None else table.lookup(number)


def _draw(call_id: str, gateway: Gateway) -> float:
    """A number in (0, 1] fixed by the call and the gateway."""
    digest = hashlib.blake2b(
        f"{call_id}|{gateway.host}|{gateway.port}".encode(), digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") + 1) / 2**64


def ordered(gateways: Iterable[Gateway], call_id: str) -> tuple[Gateway, ...]:
    """Gateways in the order to try for this call (see the module docstring)."""

    def rank(gateway: Gateway) -> tuple[int, float]:
        if gateway.weight <= 0:
            return gateway.priority, 1.0  # after every weighted one of its priority
        return gateway.priority, -(_draw(call_id, gateway) ** (1.0 / gateway.weight))

    return tuple(sorted(gateways, key=rank))
