"""The RADIUS front as a service: sockets for auth and accounting on every address."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging

from gateway.calls.lifecycle import Calls
from gateway.config import RadiusConfig
from gateway.core import metrics
from gateway.radius import coa
from gateway.radius.clients import ClientTable
from gateway.radius.dedup import ReplyCache
from gateway.radius.listener import Endpoint, RadiusProtocol, open_socket
from gateway.radius.process import RadiusProcess
from gateway.radius.stream import StreamListener, StreamSettings
from gateway.radius.tls import server_context

log = logging.getLogger(__name__)

_NO_IPV6 = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)
IN_FLIGHT_SAMPLE_S = 1.0


class RadiusFront:
    """Listens on ``bind`` x (auth_port, acct_port); stop() stops intake, then drains."""

    name = "radius"

    def __init__(
        self,
        config: RadiusConfig,
        calls: Calls,
        drain_timeout_s: float,
        workers: int = 1,
        grant: str = "slice",
    ) -> None:
        self.config = config
        self.workers = workers
        self.grant = grant
        self.clients = ClientTable.from_config(config.clients, grant)
        self.cache = ReplyCache(config.duplicate_window_s)
        self.process = RadiusProcess(calls, interim_may_grow=config.interim_may_grow)
        calls.hangup = self.hangup
        calls.limit = self.limit
        self.drain_timeout_s = drain_timeout_s
        self.protocols: list[RadiusProtocol] = []
        self.transports: list[asyncio.DatagramTransport] = []
        # auth, acct (UDP); tcp-auth, tcp-acct (RFC 6613); tls (RFC 6614, both kinds)
        self.endpoints: dict[str, list[Endpoint]] = {
            "auth": [],
            "acct": [],
            "tcp-auth": [],
            "tcp-acct": [],
            "tls": [],
        }
        self.streams: list[StreamListener] = []
        self._in_flight = [0]
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.clients.clients:
            log.warning("radius.no_clients", extra={"hint": "add [[radius.clients]]"})
        metrics.prime_radius(tuple(c.name for c in self.clients.clients))
        self.log_grant_modes()
        for kind, port in (("auth", self.config.auth_port), ("acct", self.config.acct_port)):
            for host in self.config.bind:
                protocol = RadiusProtocol(
                    kind,
                    self.clients,
                    self.process.handle,
                    self.cache,
                    self._in_flight,
                    self.config.max_in_flight,
                )
                steer = self.workers if self.config.steering else 1
                try:
                    transport, endpoint = await open_socket(protocol, host, port, steer)
                except OSError as exc:
                    if ":" in host and exc.errno in _NO_IPV6 and len(self.config.bind) > 1:
                        # A host (or container) without IPv6: serve IPv4 and say so.
                        log.warning(
                            "radius.ipv6_unavailable", extra={"bind": host, "error": str(exc)}
                        )
                        continue
                    await self.stop()
                    raise OSError(
                        f"radius {kind}: cannot listen on [{host}]:{port}: {exc}"
                    ) from exc
                self.protocols.append(protocol)
                self.transports.append(transport)
                self.endpoints[kind].append(endpoint)
        await self._start_streams()
        self._sampler = asyncio.create_task(self._sample_in_flight(), name="radius-in-flight")
        log.info(
            "radius.listening",
            extra={
                **{
                    kind: [f"[{e.host}]:{e.port}" for e in endpoints]
                    for kind, endpoints in self.endpoints.items()
                    if endpoints or kind in ("auth", "acct")
                },
                "clients": [c.name for c in self.clients.clients],
            },
        )

    async def _start_streams(self) -> None:
        """RADIUS/TCP and RADIUS/TLS listeners, when configured."""
        tcp, tls = self.config.tcp, self.config.tls
        plans: list[tuple[StreamListener, tuple[str, ...], list[tuple[str, int, str]]]] = []
        if tcp.enabled:
            settings = StreamSettings(
                "tcp", tcp.max_connections, tcp.idle_timeout_s, self.config.max_in_flight
            )
            listener = StreamListener(settings, self.clients, self.process.handle, self._in_flight)
            ports = [("tcp-auth", tcp.auth_port, "auth"), ("tcp-acct", tcp.acct_port, "acct")]
            plans.append((listener, tcp.bind, ports))
        if tls.enabled:
            context = server_context(tls)  # a bad file stops the start, naming the key
            if not any(c.tls_identity for c in self.clients.clients):
                log.warning(
                    "radius.tls_no_clients",
                    extra={"hint": "no [[radius.clients]] has a tls_identity: all are refused"},
                )
            settings = StreamSettings(
                "tls",
                tls.max_connections,
                tls.idle_timeout_s,
                self.config.max_in_flight,
                tls.handshake_timeout_s,
            )
            listener = StreamListener(
                settings, self.clients, self.process.handle, self._in_flight, context
            )
            # One port for both (RFC 6614): a Status-Server there is answered Access-Accept.
            plans.append((listener, tls.bind, [("tls", tls.port, "auth")]))
        metrics.prime_radius_streams(tuple(p[0].settings.transport for p in plans))
        for listener, binds, ports in plans:
            self.streams.append(listener)
            for name, port, kind in ports:
                for host in binds:
                    try:
                        endpoint = await listener.listen(host, port, kind)
                    except OSError as exc:
                        if ":" in host and exc.errno in _NO_IPV6 and len(binds) > 1:
                            log.warning(
                                "radius.ipv6_unavailable", extra={"bind": host, "error": str(exc)}
                            )
                            continue
                        await self.stop()
                        raise OSError(
                            f"radius {name}: cannot listen on [{host}]:{port}: {exc}"
                        ) from exc
                    self.endpoints[name].append(endpoint)

    async def hangup(self, reach: str) -> None:
        """Tell a switch to end a call (``Calls.hangup``): a Disconnect-Request to its
        CoA port, sent in the background; a switch no longer configured is logged."""
        try:
            name, address, attributes = coa.parse_reach(reach)
        except ValueError as exc:
            log.warning("radius.hangup_unreadable", extra={"error": str(exc)})
            return
        client = self.clients.by_name(name)
        if client is None or not client.coa_port:
            log.warning("radius.hangup_no_coa", extra={"client": name})
            return
        coa.disconnect_later(client, address, attributes)

    async def limit(self, reach: str, session_timeout_s: int) -> bool:
        """Tell a switch a cut call's Session-Timeout (``Calls.limit``): a CoA-Request
        to its CoA port when it is configured ``hangup = "coa"``; True on its ACK."""
        try:
            name, address, attributes = coa.parse_reach(reach)
        except ValueError as exc:
            log.warning("radius.hangup_unreadable", extra={"error": str(exc)})
            return False
        client = self.clients.by_name(name)
        if client is None or not client.coa_port or client.hangup != "coa":
            return False
        answer = await coa.send_session_timeout(client, address, attributes, session_timeout_s)
        return answer == "ack"

    def log_grant_modes(self) -> None:
        """Say which switches hold whole grants because they cannot be told to hang up."""
        for client in self.clients.clients:
            if self.grant == "slice" and client.grant == "whole":
                log.warning(
                    "radius.whole_grants",
                    extra={"client": client.name, "why": "no coa_port: whole grants are held"},
                )

    async def _sample_in_flight(self) -> None:
        """The in-flight gauge, set every second: counting it per request would cost two
        writes to the shared metrics file on every request."""
        while True:
            metrics.RADIUS_IN_FLIGHT.set(self._in_flight[0])
            await asyncio.sleep(IN_FLIGHT_SAMPLE_S)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        for protocol in self.protocols:
            protocol.accepting = False  # no new requests from here on
        # Connections drain alongside the datagrams: each answers its own, then closes.
        streams = [asyncio.create_task(s.stop(self.drain_timeout_s)) for s in self.streams]
        pending = [t for p in self.protocols for t in p.tasks]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.drain_timeout_s)
            if late:
                log.error("radius.drain_timeout", extra={"unfinished": len(late)})
        if streams:
            await asyncio.gather(*streams)
        self.streams.clear()
        for transport in self.transports:
            transport.close()  # after the drained requests were answered
        self.transports.clear()
        self.protocols.clear()
        metrics.RADIUS_IN_FLIGHT.set(0)

    def replace_clients(self, clients: ClientTable) -> None:
        """Swap the client table (SIGHUP): requests in flight keep the client they matched."""
        self.clients = clients
        for protocol in self.protocols:
            protocol.clients = clients
        for stream in self.streams:
            stream.clients = clients  # open connections keep the client they matched
        metrics.prime_radius(tuple(c.name for c in clients.clients))
        log.info("radius.clients_reloaded", extra={"clients": [c.name for c in clients.clients]})
        self.log_grant_modes()

    def listening(self) -> bool:
        udp = bool(self.transports) and not any(t.is_closing() for t in self.transports)
        return udp and all(s.listening() for s in self.streams)

    def port(self, kind: str) -> int:
        """The port actually bound for ``kind`` (auth, acct, tcp-auth, tcp-acct, tls;
        useful with port 0 in tests)."""
        return self.endpoints[kind][0].port
