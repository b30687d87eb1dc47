"""A call's requests as finished datagrams, built before the clock starts.

A call is an Access-Request (cisco style: User-Name, User-Password, caller and
dialled number, Acct-Session-Id, h323 VSAs, a Message-Authenticator put first),
then Accounting Start, Interim-Updates and a Stop carrying the same identity.
Every datagram is built once with the identifier the engine predicts for it; when
that identifier is busy, ``resign`` moves it to another one (a new header, a new
Message-Authenticator or Request Authenticator) at the cost of one MD5 or HMAC.

Built on the gateway's own attribute table and authenticator helpers; the unit
tests prove the bytes equal ``gateway.radius.codec.encode_request``'s.
"""

from __future__ import annotations

import hashlib
import struct

from gateway.loadgen.plan import CallSpec
from gateway.radius.auth import MA_HEADER, ZERO_AUTHENTICATOR, hide_password, hmac_md5
from gateway.radius.dictionary import Dictionary, default_dictionary

ACCESS_REQUEST = 1
ACCOUNTING_REQUEST = 4
HEADER_LEN = 20
MA_VALUE = slice(22, 38)  # the Message-Authenticator value, first attribute of a request

_HEADER = struct.Struct("!BBH")
_md5 = hashlib.md5

_CALL_ATTRIBUTES = (
    "User-Name",
    "Calling-Station-Id",
    "Called-Station-Id",
    "Acct-Session-Id",
    "h323-conf-id",
    "Cisco-AVPair",
    "Acct-Session-Time",
)


def conf_id(session_id: str) -> str:
    """A Cisco-looking h323-conf-id (four groups of 8 hex digits) for a session."""
    digest = _md5(session_id.encode()).hexdigest().upper()
    return " ".join(digest[i : i + 8] for i in range(0, 32, 8))


class RequestBuilder:
    """Builds a call's datagrams for one shared secret (and NAS address)."""

    def __init__(
        self, secret: bytes, *, nas_ip: str | None = None, dictionary: Dictionary | None = None
    ) -> None:
        d = dictionary or default_dictionary()
        self.secret = secret
        self._encode = {name: d.attribute(name).encode for name in _CALL_ATTRIBUTES}
        fixed = [
            d.attribute("h323-call-origin").encode("h323-call-origin=answer"),
            d.attribute("h323-call-type").encode("h323-call-type=VoIP"),
        ]
        if nas_ip is not None:
            fixed.append(d.attribute("NAS-IP-Address").encode(nas_ip))
        self._fixed = b"".join(fixed)
        status = d.attribute("Acct-Status-Type").encode
        self._start = status("Start")
        self._interim = status("Interim-Update")
        self._stop = status("Stop") + b"".join(
            (
                d.attribute("Acct-Terminate-Cause").encode("User-Request"),
                d.attribute("h323-disconnect-cause").encode("h323-disconnect-cause=10"),
            )
        )
        self._password_type = d.attribute("User-Password").number

    def common(self, spec: CallSpec) -> bytes:
        """The attributes every request of the call carries, encoded."""
        enc = self._encode
        return b"".join(
            (
                enc["User-Name"](spec.username),
                enc["Calling-Station-Id"](spec.calling),
                enc["Called-Station-Id"](spec.called),
                enc["Acct-Session-Id"](spec.session_id),
                enc["h323-conf-id"](f"h323-conf-id={conf_id(spec.session_id)}"),
                enc["Cisco-AVPair"](f"call-id={spec.session_id}@loadgen"),
                self._fixed,
            )
        )

    def access_request(
        self, ident: int, authenticator: bytes, spec: CallSpec, common: bytes
    ) -> bytes:
        """The Access-Request: Message-Authenticator first, then ``common``, then the
        hidden User-Password (RFC 2865 section 5.2)."""
        hidden = hide_password(spec.password.encode(), self.secret, authenticator)
        body = b"".join((common, bytes((self._password_type, len(hidden) + 2)), hidden))
        header = _HEADER.pack(ACCESS_REQUEST, ident, HEADER_LEN + 18 + len(body))
        mac = hmac_md5(
            self.secret, b"".join((header, authenticator, MA_HEADER, ZERO_AUTHENTICATOR, body))
        )
        return b"".join((header, authenticator, MA_HEADER, mac, body))

    def accounting_request(
        self, ident: int, status: bytes, common: bytes, elapsed_s: int | None
    ) -> bytes:
        """An Accounting-Request with its RFC 2866 Request Authenticator."""
        parts = [common, status]
        if elapsed_s is not None:
            parts.append(self._encode["Acct-Session-Time"](elapsed_s))
        body = b"".join(parts)
        header = _HEADER.pack(ACCOUNTING_REQUEST, ident, HEADER_LEN + len(body))
        digest = _md5(b"".join((header, ZERO_AUTHENTICATOR, body, self.secret))).digest()
        return b"".join((header, digest, body))

    def probe(self, ident: int, authenticator: bytes, spec: CallSpec) -> bytes:
        """An Access-Request for ``spec``'s caller and destination that carries no
        session identity, so the gateway rates and reserves, then gives the hold back
        at once: a readiness check that leaves nothing behind."""
        enc = self._encode
        common = b"".join(
            (
                enc["User-Name"](spec.username),
                enc["Calling-Station-Id"](spec.calling),
                enc["Called-Station-Id"](spec.called),
                self._fixed,
            )
        )
        return self.access_request(ident, authenticator, spec, common)

    def authorization(
        self, spec: CallSpec, ident: int, authenticator: bytes, *, session: bool = True
    ) -> bytes:
        """The call's Access-Request alone. With ``session`` it carries the call's
        identity (the gateway's hold then waits for accounting that never comes and
        is ended by its sweeper); without, the gateway reserves and gives the hold
        back at once (``probe``)."""
        if not session:
            return self.probe(ident, authenticator, spec)
        return self.access_request(ident, authenticator, spec, self.common(spec))

    def call(self, spec: CallSpec, ident: int, authenticator: bytes, interims: int) -> list[bytes]:
        """Every datagram of the call, in order: Access-Request, Start, the
        Interim-Updates (evenly spaced in simulated time), Stop with the call's length."""
        common = self.common(spec)
        out = [
            self.access_request(ident, authenticator, spec, common),
            self.accounting_request(ident, self._start, common, None),
        ]
        for i in range(1, interims + 1):
            elapsed = spec.duration_s * i // (interims + 1)
            out.append(self.accounting_request(ident, self._interim, common, elapsed))
        out.append(self.accounting_request(ident, self._stop, common, spec.duration_s))
        return out


def resign(packet: bytes, ident: int, secret: bytes) -> bytes:
    """``packet`` (built by ``RequestBuilder``) under identifier ``ident``.

    An Access-Request keeps its Request Authenticator (so its hidden password) and
    gets a new Message-Authenticator; an Accounting-Request gets a new Request
    Authenticator.
    """
    header = b"".join((packet[:1], bytes((ident,)), packet[2:4]))
    if packet[0] == ACCESS_REQUEST:
        authenticator = packet[4:20]
        rest = packet[38:]
        mac = hmac_md5(
            secret, b"".join((header, authenticator, MA_HEADER, ZERO_AUTHENTICATOR, rest))
        )
        return b"".join((header, authenticator, MA_HEADER, mac, rest))
    body = packet[20:]
    digest = _md5(b"".join((header, ZERO_AUTHENTICATOR, body, secret))).digest()
    return b"".join((header, digest, body))


def reply_matches(reply: bytes, request: bytes, secret: bytes) -> bool:
    """Whether ``reply`` carries the Response Authenticator of an answer to ``request``
    (RFC 2865 section 3). A late answer to an earlier request that used the same
    identifier fails this, since its request had another authenticator."""
    length = (reply[2] << 8) | reply[3]
    if len(reply) < length or length < HEADER_LEN:
        return False
    body = reply[HEADER_LEN:length]
    expected = _md5(b"".join((reply[:4], request[4:20], body, secret))).digest()
    return expected == reply[4:20]
