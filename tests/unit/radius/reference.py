"""pyrad as the reference codec: its view of a packet, normalised for comparison.

pyrad's quirks that the normalisation absorbs (each one is checked by a test):

- an integer whose octets match a VALUE comes back as the VALUE *name*;
- a ``string`` that is not UTF-8 comes back as ``bytes`` (ours: ``str`` with U+FFFD);
- User-Password is decoded as a ``string`` (so sometimes ``str``, sometimes
  ``bytes``) although it is hidden octets (ours: always the raw ``bytes``);
- a value invalid for its type raises ``ValueError`` when *read*, not when decoded
  (ours: ``None``, the attribute counted as unknown);
- attributes are grouped by key (an ``OrderedDict``), so the wire order between
  different attributes is lost; only the order within one attribute is kept;
- a VSA with vendor id 0 is split into ``(0, type)`` keys (ours: kept whole as 26);
- an attribute whose Length runs past the packet is silently truncated (ours:
  ``MalformedPacket("bad_attribute_length")``), and packets up to 8192 octets are
  accepted (ours: RFC 2865's 4096).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pyrad import packet as pyrad_packet

from gateway.radius import Dictionary, Packet
from gateway.radius.dictionary import AttributeDef, wire_key

INVALID = object()  # a value pyrad refuses to decode


def pyrad_decode(data: bytes, dictionary: Dictionary, secret: bytes = b"") -> Any:
    """pyrad's Packet for ``data`` (raises pyrad.packet.PacketError like pyrad does)."""
    return pyrad_packet.Packet(packet=data, dict=dictionary.pyrad, secret=secret)


def raw_index(pkt: Any) -> dict[int, list[bytes]]:
    """pyrad's raw values by our wire key."""
    out: dict[int, list[bytes]] = {}
    for key in OrderedDict.keys(pkt):
        values = OrderedDict.__getitem__(pkt, key)
        wk = wire_key(key[0], key[1]) if isinstance(key, tuple) else key
        out[wk] = list(values)
    return out


def has_vendor_zero(pkt: Any) -> bool:
    return any(isinstance(k, tuple) and k[0] == 0 for k in OrderedDict.keys(pkt))


def normalise(d: AttributeDef, value: Any) -> Any:
    """A pyrad-decoded value as our codec represents it."""
    if value is INVALID:
        return None
    if d.encrypt:
        return value.encode() if isinstance(value, str) else value
    if isinstance(value, str) and d.python_type is int:
        return d.values[value]  # pyrad gave the VALUE name
    if isinstance(value, bytes) and d.python_type is str:
        return value.decode("utf-8", "replace")
    return value


def pyrad_value(pkt: Any, d: AttributeDef, raw: bytes) -> Any:
    attr = pkt.dict.attributes[d.name]
    try:
        return pkt._DecodeValue(attr, raw)
    except Exception:
        return INVALID


def assert_same_decode(ours: Packet, data: bytes, dictionary: Dictionary) -> None:
    """Our decode of ``data`` equals pyrad's: same raw values per attribute, same values."""
    pkt = pyrad_decode(data, dictionary)
    assert pkt.code == ours.code
    assert pkt.id == ours.identifier
    assert pkt.authenticator == ours.authenticator
    assert raw_index(pkt) == ours.index
    for key, raws in ours.index.items():
        d = dictionary.by_key.get(key)
        if d is None:
            continue
        expected = [normalise(d, pyrad_value(pkt, d, raw)) for raw in raws]
        assert [d.decode(raw) for raw in raws] == expected, d.name
        assert ours.get_all(d.name) == [v for v in expected if v is not None]
        assert ours.get(d.name) == next((v for v in expected if v is not None), None)


def semantic_attributes(pkt: Any, dictionary: Dictionary) -> dict[str, list[Any]]:
    """pyrad's decoded attributes by name, values normalised; unknown keys left out."""
    out: dict[str, list[Any]] = {}
    for key, raws in raw_index(pkt).items():
        d = dictionary.by_key.get(key)
        if d is not None:
            out[d.name] = [normalise(d, pyrad_value(pkt, d, raw)) for raw in raws]
    return out


def expected_attributes(
    attributes: list[tuple[str, Any]], dictionary: Dictionary
) -> dict[str, list[Any]]:
    """What an attribute list given to an encoder should decode to, by name."""
    out: dict[str, list[Any]] = {}
    for name, value in attributes:
        d = dictionary.attribute(name)
        if isinstance(value, str) and d.python_type is int:
            value = d.values[value]
        out.setdefault(name, []).append(value)
    return out
