"""RADIUS/TLS (RFC 6614) server context and the names a switch's certificate carries.

Only the classic RadSec framing is spoken: no ALPN is offered or required, so a
client asking for RFC 9765's ``radius/1.1`` gets plain RADIUS/TLS (which that RFC
lets it fall back to), never a protocol this gateway does not implement.
"""

from __future__ import annotations

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
