"""The switches allowed to ask, matched by source address.

Unknown sources are not answered (and are counted by the listener): answering
would tell a scanner that a RADIUS server is here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

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
            hangup=c.hangup,
        )


class ClientTable:
    """Source address to client: the most specific network wins."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = sorted(clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._by_address: dict[str, Client | None] = {}

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
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        found = next((c for c in self.clients if ip in c.network), None)
        if len(self._by_address) < 100_000:  # bounded: strangers must not grow it forever
            self._by_address[address] = found
        return found
