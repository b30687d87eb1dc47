"""The protocol fronts' sections of the configuration: [radius] (its clients, TLS and
TCP transports) and [sip]; ``gateway.config`` assembles them with the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.configkit import (
    at_least,
    digits_only,
    each_network,
    each_of,
    key,
    nas_name,
    network,
    non_empty,
    one_of,
    port,
)

# -- sections --------------------------------------------------------------------------


def reason_codes(value: tuple[tuple[str, int], ...]) -> str | None:
    from gateway.core.reasons import Reason

    bad = [name for name, _ in value if name not in Reason.__members__]
    if bad:
        return f"unknown reason {', '.join(bad)}; known: {', '.join(Reason.__members__)}"
    return None


@dataclass(frozen=True, slots=True)
class RadiusClientConfig:
    """[[radius.clients]]: one switch (NAS) allowed to ask."""

    name: str = key("", "The switch's name: part of every call's identity and CDR.", nas_name)
    address: str = key("", "Source address or network the switch sends from.", network)
    secret: str = key(
        "",
        "Shared secret (RFC 2865) over UDP and TCP; may stay empty for a client that "
        "only speaks RADIUS/TLS (tls_identity set).",
    )
    profile: str = key(
        "cisco",
        "Attribute dialect: cisco (h323-* VSAs, Cisco-AVPair) or standard (Session-Timeout only).",
        one_of("cisco", "standard"),
    )
    require_message_authenticator: bool = key(
        True,
        "Drop Access-Requests without a valid Message-Authenticator (BlastRADIUS, "
        "CVE-2024-3596). Turn off only for switches that cannot send it.",
    )
    verify_password: bool = key(
        True,
        "Check an extension's secret (PAP or CHAP). Off for switches that authenticate "
        "their users themselves and send no password (Kamailio misc_radius).",
    )
    identify: tuple[str, ...] = key(
        ("extension", "caller_id"),
        "How the caller is found, in order: extension (User-Name), caller_id "
        "(Calling-Station-Id), did (Called-Station-Id is a customer's DID: an inbound call).",
        each_of("extension", "caller_id", "did"),
    )
    bill_leg: str = key(
        "any",
        "Which leg's accounting is billed when the switch sends both under one session "
        "id (h323-call-origin): answer, originate, or any (bill every leg).",
        one_of("any", "answer", "originate"),
    )
    coa_port: int = key(
        0,
        "Port for Disconnect-Requests (RFC 5176) when a call's credit runs out; "
        "0 means the switch cannot be told (its calls then hold their whole grant).",
        port(allow_zero=True),
    )
    hangup: str = key(
        "disconnect",
        "How a slice call whose credit was cut is ended: disconnect (a Disconnect-Request "
        "when its held time runs out) or coa (a CoA-Request with Session-Timeout at once, "
        "so the switch ends it on time; a Disconnect-Request still follows if it NAKs).",
        one_of("disconnect", "coa"),
    )
    overrun: str = key(
        "cap",
        "A Stop past the call's limit plus balance.overrun_grace_s: cap (bill up to "
        "there; the rest is recorded as overrun_s) or bill (bill it all).",
        one_of("cap", "bill"),
    )
    country_code: str = key(
        "", "Country code for national numbers (44 turns 020... into 4420...).", digits_only
    )
    international_prefixes: tuple[str, ...] = key(
        ("00",), "Prefixes that mean an international number follows (00, 011)."
    )
    national_prefix: str = key("0", "Trunk prefix of national numbers.", digits_only)
    strip_prefixes: tuple[str, ...] = key(
        (), "Technical prefixes the switch adds, removed before rating (e.g. 9#)."
    )
    return_codes: tuple[tuple[str, int], ...] = key(
        (),
        "Overrides of the h323-return-code per refusal reason, e.g. "
        "{ ZERO_BALANCE = 4, AGENT_CAP = 6 }.",
        reason_codes,
    )
    tls_identity: str = key(
        "",
        "RADIUS/TLS: the name the switch's certificate must carry (a DNS, IP or URI "
        "subjectAltName, or the subject CN), besides coming from address. Empty: the "
        "switch may not use RADIUS/TLS.",
    )
    tls_secret: str = key(
        "radsec",
        "RADIUS/TLS: the shared secret inside the TLS connection (RFC 6614 section 2.3: radsec).",
        non_empty,
    )
    psk_identity: str = key(
        "",
        "RADIUS/TLS with a pre-shared key instead of a certificate: the PSK identity. "
        "Not available yet: config check refuses it (see README).",
    )
    psk: str = key("", "RADIUS/TLS-PSK: the key, in hex.")


@dataclass(frozen=True, slots=True)
class RadiusTlsConfig:
    """[radius.tls]: RADIUS over TLS (RadSec, RFC 6614): auth and accounting on one port."""

    enabled: bool = key(False, "Listen for RADIUS/TLS.")
    bind: tuple[str, ...] = key(("0.0.0.0", "::"), "Addresses to listen on.")
    port: int = key(2083, "The RadSec port (2083).", port(allow_zero=True))
    cert_file: str = key("", "The gateway's certificate (PEM, with its chain).")
    key_file: str = key("", "The private key of cert_file (PEM).")
    ca_file: str = key(
        "",
        "CA certificates (PEM) the switches' certificates must chain to; every "
        "connection must present one (TLS 1.2 or newer).",
    )
    max_connections: int = key(
        1000, "Connections open at once; beyond it new ones are closed and counted.", at_least(1)
    )
    idle_timeout_s: float = key(
        300.0,
        "A connection with no request for this long is closed (Status-Server keep-alives "
        "count as requests).",
        at_least(1),
    )
    handshake_timeout_s: float = key(
        10.0, "A TLS handshake not finished within this is abandoned.", at_least(0.1)
    )


@dataclass(frozen=True, slots=True)
class RadiusTcpConfig:
    """[radius.tcp]: RADIUS over TCP (RFC 6613), clients matched by source address as
    over UDP. No encryption: for trusted networks only; across networks use [radius.tls]."""

    enabled: bool = key(False, "Listen for RADIUS/TCP.")
    bind: tuple[str, ...] = key(("0.0.0.0", "::"), "Addresses to listen on.")
    auth_port: int = key(1812, "Access-Request port.", port(allow_zero=True))
    acct_port: int = key(1813, "Accounting-Request port.", port(allow_zero=True))
    max_connections: int = key(
        1000, "Connections open at once; beyond it new ones are closed and counted.", at_least(1)
    )
    idle_timeout_s: float = key(
        300.0, "A connection with no request for this long is closed.", at_least(1)
    )


@dataclass(frozen=True, slots=True)
class RadiusConfig:
    """[radius]: the RADIUS front (RFC 2865/2866/5080/5176)."""

    enabled: bool = key(True, "Run the RADIUS front.")
    bind: tuple[str, ...] = key(("0.0.0.0", "::"), "Addresses to listen on (IPv4 and IPv6).")
    auth_port: int = key(1812, "Access-Request port.", port(allow_zero=True))
    acct_port: int = key(1813, "Accounting-Request port.", port(allow_zero=True))
    duplicate_window_s: float = key(
        30.0,
        "A request repeated (same source, port, identifier, authenticator) within this "
        "time gets the cached reply (RFC 5080).",
        at_least(0),
    )
    max_in_flight: int = key(
        5000,
        "Requests processed at once; beyond it requests are dropped and counted.",
        at_least(1),
    )
    interim_may_grow: bool = key(True, "On Interim-Update, hold more time when the balance allows.")
    steering: bool = key(
        True,
        "With --workers > 1, spread each switch's requests over the workers by request "
        "(a switch sending from one port would otherwise load one worker only).",
    )
    # Sub-tables: their keys are documented in their own classes.
    tls: RadiusTlsConfig = field(default_factory=RadiusTlsConfig)
    tcp: RadiusTcpConfig = field(default_factory=RadiusTcpConfig)
    clients: tuple[RadiusClientConfig, ...] = key(
        (), "The switches allowed to ask: [[radius.clients]] tables (see the end of this file)."
    )


def gateways(values: tuple[str, ...]) -> str | None:
    from gateway.rating.carriers import Gateway

    for value in values:
        try:
            Gateway.parse(value)
        except ValueError as exc:
            return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class SipConfig:
    """[sip]: the SIP front, a redirect server: INVITE in, 302 (route + credit) or a refusal."""

    enabled: bool = key(False, "Run the SIP front (UDP and TCP); needs accounting_nas.")
    bind: tuple[str, ...] = key(("0.0.0.0", "::"), "Addresses to listen on (IPv4 and IPv6).")
    port: int = key(
        5070, "Port for UDP and TCP (0: any free port, the same for both).", port(allow_zero=True)
    )
    transports: tuple[str, ...] = key(
        ("udp", "tcp"), "Transports to listen on.", each_of("udp", "tcp")
    )
    accounting_nas: str = key(
        "",
        "Name of the [[radius.clients]] switch whose RADIUS accounting (Acct-Session-Id = "
        "Call-ID) settles the calls authorized here; its number plan and identify order "
        "apply to SIP too.",
    )
    proxies: tuple[str, ...] = key(
        ("127.0.0.1", "::1"),
        "Addresses or networks allowed to ask; requests from others are dropped and counted.",
        each_network,
    )
    trust_proxy_auth: bool = key(
        True,
        "The proxy authenticated the caller: an extension's secret is checked only when "
        "Digest credentials come along. false: an extension with a secret needs valid "
        "Authorization or Proxy-Authorization credentials, else 403.",
    )
    default_route: tuple[str, ...] = key(
        (),
        'Carrier gateways for calls no route matches, in order: "host:port" or '
        '"host:port;transport=tcp". Empty: such calls get 404.',
        gateways,
    )
    max_in_flight: int = key(
        2000, "INVITEs authorized at once; beyond it 503 with Retry-After.", at_least(1)
    )
    retry_after_s: int = key(
        5, "Retry-After of a 503 (overload, Redis or PostgreSQL down).", at_least(0)
    )
    transaction_ttl_s: float = key(
        32.0,
        "How long a final response is kept to answer retransmissions (RFC 3261 timers H/J).",
        at_least(1),
    )
