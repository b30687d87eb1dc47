"""RADIUS/TLS (RFC 6614) server context and the names a switch's certificate carries.

Only the classic RadSec framing is spoken: no ALPN is offered or required, so a
client asking for RFC 9765's ``radius/1.1`` gets plain RADIUS/TLS (which that RFC
lets it fall back to), never a protocol this gateway does not implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from gateway.config import RadiusTlsConfig


def server_context(config: RadiusTlsConfig) -> ssl.SSLContext:
    """TLS 1.2 or newer, the gateway's certificate, and a client certificate required
    and verified against ``ca_file`` (RFC 6614 section 2.3: mutual authentication).
    Raises ``OSError``/``ssl.SSLError`` naming what could not be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # A renegotiation mid-stream would interleave with requests in flight; none needed.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(
            f"radius.tls: cannot load cert_file {config.cert_file!r} / key_file "
            f"{config.key_file!r}: {exc}"
        ) from exc
    try:
        context.load_verify_locations(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"radius.tls: cannot load ca_file {config.ca_file!r}: {exc}") from exc
    return context


def peer_names(ssl_object: Any) -> frozenset[str]:
    """Every name the verified peer certificate carries: its DNS, IP and URI
    subjectAltNames and its subject CN. Empty without a verified certificate."""
    if ssl_object is None:
        return frozenset()
    cert = ssl_object.getpeercert()
    if not cert:
        return frozenset()
    names = {
        str(value)
        for kind, value in cert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address", "URI")
    }
    for rdn in cert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                names.add(str(value))
    return frozenset(names)


class TlsStream:
    """The server side of TLS on an accepted plain stream, driven by hand through
    memory BIOs. asyncio's own TLS transport works the same way; driving it here
    lets the front refuse a stranger before the handshake, see a failed handshake
    as an exception it can count, and behave the same on every event loop (uvloop's
    start_tls does not complete a server-side handshake on a stream)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._reader = reader
        self._writer = writer
        self._plain = bytearray()

    async def handshake(self) -> None:
        """Complete the handshake; raises ``ssl.SSLError`` (or ``ConnectionError``)."""
        while True:
            try:
                self.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                await self._fill()
                continue
            except ssl.SSLError:
                self._flush()  # the alert, so the peer learns why
                raise
            self._flush()
            return

    async def readexactly(self, n: int) -> bytes:
        """``n`` bytes of plaintext; ``asyncio.IncompleteReadError`` at the end."""
        while len(self._plain) < n:
            try:
                chunk = self.ssl_object.read(max(n - len(self._plain), 16384))
            except ssl.SSLWantReadError:
                self._flush()  # TLS 1.3 may have something to say (tickets, key update)
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self._plain), n)
            self._plain += chunk
        data = bytes(self._plain[:n])
        del self._plain[:n]
        return data

    def write(self, data: bytes) -> None:
        self.ssl_object.write(data)
        self._flush()

    def close_notify(self) -> None:
        """Say goodbye in TLS (the peer's own close_notify is not waited for)."""
        # SSLWantReadError: ours is written, theirs would come later.
        with contextlib.suppress(ssl.SSLError):
            self.ssl_object.unwrap()
        self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _fill(self) -> None:
        data = await self._reader.read(65536)
        if not data:
            self._incoming.write_eof()
            raise ConnectionResetError("the peer closed the connection")
        self._incoming.write(data)
