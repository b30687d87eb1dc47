"""RADIUS packets as received: codes, the decoded ``Packet``, and the decoder.

Decoding is one pass that validates the framing and indexes the raw attribute
values by wire key (see ``gateway.radius.dictionary``); values are decoded on
access (``Packet.get``), since a request carries more attributes than the gateway
reads. Every malformation is one exception type, ``MalformedPacket``, whose
``reason`` is a stable metric label. Encoding is in ``gateway.radius.codec``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from gateway.radius.dictionary import (
    AttributeValue,
    Dictionary,
    UnknownAttribute,
    default_dictionary,
)


class PacketCode(IntEnum):
    """RADIUS packet codes (RFC 2865, 2866, 5176; Status-Server from RFC 5997)."""

    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45


MAX_PACKET_LEN = 4096  # RFC 2865 section 3
HEADER_LEN = 20

_REQUESTS: dict[int, PacketCode] = {
    c: c
    for c in (
        PacketCode.ACCESS_REQUEST,
        PacketCode.ACCOUNTING_REQUEST,
        PacketCode.STATUS_SERVER,
        PacketCode.DISCONNECT_REQUEST,
        PacketCode.COA_REQUEST,
    )
}
_REPLIES: dict[int, PacketCode] = {c: c for c in PacketCode if c not in _REQUESTS}
_ALL: dict[int, PacketCode] = {c: c for c in PacketCode}

REASONS = (
    "short",  # fewer than 20 octets
    "bad_code",  # a code this codec does not know, or not expected here
    "bad_length",  # the Length field is below 20 or above 4096
    "length_mismatch",  # the Length field says more than the datagram holds
    "bad_attribute_length",  # an attribute shorter than 2 or running past Length
    "bad_user_password",  # a hidden User-Password not 16..128 octets in steps of 16
)
"""Every ``MalformedPacket.reason``: stable, short, fit for a metric label."""

_VSA_HEAD = struct.Struct("!IBB").unpack_from  # vendor id, vendor type, vendor length


class MalformedPacket(Exception):
    """The octets are not a RADIUS packet this codec accepts; ``reason`` is in ``REASONS``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Attribute(NamedTuple):
    """One attribute as it appears on the wire, for iteration and logging.

    ``name`` is ``None`` for an attribute the dictionary does not define; ``value``
    is ``None`` for those and for values invalid for their type. A Vendor-Specific
    attribute that cannot be split into vendor attributes is kept whole as vendor
    0, number 26.
    """

    name: str | None
    vendor: int
    number: int
    raw: bytes
    value: AttributeValue | None


@dataclass(slots=True, eq=False, repr=False)
class Packet:
    """A decoded RADIUS packet.

    ``raw`` is the packet as received, cut at its Length field. ``index`` maps a
    wire key (see ``gateway.radius.dictionary``) to the raw values of that
    attribute in order of arrival; it is what ``get`` reads.
    ``message_authenticator_offset`` is where the Message-Authenticator value
    starts in ``raw``: -1 when absent, -2 when repeated or not 16 octets.
    """

    code: PacketCode
    identifier: int
    authenticator: bytes
    raw: bytes
    dictionary: Dictionary
    index: dict[int, list[bytes]]
    message_authenticator_offset: int = -1

    def get(self, name: str) -> AttributeValue | None:
        """The value of the first valid occurrence of attribute ``name``, or ``None``.

        Raises ``UnknownAttribute`` when the dictionary does not define ``name``.
        """
        d = self.dictionary.by_name.get(name)
        if d is None:
            raise UnknownAttribute(name)
        raws = self.index.get(d.key)
        if raws is not None:
            decode = d.decode
            for raw in raws:
                value = decode(raw)
                if value is not None:
                    return value
        return None

    def get_all(self, name: str) -> list[AttributeValue]:
        """The values of every valid occurrence of ``name``, in order (e.g. Cisco-AVPair)."""
        d = self.dictionary.attribute(name)
        decode = d.decode
        return [v for v in map(decode, self.index.get(d.key, ())) if v is not None]

    def get_str(self, name: str) -> str | None:
        """``get`` for an attribute whose values are ``str``; ``TypeError`` for another type."""
        value = self.get(name)
        if value is None or isinstance(value, str):
            return value
        raise TypeError(f"{name} is a {self.dictionary.attribute(name).type}, not a string")

    def get_int(self, name: str) -> int | None:
        """``get`` for an attribute whose values are ``int``; ``TypeError`` for another type."""
        value = self.get(name)
        if value is None or isinstance(value, int):
            return value
        raise TypeError(f"{name} is a {self.dictionary.attribute(name).type}, not an integer")

    def get_raw(self, name: str) -> bytes | None:
        """The raw octets of the first occurrence of ``name`` (valid or not), or ``None``."""
        raws = self.index.get(self.dictionary.attribute(name).key)
        return raws[0] if raws else None

    def get_all_raw(self, name: str) -> list[bytes]:
        """The raw octets of every occurrence of ``name``, in order."""
        return list(self.index.get(self.dictionary.attribute(name).key, ()))

    def raw_values(self, key: int) -> list[bytes]:
        """The raw values stored under wire ``key`` (``vendor << 8 | number``); may be empty."""
        return self.index.get(key, [])

    def value_name(self, name: str) -> str | None:
        """The VALUE name of integer attribute ``name`` (``"Interim-Update"``), if defined."""
        value = self.get(name)
        if isinstance(value, int):
            return self.dictionary.attribute(name).value_names.get(value)
        return None

    def __contains__(self, name: object) -> bool:
        """Whether the packet carries attribute ``name`` at all (valid or not)."""
        d = self.dictionary.by_name.get(name) if isinstance(name, str) else None
        return d is not None and d.key in self.index

    def attributes(self) -> list[Attribute]:
        """Every attribute in wire order, named and decoded where the dictionary allows."""
        by_key = self.dictionary.by_key
        out = []
        for vendor, number, raw in _walk(self.raw):
            d = by_key.get((vendor << 8) | number) if (vendor or number != 26) else None
            if d is None:
                out.append(Attribute(None, vendor, number, raw, None))
            else:
                out.append(Attribute(d.name, vendor, number, raw, d.decode(raw)))
        return out

    def unknown(self) -> list[Attribute]:
        """The attributes the dictionary does not define, or whose value is invalid."""
        return [a for a in self.attributes() if a.value is None]

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{a.name or (a.vendor, a.number)}={a.value!r}" for a in self.attributes()
        )
        return f"<Packet {self.code.name} id={self.identifier} [{pairs}]>"


# --- decoding ---------------------------------------------------------------------


def decode_request(data: bytes, dictionary: Dictionary | None = None) -> Packet:
    """Decode a request a server receives (Access/Accounting/Disconnect/CoA-Request,
    Status-Server). Raises ``MalformedPacket`` — and nothing else, for any octets.
    Octets after the Length field are padding and ignored (RFC 2865 section 3).
    """
    return _decode(data, _REQUESTS, dictionary or default_dictionary())


def decode_reply(data: bytes, dictionary: Dictionary | None = None) -> Packet:
    """Decode a reply a client receives; as ``decode_request`` but for reply codes."""
    return _decode(data, _REPLIES, dictionary or default_dictionary())


def decode_packet(data: bytes, dictionary: Dictionary | None = None) -> Packet:
    """Decode a packet of any known code; as ``decode_request``."""
    return _decode(data, _ALL, dictionary or default_dictionary())


def _decode(data: bytes, codes: Mapping[int, PacketCode], dictionary: Dictionary) -> Packet:
    # Hot path: one pass, plain indexing, no per-attribute function calls.
    size = len(data)
    if size < HEADER_LEN:
        raise MalformedPacket("short")
    code = codes.get(data[0])
    if code is None:
        raise MalformedPacket("bad_code")
    length = (data[2] << 8) | data[3]
    if length < HEADER_LEN or length > MAX_PACKET_LEN:
        raise MalformedPacket("bad_length")
    if length > size:
        raise MalformedPacket("length_mismatch")
    if length < size:
        data = data[:length]
    index: dict[int, list[bytes]] = {}
    ma = -1
    i = HEADER_LEN
    while i < length:
        if i + 2 > length:
            raise MalformedPacket("bad_attribute_length")
        kind = data[i]
        end = i + data[i + 1]
        if end > length or end < i + 2:
            raise MalformedPacket("bad_attribute_length")
        if kind == 26 and end - i >= 8:
            vendor, number, sub_length = _VSA_HEAD(data, i + 2)
            if vendor and sub_length == end - i - 6:
                # The usual VSA: one vendor attribute filling it.
                key = (vendor << 8) | number
                value = data[i + 8 : end]
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
                i = end
                continue
            subs = _split_vsa(data, i + 6, end, vendor) if vendor else None
            if subs is not None:
                for key, value in subs:
                    if key in index:
                        index[key].append(value)
                    else:
                        index[key] = [value]
                i = end
                continue
        elif kind == 80:
            ma = i + 2 if ma == -1 and end - i == 18 else -2
        # A standard attribute, or a Vendor-Specific one kept whole (undecodable).
        value = data[i + 2 : end]
        if kind in index:
            index[kind].append(value)
        else:
            index[kind] = [value]
        i = end
    return Packet(code, data[1], data[4:20], data, dictionary, index, ma)


def _split_vsa(data: bytes, start: int, end: int, vendor: int) -> list[tuple[int, bytes]] | None:
    """The (key, value) vendor attributes in ``data[start:end]``, or ``None`` when their
    lengths do not add up (the VSA is then kept whole, as pyrad and RFC 6929 do)."""
    out = []
    j = start
    base = vendor << 8
    while j < end:
        if j + 2 > end:
            return None
        sub_end = j + data[j + 1]
        if sub_end > end or sub_end < j + 2:
            return None
        out.append((base | data[j], data[j + 2 : sub_end]))
        j = sub_end
    return out


def _walk(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(vendor, number, value) of every attribute of an already validated packet."""
    i = HEADER_LEN
    while i < len(raw):
        kind, end = raw[i], i + raw[i + 1]
        if kind == 26 and end - i >= 8:
            vendor = int.from_bytes(raw[i + 2 : i + 6])
            subs = _split_vsa(raw, i + 6, end, vendor) if vendor else None
            if subs is not None:
                for key, value in subs:
                    yield vendor, key & 0xFF, value
                i = end
                continue
        yield 0, kind, raw[i + 2 : end]
        i = end
