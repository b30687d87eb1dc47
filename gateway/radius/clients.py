"""The switches allowed to ask, matched by source address.

Unknown sources are not answered (and are counted by the listener): answering
would tell a scanner that a RADIUS server is here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from gateway.calls.types import Policy
from gateway.config import RadiusClientConfig
from gateway.radius.replies import ReturnCodes

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """One configured switch, with what answering it needs precomputed."""

    name: str
    secret: bytes
    network: IPNetwork
    profile: str
    require_message_authenticator: bool
    coa_port: int
    policy: Policy
    codes: ReturnCodes
    tls_identity: str = ""  # the certificate name RADIUS/TLS requires; empty: no TLS
    tls_secret: bytes = b"radsec"  # the shared secret inside TLS (RFC 6614 section 2.3)
    hangup: str = "disconnect"  # or "coa": a cut call is told its Session-Timeout at once

    @property
    def grant(self) -> str:
        """How this switch's calls hold money: slice, or whole (no CoA port to hang up)."""
        return "slice" if self.policy.slices else "whole"

    @classmethod
    def from_config(cls, c: RadiusClientConfig, grant: str = "slice") -> Client:
        """``grant``: ``balance.grant``; slices need a switch that can be told to hang up."""
        return cls(
            name=c.name,
            secret=c.secret.encode(),
            network=ipaddress.ip_network(c.address, strict=False),
            profile=c.profile,
            require_message_authenticator=c.require_message_authenticator,
            coa_port=c.coa_port,
            policy=Policy.for_switch(c, grant),
            codes=ReturnCodes(c.return_codes),
            tls_identity=c.tls_identity,
            tls_secret=c.tls_secret.encode(),
            hangup=c.hangup,
        )


class ClientTable:
    """Source address to client: the most specific network wins. Over UDP and TCP
    only clients with a shared secret match (a TLS-only client has none)."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = sorted(clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._by_address: dict[str, Client | None] = {}
        self._with_secret = [c for c in self.clients if c.secret]
        # Over TLS the handler must use the TLS secret: the clients as TLS sees them.
        self._tls = [replace(c, secret=c.tls_secret) for c in self.clients if c.tls_identity]

    @classmethod
    def from_config(
        cls, configs: tuple[RadiusClientConfig, ...], grant: str = "slice"
    ) -> ClientTable:
        return cls([Client.from_config(c, grant) for c in configs])

    def by_name(self, name: str) -> Client | None:
        """The client called ``name`` (a call's NAS), None when no longer configured."""
        return next((c for c in self.clients if c.name == name), None)

    def match(self, address: str) -> Client | None:
        """The client sending from ``address``, or None for a stranger."""
        try:
            return self._by_address[address]
        except KeyError:
            pass
        ip = _ip(address)
        found = next((c for c in self._with_secret if ip in c.network), None)
        if len(self._by_address) < 100_000:  # bounded: strangers must not grow it forever
            self._by_address[address] = found
        return found

    def match_tls(self, address: str, names: frozenset[str]) -> Client | str:
        """The RADIUS/TLS client at ``address`` whose ``tls_identity`` is one of the
        names its certificate carries, with the TLS secret; else why not:
        ``unknown_client`` (no TLS client there) or ``identity_mismatch``. Once per
        connection, so not cached."""
        ip = _ip(address)
        here = [c for c in self._tls if ip in c.network]
        if not here:
            return "unknown_client"
        return next((c for c in here if c.tls_identity in names), "identity_mismatch")


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
