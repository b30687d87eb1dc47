"""The SIP front as a service: routes, then UDP and TCP sockets on every address.

stop() stops intake first (new INVITEs get 503), lets the authorizations in flight
finish and answers them, then closes the sockets and the route cache.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from gateway.calls.lifecycle import Calls
from gateway.calls.types import Policy
from gateway.config import RadiusClientConfig, SipConfig
from gateway.sip.listener import Allowlist, SipDatagram, SipListener, SipStream, prime_metrics
from gateway.sip.process import SipProcess, SipSettings
from gateway.sip.transactions import Transactions

log = logging.getLogger(__name__)


def settings(
    config: SipConfig, clients: tuple[RadiusClientConfig, ...], grant: str = "slice"
) -> SipSettings:
    """The process settings; the accounting NAS must be a configured RADIUS client,
    whose credit control (slices, hang-up, overrun) applies to these calls too."""
    client = next((c for c in clients if c.name == config.accounting_nas), None)
    if client is None:
        raise ValueError(
            f"sip.accounting_nas: {config.accounting_nas!r} is not a [[radius.clients]] name"
        )
    # The number plan and identification order are the switch's; whether a secret
    # is checked is decided here (trust_proxy_auth, Digest), not by its RADIUS setting.
    radius_policy = Policy.for_switch(client, grant)
    return SipSettings(
        nas=client.name,
        policy=Policy(
            plan=radius_policy.plan,
            order=radius_policy.order,
            hangup=radius_policy.hangup,
            slices=radius_policy.slices,
            overrun_cap=radius_policy.overrun_cap,
        ),
        trust_proxy_auth=config.trust_proxy_auth,
        retry_after_s=config.retry_after_s,
    )


def _socket(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT") and port != 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # worker processes
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class SipFront:
    """Listens on ``bind`` x ``transports`` at one port; see the module docstring."""

    name = "sip"

    def __init__(
        self,
        config: SipConfig,
        clients: tuple[RadiusClientConfig, ...],
        calls: Calls,
        drain_timeout_s: float,
        grant: str = "slice",
    ) -> None:
        self.config = config
        self.grant = grant
        self.drain_timeout_s = drain_timeout_s
        self.process = SipProcess(calls, settings(config, clients, grant))
        self.transactions = Transactions(config.transaction_ttl_s)
        self.listener = SipListener(
            self.process, self.transactions, Allowlist(config.proxies), config.max_in_flight
        )
        self.endpoints: dict[str, list[tuple[str, int]]] = {"udp": [], "tcp": []}
        self._datagrams: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.Server] = []
        self._connections: set[SipStream] = set()

    async def start(self) -> None:
        prime_metrics()
        try:
            for host in self.config.bind:
                await self._listen(host)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "sip.listening",
            extra={t: [f"[{h}]:{p}" for h, p in self.endpoints[t]] for t in self.config.transports},
        )

    async def _listen(self, host: str) -> None:
        """Bind every transport on ``host`` at one port (port 0: the first one's)."""
        loop = asyncio.get_running_loop()
        port = self.config.port
        for attempt in range(20):
            opened: list[socket.socket] = []
            try:
                for transport in self.config.transports:
                    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
                    opened.append(_socket(host, port, kind))
                    port = opened[0].getsockname()[1]
                break
            except OSError as exc:
                for sock in opened:
                    sock.close()
                if self.config.port != 0 or attempt == 19:
                    raise OSError(f"sip: cannot listen on [{host}]:{port}: {exc}") from exc
                port = 0  # the free UDP port was taken for TCP: draw another
        for transport, sock in zip(self.config.transports, opened, strict=True):
            if transport == "udp":
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: SipDatagram(self.listener), sock=sock
                )
                self._datagrams.append(udp)
            else:
                sock.listen(1024)
                server = await loop.create_server(
                    lambda: SipStream(self.listener, self._connections), sock=sock
                )
                self._servers.append(server)
            self.endpoints[transport].append((host, port))

    async def stop(self) -> None:
        self.listener.accepting = False  # new INVITEs get 503 from here on
        pending = list(self.listener.tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.drain_timeout_s)
            if late:
                log.error("sip.drain_timeout", extra={"unfinished": len(late)})
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for datagram in self._datagrams:
            datagram.close()
        self._servers.clear()
        self._datagrams.clear()
        self.transactions.close()

    def reload(self, clients: tuple[RadiusClientConfig, ...]) -> None:
        """SIGHUP: the accounting NAS's number plan again."""
        try:
            self.process.settings = settings(self.config, clients, self.grant)
        except ValueError as exc:
            log.error("sip.reload_kept_settings", extra={"error": str(exc)})

    def listening(self) -> bool:
        expected = len(self.config.bind) * len(self.config.transports)
        open_udp = [t for t in self._datagrams if not t.is_closing()]
        open_tcp = [s for s in self._servers if s.is_serving()]
        return expected > 0 and len(open_udp) + len(open_tcp) == expected

    def port(self, transport: str = "udp") -> int:
        """The port actually bound for ``transport`` (useful with port 0 in tests)."""
        return self.endpoints[transport][0][1]
