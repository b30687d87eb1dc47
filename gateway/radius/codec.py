"""RADIUS wire format: bytes ⇄ packets, on the compiled attribute table.

The codec layer of the RADIUS front (STYLE.md point 1): no sockets, no business
rules. ``decode_request``/``decode_reply`` (from ``gateway.radius.packet``) turn a
datagram into a ``Packet`` or raise ``MalformedPacket``; ``encode_reply`` and
``encode_request`` (here) build datagrams with their authenticators. The checks on
received packets (Message-Authenticator, accounting Request Authenticator, PAP,
CHAP) live in ``gateway.radius.auth``. This module re-exports all of it: it is the
one import the listener, the process layer and the CoA client need.

pyrad stays the dictionary reader and the reference codec: the differential tests
in ``tests/unit/radius`` prove this codec decodes and encodes what pyrad does, at a
fraction of the cost (see ``tests/bench/test_radius_codec_bench.py``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from gateway.radius import auth
from gateway.radius.auth import (
    MA_HEADER,
    ZERO_AUTHENTICATOR,
    decrypt_user_password,
    hmac_md5,
    verify_accounting_request,
    verify_chap,
    verify_message_authenticator,
    verify_pap,
    verify_reply,
)
from gateway.radius.dictionary import (
    AttributeDef,
    Dictionary,
    EncodableValue,
    default_dictionary,
)
from gateway.radius.packet import (
    HEADER_LEN,
    MAX_PACKET_LEN,
    REASONS,
    Attribute,
    MalformedPacket,
    Packet,
    PacketCode,
    decode_packet,
    decode_reply,
    decode_request,
)

__all__ = [
    "MAX_PACKET_LEN",
    "REASONS",
    "Attribute",
    "MalformedPacket",
    "Packet",
    "PacketCode",
    "decode_packet",
    "decode_reply",
    "decode_request",
    "decrypt_user_password",
    "encode_reply",
    "encode_request",
    "verify_accounting_request",
    "verify_chap",
    "verify_message_authenticator",
    "verify_pap",
    "verify_reply",
]

# Which reply codes answer which request code.
_ANSWERS = {
    PacketCode.ACCESS_REQUEST: frozenset({2, 3, 11}),
    PacketCode.ACCOUNTING_REQUEST: frozenset({5}),
    PacketCode.STATUS_SERVER: frozenset({2, 5}),
    PacketCode.DISCONNECT_REQUEST: frozenset({41, 42}),
    PacketCode.COA_REQUEST: frozenset({44, 45}),
}
# Replies that carry a Message-Authenticator unless told otherwise (RFC 3579 §3.2,
# BlastRADIUS): every answer to an Access-Request.
_SIGNED_REPLIES = frozenset({2, 3, 11})
# Requests whose Request Authenticator is random (the others' is computed).
_RANDOM_AUTH_REQUESTS = frozenset({PacketCode.ACCESS_REQUEST, PacketCode.STATUS_SERVER})
_REQUEST_CODES = frozenset(_ANSWERS)

_HEADER = struct.Struct("!BBH")
_PROXY_STATE = 33
_BYTE = tuple(bytes((i,)) for i in range(256))


# --- encoding ---------------------------------------------------------------------


def _encode_attributes(
    dictionary: Dictionary, attributes: Iterable[tuple[str, EncodableValue]]
) -> list[bytes]:
    by_name = dictionary.by_name
    try:
        return [by_name[name].encode(value) for name, value in attributes]
    except KeyError:
        for name, _ in attributes:
            dictionary.attribute(name)  # raises UnknownAttribute for the culprit
        raise


def encode_reply(
    request: Packet,
    code: int,
    attributes: Iterable[tuple[str, EncodableValue]],
    secret: bytes,
    *,
    add_message_authenticator: bool | None = None,
    copy_proxy_state: bool = True,
) -> bytes:
    """The datagram answering ``request`` with ``code`` and ``attributes``, in order.

    - The Identifier is the request's; the Response Authenticator is computed as
      RFC 2865 section 3 says.
    - A Message-Authenticator is put FIRST when ``add_message_authenticator`` is
      true, by default for Access-Accept/Reject/Challenge (RFC 3579 section 3.2,
      BlastRADIUS) and for any answer to Status-Server (RFC 5997). It is computed
      before the Response Authenticator, over the reply with the request's
      authenticator in the authenticator field (16 zero octets in an
      Accounting-Response to an Accounting-Request, as FreeRADIUS does).
    - The request's Proxy-State attributes are appended unchanged and in order
      (RFC 2865 section 5.33) unless ``copy_proxy_state`` is false.

    Raises ``ValueError`` when ``code`` does not answer the request's code, for a
    value its attribute cannot carry or a packet over 4096 octets; ``TypeError`` for
    a value of the wrong type; ``UnknownAttribute`` for an undefined name.
    """
    answers = _ANSWERS.get(request.code)
    if answers is None or code not in answers:
        raise ValueError(f"code {code} does not answer a {request.code.name}")
    parts = _encode_attributes(request.dictionary, attributes)
    if copy_proxy_state:
        for state in request.index.get(_PROXY_STATE, ()):
            parts.append(b"".join((b"\x21", _BYTE[len(state) + 2], state)))
    body = b"".join(parts)
    if add_message_authenticator is None:
        # RFC 5997 section 3: every answer to Status-Server is signed too.
        add_message_authenticator = (
            code in _SIGNED_REPLIES or request.code == PacketCode.STATUS_SERVER
        )
    if add_message_authenticator:
        length = HEADER_LEN + 18 + len(body)
        header = _header(code, request.identifier, length)
        if code == PacketCode.ACCOUNTING_RESPONSE and request.code != PacketCode.STATUS_SERVER:
            vector = ZERO_AUTHENTICATOR
        else:
            vector = request.authenticator
        mac = hmac_md5(secret, b"".join((header, vector, MA_HEADER, ZERO_AUTHENTICATOR, body)))
        body = b"".join((MA_HEADER, mac, body))
    else:
        header = _header(code, request.identifier, HEADER_LEN + len(body))
    return b"".join(
        (header, auth.md5(b"".join((header, request.authenticator, body, secret))).digest(), body)
    )


def encode_request(
    code: int,
    identifier: int,
    attributes: Iterable[tuple[str, EncodableValue]],
    secret: bytes,
    *,
    authenticator: bytes | None = None,
    add_message_authenticator: bool | None = None,
    dictionary: Dictionary | None = None,
) -> bytes:
    """The datagram of a request, as a client (tests, load generator, CoA client) sends it.

    - Access-Request, Status-Server: the Request Authenticator is ``authenticator``
      or 16 random octets; User-Password (any ``encrypt=1`` attribute) is given in
      clear and hidden per RFC 2865 section 5.2; a Message-Authenticator is put
      first unless ``add_message_authenticator`` is false.
    - Accounting-Request, Disconnect-Request, CoA-Request: the Request
      Authenticator is computed (RFC 2866 section 3, RFC 5176 section 2.3), so
      ``authenticator`` must be ``None``; a Message-Authenticator (off by default)
      is computed first, with 16 zero octets as the authenticator.

    The request's authenticator is ``datagram[4:20]`` (needed by ``verify_reply``).
    Raises ``ValueError`` for a reply code, an identifier outside 0..255, a value
    that does not fit, or a packet over 4096 octets.
    """
    dictionary = dictionary or default_dictionary()
    if code not in _REQUEST_CODES:
        raise ValueError(f"{code} is not a request code")
    if not 0 <= identifier <= 255:
        raise ValueError(f"identifier {identifier} is not 0..255")
    random_auth = code in _RANDOM_AUTH_REQUESTS
    if random_auth:
        authenticator = authenticator if authenticator is not None else os.urandom(16)
        if len(authenticator) != 16:
            raise ValueError("an authenticator is 16 octets")
    elif authenticator is not None:
        raise ValueError(f"the authenticator of code {code} is computed, not given")
    parts = []
    for name, value in attributes:
        d = dictionary.attribute(name)
        if d.encrypt:
            parts.append(_hidden_attribute(d, value, secret, authenticator))
        else:
            parts.append(d.encode(value))
    body = b"".join(parts)
    if add_message_authenticator is None:
        add_message_authenticator = random_auth
    length = HEADER_LEN + len(body) + (18 if add_message_authenticator else 0)
    header = _header(code, identifier, length)
    vector = authenticator if authenticator is not None else ZERO_AUTHENTICATOR
    if add_message_authenticator:
        mac = hmac_md5(secret, b"".join((header, vector, MA_HEADER, ZERO_AUTHENTICATOR, body)))
        body = b"".join((MA_HEADER, mac, body))
    if authenticator is None:
        authenticator = auth.request_authenticator(header, body, secret)
    return b"".join((header, authenticator, body))


def _hidden_attribute(
    d: AttributeDef, value: EncodableValue, secret: bytes, authenticator: bytes | None
) -> bytes:
    if d.encrypt != 1 or authenticator is None or d.vendor:
        raise ValueError(f"{d.name}: only User-Password hiding in Access-Request is supported")
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise TypeError(f"{d.name}: a password is str or bytes")
    hidden = auth.hide_password(value, secret, authenticator)
    return b"".join((_BYTE[d.number], _BYTE[len(hidden) + 2], hidden))


def _header(code: int, identifier: int, length: int) -> bytes:
    if length > MAX_PACKET_LEN:
        raise ValueError(f"packet of {length} octets is over {MAX_PACKET_LEN}")
    return _HEADER.pack(code, identifier, length)
