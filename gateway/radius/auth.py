"""RADIUS authenticators and password hiding (RFC 2865, 2866, 3579, 5176).

Everything here is MD5, as the RFCs fix it. The functions that take a decoded
``Packet`` work on its raw bytes, so they check exactly what was received; every
comparison of a secret-derived value is constant-time (``hmac.compare_digest``).

Which authenticator goes where:

- Access-Request, Status-Server: the Request Authenticator is random; the packet
  is authenticated by its Message-Authenticator (HMAC-MD5 over the packet with
  the M-A value zeroed).
- Accounting-Request, Disconnect-Request, CoA-Request: Request Authenticator =
  MD5(Code+Identifier+Length+16 zero octets+Attributes+Secret); a Message-
  Authenticator, if any, is computed with 16 zero octets in the authenticator
  field (RFC 5176 section 3.3; what FreeRADIUS and pyrad do).
- Replies: Response Authenticator = MD5(Code+Identifier+Length+Request
  Authenticator+Attributes+Secret); a Message-Authenticator is computed with the
  Request Authenticator in the authenticator field, before the Response
  Authenticator — except in an Accounting-Response to an Accounting-Request,
  where it uses 16 zero octets (FreeRADIUS and pyrad; an Accounting-Response to
  Status-Server uses the Request Authenticator, RFC 5997 section 3).
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.radius.packet import MalformedPacket, Packet

ZERO_AUTHENTICATOR = bytes(16)
MESSAGE_AUTHENTICATOR = 80
MA_HEADER = b"\x50\x12"  # type 80, length 18
USER_PASSWORD = 2
CHAP_PASSWORD = 3
CHAP_CHALLENGE = 60
MAX_PASSWORD_LEN = 128  # RFC 2865 section 5.2

md5 = hashlib.md5

# Codes whose own authenticator field holds zeros while the M-A is computed.
_ZERO_VECTOR_REQUESTS = frozenset({4, 40, 43})
_RANDOM_VECTOR_REQUESTS = frozenset({1, 12})
_ACCOUNTING_RESPONSE = 5
_STATUS_SERVER = 12

# HMAC-MD5 with the key schedule done once per secret: an inner and an outer MD5
# state copied per message. Half the cost of hmac.new() on this machine, and the
# gateway has one secret per client, so the cache stays small.
_HMAC_STATES: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}
_HMAC_CACHE_MAX = 4096


def hmac_md5(secret: bytes, message: bytes) -> bytes:
    """HMAC-MD5 of ``message`` under ``secret`` (RFC 2104), 16 octets."""
    states = _HMAC_STATES.get(secret)
    if states is None:
        key = md5(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\x00")
        states = (
            md5(bytes(b ^ 0x36 for b in key)),
            md5(bytes(b ^ 0x5C for b in key)),
        )
        if len(_HMAC_STATES) >= _HMAC_CACHE_MAX:
            _HMAC_STATES.clear()  # bounded; a rebuild costs two MD5 blocks
        _HMAC_STATES[secret] = states
    inner = states[0].copy()
    inner.update(message)
    outer = states[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def request_authenticator(header: bytes, attributes: bytes, secret: bytes) -> bytes:
    """The RFC 2866 Request Authenticator of an Accounting/Disconnect/CoA-Request.

    ``header`` is Code+Identifier+Length (4 octets).
    """
    return md5(header + ZERO_AUTHENTICATOR + attributes + secret).digest()


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide a User-Password as RFC 2865 section 5.2 says (pad with NULs to 16n octets).

    Raises ``ValueError`` for a password longer than 128 octets.
    """
    if len(password) > MAX_PASSWORD_LEN:
        raise ValueError(f"User-Password longer than {MAX_PASSWORD_LEN} octets")
    # An empty password is still one block (pyrad and FreeRADIUS do the same).
    padded = password + b"\x00" * (-len(password) % 16 if password else 16)
    out = []
    last = authenticator
    for i in range(0, len(padded), 16):
        block = _xor16(md5(secret + last).digest(), padded[i : i + 16])
        out.append(block)
        last = block
    return b"".join(out)


def reveal_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes | None:
    """Undo ``hide_password``: the password octets without the NUL padding.

    ``None`` when ``hidden`` is not 16 to 128 octets in steps of 16 (malformed).
    """
    if not hidden or len(hidden) % 16 or len(hidden) > MAX_PASSWORD_LEN:
        return None
    out = []
    last = authenticator
    for i in range(0, len(hidden), 16):
        block = hidden[i : i + 16]
        out.append(_xor16(md5(secret + last).digest(), block))
        last = block
    return b"".join(out).rstrip(b"\x00")


def _first(packet: Packet, key: int) -> bytes | None:
    # By wire key, not by name: a profile's dictionary may name these differently.
    values = packet.raw_values(key)
    return values[0] if values else None


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(16)


# --- checks on received packets ----------------------------------------------------


def verify_accounting_request(packet: Packet, secret: bytes) -> bool:
    """Whether the Request Authenticator of a received Accounting-Request is right.

    RFC 2866 section 3: MD5(Code+Identifier+Length+16 zero octets+Attributes+Secret).
    The same formula authenticates Disconnect-Request and CoA-Request (RFC 5176
    section 3.3), so it accepts those too; any other code is ``False``.
    """
    if packet.code not in _ZERO_VECTOR_REQUESTS:
        return False
    raw = packet.raw
    expected = md5(raw[:4] + ZERO_AUTHENTICATOR + raw[20:] + secret).digest()
    return hmac.compare_digest(expected, packet.authenticator)


def verify_message_authenticator(
    packet: Packet,
    secret: bytes,
    *,
    request_authenticator: bytes | None = None,
    request_code: int | None = None,
) -> bool | None:
    """Check the Message-Authenticator of a received packet (RFC 3579 section 3.2).

    Returns ``None`` when the packet has none, ``True`` when it is right, and
    ``False`` when it is wrong, not 16 octets, or present more than once. For a
    reply, pass the ``request_authenticator`` of the request it answers (a
    ``ValueError`` otherwise) and, for an Accounting-Response to a Status-Server,
    ``request_code=12``.
    """
    offset = packet.message_authenticator_offset
    if offset == -1:
        return None
    if offset < 0:
        return False  # repeated, or not 16 octets
    code = packet.code
    if code in _RANDOM_VECTOR_REQUESTS:
        vector = packet.authenticator
    elif code in _ZERO_VECTOR_REQUESTS or (
        code == _ACCOUNTING_RESPONSE and request_code != _STATUS_SERVER
    ):
        vector = ZERO_AUTHENTICATOR
    elif request_authenticator is not None:
        vector = request_authenticator
    else:
        raise ValueError("a reply's Message-Authenticator needs the request authenticator")
    raw = packet.raw
    received = raw[offset : offset + 16]
    signed = raw[:4] + vector + raw[20:offset] + ZERO_AUTHENTICATOR + raw[offset + 16 :]
    return hmac.compare_digest(hmac_md5(secret, signed), received)


def verify_reply(
    reply: Packet,
    request_authenticator: bytes,
    secret: bytes,
    *,
    request_code: int | None = None,
    require_message_authenticator: bool = False,
) -> bool:
    """Whether ``reply`` really answers the request whose authenticator is given.

    Checks the Response Authenticator and, when present (or required — what a
    client should do for Access-Request, against BlastRADIUS), the
    Message-Authenticator. Matching the Identifier is the caller's business.
    """
    raw = reply.raw
    expected = md5(raw[:4] + request_authenticator + raw[20:] + secret).digest()
    if not hmac.compare_digest(expected, reply.authenticator):
        return False
    ok = verify_message_authenticator(
        reply, secret, request_authenticator=request_authenticator, request_code=request_code
    )
    if ok is None:
        return not require_message_authenticator
    return ok


def decrypt_user_password(packet: Packet, secret: bytes) -> str | None:
    """The clear-text User-Password of an Access-Request (RFC 2865 section 5.2).

    ``None`` when the packet has no User-Password. Raises ``MalformedPacket``
    (``bad_user_password``) when the hidden value is not 16..128 octets in steps
    of 16. With a wrong secret the result is garbage, not an error: octets that are
    not UTF-8 become U+FFFD. To check a password prefer ``verify_pap``.
    """
    hidden = _first(packet, USER_PASSWORD)
    if hidden is None:
        return None
    clear = reveal_password(hidden, secret, packet.authenticator)
    if clear is None:
        raise MalformedPacket("bad_user_password")
    return clear.decode("utf-8", "replace")


def verify_pap(packet: Packet, secret: bytes, password: str | bytes) -> bool:
    """Whether the User-Password of ``packet`` is ``password``, compared in constant time.

    ``False`` when there is no User-Password or it is malformed.
    """
    hidden = _first(packet, USER_PASSWORD)
    if hidden is None:
        return False
    clear = reveal_password(hidden, secret, packet.authenticator)
    if clear is None:
        return False
    expected = password.encode() if isinstance(password, str) else password
    return hmac.compare_digest(clear, expected)


def verify_chap(packet: Packet, password: str | bytes) -> bool:
    """Whether the CHAP-Password of an Access-Request matches ``password`` (RFC 2865 §2.2).

    The challenge is CHAP-Challenge when present, else the Request Authenticator.
    ``False`` when there is no CHAP-Password or it is not 17 octets. Unlike pyrad,
    a ``str`` password is used as given, not stripped.
    """
    chap = _first(packet, CHAP_PASSWORD)
    if chap is None or len(chap) != 17:
        return False
    challenge = _first(packet, CHAP_CHALLENGE)
    if challenge is None:
        challenge = packet.authenticator
    secret = password.encode() if isinstance(password, str) else password
    expected = md5(chap[:1] + secret + challenge).digest()
    return hmac.compare_digest(expected, chap[1:])
