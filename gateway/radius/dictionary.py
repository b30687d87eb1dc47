"""The attribute table the codec runs on, compiled once from a pyrad dictionary.

pyrad reads the FreeRADIUS-format dictionary files (and stays the reference codec
in the tests); this module turns its definitions into one flat table keyed two
ways — by name and by wire key — whose entries carry a ready-made decoder and
encoder for the attribute's data type. Building it costs milliseconds once;
afterwards no packet touches pyrad.

Wire key: a standard attribute's key is its number (1..255); a vendor attribute's
is ``vendor << 8 | number``, which never collides with a standard one because a
vendor id is at least 1.

Python types of decoded values (``AttributeValue``):

- ``string``: ``str``. Octets that are not UTF-8 are decoded with U+FFFD in place
  of each bad sequence, so a value is always a ``str``; the exact octets stay
  available through ``Packet.get_raw``.
- ``octets``, ``abinary``, ``tlv``, and every attribute with an ``encrypt=`` or
  ``has_tag`` flag: ``bytes``, as received (e.g. the hidden User-Password).
- ``integer``, ``date`` (seconds since the epoch), ``short``, ``byte``, ``signed``,
  ``integer64``: ``int``. VALUE names are looked up with ``Dictionary.value_name``.
- ``ipaddr`` and ``ipv6addr``: ``str`` in the usual text form (``"192.0.2.1"``,
  ``"2001:db8::1"``): cheap to make, and what configuration, logs and CDRs hold.
- ``ipv6prefix``, ``ifid``, ``ether``: ``str`` as pyrad formats them.

A value whose length does not fit its type (an ``integer`` of three octets) is
*invalid*: it decodes to ``None`` and the packet treats it as an unknown attribute,
as RFC 6929 section 2.8 asks, instead of failing the whole packet.
"""

from __future__ import annotations

import builtins
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from pyrad import tools as pyrad_tools
from pyrad.dictionary import Dictionary as PyradDictionary

AttributeValue = str | bytes | int
"""A decoded attribute value; see the module docstring for the type of each data type."""

EncodableValue = str | bytes | int | IPv4Address | IPv6Address
"""What the encoders accept: the decoded types, VALUE names for integers, address objects."""

Decoder = Callable[[bytes], AttributeValue | None]
Encoder = Callable[[EncodableValue], bytes]

DICTIONARY_DIR = Path(__file__).with_name("dictionaries")
"""The dictionaries shipped in the package; ``dictionary`` includes the others."""

VSA_TYPE = 26
MAX_VALUE_LEN = 253  # 255 minus the type and length octets
MAX_VSA_VALUE_LEN = 247  # minus the VSA header (2), vendor id (4) and vendor header (2)

_BYTE = tuple(bytes((i,)) for i in range(256))


class UnknownAttribute(KeyError):
    """An attribute name that the dictionary does not define (a programming or profile error)."""


@dataclass(frozen=True, slots=True)
class AttributeDef:
    """One compiled attribute definition.

    ``decode`` turns the raw value octets into the Python value, or ``None`` when the
    octets are invalid for the type. ``encode`` turns a Python value into the whole
    attribute on the wire (type, length, and for a vendor attribute the
    Vendor-Specific wrapper); it raises ``ValueError``/``TypeError`` for a value the
    type cannot carry.
    """

    name: str
    vendor: int
    number: int
    type: str
    encrypt: int = 0
    has_tag: bool = False
    values: Mapping[str, int] = field(default_factory=dict)
    value_names: Mapping[int, str] = field(default_factory=dict)
    key: int = field(init=False)
    python_type: builtins.type = field(init=False, repr=False)  # str, bytes or int
    decode: Decoder = field(init=False, repr=False, compare=False)
    encode: Encoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: fill the derived fields once
        set_(self, "key", wire_key(self.vendor, self.number))
        kind = _value_kind(self)
        set_(self, "python_type", _PYTHON_TYPES.get(kind, str))
        set_(self, "decode", _make_decoder(kind))
        set_(self, "encode", _make_encoder(self, kind))


def wire_key(vendor: int, number: int) -> int:
    """The table key of attribute ``number`` of ``vendor`` (0 for a standard attribute)."""
    return (vendor << 8) | number


class Dictionary:
    """The compiled attribute table: by name, by wire key, and the VALUE names.

    Build it with ``Dictionary.load(*paths)`` or ``Dictionary.from_pyrad(d)``; the
    dictionaries shipped with the gateway are ``default_dictionary()``. It is
    immutable once built and safe to share between packets and tasks.
    """

    __slots__ = ("by_key", "by_name", "pyrad", "vendors")

    def __init__(self, definitions: list[AttributeDef], pyrad: Any = None) -> None:
        self.by_name: dict[str, AttributeDef] = {}
        self.by_key: dict[int, AttributeDef] = {}
        self.vendors: dict[str, int] = {}
        self.pyrad: Any = pyrad
        for d in definitions:
            self.by_name[d.name] = d
            # Like pyrad, the last definition of a number names it when decoding.
            self.by_key[d.key] = d

    @classmethod
    def from_pyrad(cls, source: Any) -> Dictionary:
        """Compile a ``pyrad.dictionary.Dictionary``.

        TLV sub-attributes are left out (their parent decodes as raw ``bytes``); the
        attributes pyrad itself skipped (unsupported types, vendor formats other than
        1,1) are unknown to the table too.
        """
        vendors: dict[str, int] = dict(source.vendors.forward)
        definitions = []
        for name, attr in source.attributes.items():
            if attr.is_sub_attribute:
                continue
            values: dict[str, int] = {}
            if attr.type in _INTEGER_TYPES:
                for value_name, encoded in attr.values.forward.items():
                    values[value_name] = int.from_bytes(encoded, signed=attr.type == "signed")
            definitions.append(
                AttributeDef(
                    name=name,
                    vendor=vendors[attr.vendor] if attr.vendor else 0,
                    number=attr.code,
                    type=attr.type,
                    encrypt=attr.encrypt,
                    has_tag=attr.has_tag,
                    values=values,
                    # Several names for one number: the last one names it, as in pyrad.
                    value_names={number: value_name for value_name, number in values.items()},
                )
            )
        compiled = cls(definitions, source)
        compiled.vendors.update((k, v) for k, v in vendors.items() if k)
        return compiled

    @classmethod
    def load(cls, *paths: str | Path) -> Dictionary:
        """Read FreeRADIUS-format dictionary files with pyrad, in order, and compile them.

        Without paths, the gateway's own dictionaries. Later definitions replace
        earlier ones. Raises pyrad's ``ParseError`` or ``OSError`` for a bad file.
        """
        files = [str(p) for p in paths] or [str(DICTIONARY_DIR / "dictionary")]
        return cls.from_pyrad(PyradDictionary(*files))

    def attribute(self, name: str) -> AttributeDef:
        """The definition of ``name``; raises ``UnknownAttribute`` if there is none."""
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownAttribute(name) from None

    def lookup(self, vendor: int, number: int) -> AttributeDef | None:
        """The definition of attribute ``number`` of ``vendor`` (0: standard), if any."""
        return self.by_key.get(wire_key(vendor, number))

    def value_name(self, name: str, value: int) -> str | None:
        """The VALUE name of ``value`` for integer attribute ``name`` (``"Start"`` for 1)."""
        return self.attribute(name).value_names.get(value)

    def value_of(self, name: str, value_name: str) -> int:
        """The number behind VALUE ``value_name`` of ``name``; ``KeyError`` if undefined."""
        return self.attribute(name).values[value_name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.by_name)


@cache
def default_dictionary() -> Dictionary:
    """The gateway's shipped dictionaries, compiled on first use and shared."""
    return Dictionary.load()


# --- value kinds ---------------------------------------------------------------

_INTEGER_TYPES = frozenset({"integer", "date", "short", "byte", "signed", "integer64"})
_FIXED = {  # kind: (length, signed)
    "integer": (4, False),
    "date": (4, False),
    "short": (2, False),
    "byte": (1, False),
    "signed": (4, True),
    "integer64": (8, False),
}
_PYTHON_TYPES: dict[str, builtins.type] = {
    "string": str,
    "octets": bytes,
    **{kind: int for kind in _FIXED},
}


def _value_kind(d: AttributeDef) -> str:
    # Hidden and tagged values are not plain values of their type: keep the octets.
    if d.encrypt or d.has_tag or d.type in ("octets", "abinary", "tlv"):
        return "octets"
    return d.type


def _decode_string(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _decode_octets(raw: bytes) -> bytes:
    return raw


def _decode_integer(raw: bytes) -> int | None:
    # The most common case gets its own function: no table lookup, no signed flag.
    return int.from_bytes(raw) if len(raw) == 4 else None


def _decode_ipaddr(raw: bytes) -> str | None:
    return socket.inet_ntoa(raw) if len(raw) == 4 else None


def _decode_ipv6addr(raw: bytes) -> str | None:
    return str(IPv6Address(raw)) if len(raw) == 16 else None


def _make_decoder(kind: str) -> Decoder:
    if kind == "string":
        return _decode_string
    if kind == "octets":
        return _decode_octets
    if kind in ("integer", "date"):
        return _decode_integer
    if kind == "ipaddr":
        return _decode_ipaddr
    if kind == "ipv6addr":
        return _decode_ipv6addr
    if kind in _FIXED:
        size, signed = _FIXED[kind]

        def decode_fixed(raw: bytes) -> int | None:
            return int.from_bytes(raw, signed=signed) if len(raw) == size else None

        return decode_fixed

    # Rare types (ipv6prefix, ifid, ether): pyrad's own formatting, invalid -> None.
    def decode_other(raw: bytes) -> AttributeValue | None:
        try:
            value: AttributeValue = pyrad_tools.DecodeAttr(kind, raw)
        except Exception:  # pyrad raises ValueError, struct.error, ... for bad octets
            return None
        return value

    return decode_other


def _value_octets(d: AttributeDef, kind: str, value: EncodableValue) -> bytes:
    """The value octets of ``value`` for an attribute of ``kind`` (no header)."""
    if kind == "string":
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytes):
            return value
    elif kind == "octets":
        if isinstance(value, bytes):
            return value
    elif kind in _FIXED:
        if isinstance(value, str):
            try:
                value = d.values[value]
            except KeyError:
                raise ValueError(f"{d.name}: no VALUE named {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            size, signed = _FIXED[kind]
            try:
                return value.to_bytes(size, signed=signed)
            except OverflowError:
                raise ValueError(f"{d.name}: {value} does not fit a {kind}") from None
    elif kind == "ipaddr":
        if isinstance(value, str | IPv4Address):
            try:
                return socket.inet_pton(socket.AF_INET, str(value))
            except OSError:
                raise ValueError(f"{d.name}: not an IPv4 address: {value!r}") from None
    elif kind == "ipv6addr":
        if isinstance(value, str | IPv6Address):
            try:
                return socket.inet_pton(socket.AF_INET6, str(value))
            except OSError:
                raise ValueError(f"{d.name}: not an IPv6 address: {value!r}") from None
    else:
        try:
            return bytes(pyrad_tools.EncodeAttr(kind, value))
        except (TypeError, ValueError):
            raise
        except Exception as exc:  # struct.error, binascii.Error... from pyrad's encoders
            raise ValueError(f"{d.name}: {exc}") from exc
    raise TypeError(f"{d.name}: a {type(value).__name__} is not a {d.type} value")


def _make_encoder(d: AttributeDef, kind: str) -> Encoder:
    if d.encrypt:

        def encode_hidden(value: EncodableValue) -> bytes:
            # Hiding needs the packet's authenticator: encode_request does it.
            raise ValueError(f"{d.name} is hidden (encrypt={d.encrypt}); only requests carry it")

        return encode_hidden

    if d.vendor == 0:
        head = _BYTE[d.number]
        if kind in ("integer", "date"):
            pack_int = struct.Struct("!BBI").pack
            number = d.number

            def encode_integer(value: EncodableValue) -> bytes:
                if type(value) is int and 0 <= value <= 0xFFFFFFFF:
                    return pack_int(number, 6, value)
                return head + b"\x06" + _value_octets(d, kind, value)

            return encode_integer

        def encode_standard(value: EncodableValue) -> bytes:
            if type(value) is str and kind == "string":
                octets = value.encode()
            else:
                octets = _value_octets(d, kind, value)
            size = len(octets)
            if size > MAX_VALUE_LEN:
                raise ValueError(f"{d.name}: {size} octets do not fit an attribute")
            return b"".join((head, _BYTE[size + 2], octets))

        return encode_standard

    if d.vendor > 0xFFFFFFFF or d.number > 255:
        raise ValueError(f"{d.name}: vendor {d.vendor} attribute {d.number} not encodable")
    vendor_head = d.vendor.to_bytes(4) + _BYTE[d.number]

    def encode_vendor(value: EncodableValue) -> bytes:
        if type(value) is str and kind == "string":
            octets = value.encode()
        else:
            octets = _value_octets(d, kind, value)
        size = len(octets)
        if size > MAX_VSA_VALUE_LEN:
            raise ValueError(f"{d.name}: {size} octets do not fit a vendor attribute")
        return b"".join((b"\x1a", _BYTE[size + 8], vendor_head, _BYTE[size + 2], octets))

    return encode_vendor
