"""Differential tests: our codec against pyrad, the reference, on random packets.

Both directions: what we encode pyrad decodes to the same attributes and accepts
with its own authenticator checks; what pyrad encodes we decode to the same
attributes and accept with ours.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyrad import packet as pyrad_packet

from gateway.radius import (
    MalformedPacket,
    PacketCode,
    decode_packet,
    decode_reply,
    decode_request,
    decrypt_user_password,
    encode_reply,
    encode_request,
    verify_accounting_request,
    verify_message_authenticator,
    verify_reply,
)
from tests.unit.radius import reference as ref
from tests.unit.radius.strategies import (
    DICTIONARY,
    SECRETS,
    attribute_lists,
    authenticators,
    identifiers,
    passwords,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PYRAD_CLASSES: dict[int, Any] = {
    1: pyrad_packet.AuthPacket,
    4: pyrad_packet.AcctPacket,
    40: pyrad_packet.CoAPacket,
    43: pyrad_packet.CoAPacket,
}
_REPLY_CODES = {1: [2, 3, 11], 4: [5], 40: [41, 42], 43: [44, 45]}


def _pyrad_request(data: bytes, secret: bytes) -> Any:
    cls = _PYRAD_CLASSES[data[0]]
    return cls(packet=data, secret=secret, dict=DICTIONARY.pyrad)


def _assert_semantics(pkt: Any, attributes: list[tuple[str, Any]]) -> None:
    got = ref.semantic_attributes(pkt, DICTIONARY)
    got.pop("Message-Authenticator", None)
    got.pop("Proxy-State", None)
    assert got == ref.expected_attributes(attributes, DICTIONARY)


# --- our encoder, pyrad decoder and checks ------------------------------------------


@FAST
@given(
    code=st.sampled_from([4, 40, 43]),
    identifier=identifiers,
    attributes=attribute_lists,
    secret=SECRETS,
    ma=st.booleans(),
)
def test_our_computed_auth_requests_pass_pyrad(
    code: int, identifier: int, attributes: list[tuple[str, Any]], secret: bytes, ma: bool
) -> None:
    data = encode_request(code, identifier, attributes, secret, add_message_authenticator=ma)
    pkt = _pyrad_request(data, secret)
    _assert_semantics(pkt, attributes)
    if code == 4:
        assert pkt.VerifyAcctRequest()
    else:
        assert pkt.VerifyCoARequest()
    assert bool(pkt.message_authenticator) is ma
    if ma:
        assert pkt.verify_message_authenticator()
    ref.assert_same_decode(decode_request(data), data, DICTIONARY)


@FAST
@given(
    identifier=identifiers,
    attributes=attribute_lists,
    secret=SECRETS,
    authenticator=authenticators,
    password=st.none() | passwords,
)
def test_our_access_requests_pass_pyrad(
    identifier: int,
    attributes: list[tuple[str, Any]],
    secret: bytes,
    authenticator: bytes,
    password: str | None,
) -> None:
    if password is not None:
        attributes = [("User-Password", password), *attributes]
    data = encode_request(1, identifier, attributes, secret, authenticator=authenticator)
    pkt = _pyrad_request(data, secret)
    assert data[20] == 80  # Message-Authenticator first
    assert pkt.verify_message_authenticator()
    if password is not None:
        hidden = OrderedDict.__getitem__(pkt, 2)[0]
        assert pkt.PwDecrypt(hidden) == password
        assert decrypt_user_password(decode_request(data), secret) == password
        attributes = attributes[1:]
    got = ref.semantic_attributes(pkt, DICTIONARY)
    got.pop("User-Password", None)
    got.pop("Message-Authenticator")
    assert got == ref.expected_attributes(attributes, DICTIONARY)


@FAST
@given(
    request_code=st.sampled_from([1, 4, 40, 43]),
    data=st.data(),
    request_attributes=attribute_lists,
    reply_attributes=attribute_lists,
    proxy_states=st.lists(st.binary(min_size=1, max_size=20), max_size=2),
    secret=SECRETS,
    ma=st.none() | st.booleans(),
)
def test_our_replies_pass_pyrad_verify_reply(
    request_code: int,
    data: st.DataObject,
    request_attributes: list[tuple[str, Any]],
    reply_attributes: list[tuple[str, Any]],
    proxy_states: list[bytes],
    secret: bytes,
    ma: bool | None,
) -> None:
    code = data.draw(st.sampled_from(_REPLY_CODES[request_code]))
    states = [("Proxy-State", s) for s in proxy_states]
    raw_request = encode_request(request_code, 42, request_attributes + states, secret)
    request = decode_request(raw_request)
    raw_reply = encode_reply(request, code, reply_attributes, secret, add_message_authenticator=ma)
    pyrad_request = _pyrad_request(raw_request, secret)
    pyrad_reply = pyrad_request.CreateReply(packet=raw_reply)
    assert pyrad_reply.code == code
    assert pyrad_request.VerifyReply(pyrad_reply)
    expect_ma = code in (2, 3, 11) if ma is None else ma
    assert bool(pyrad_reply.message_authenticator) is expect_ma
    assert (raw_reply[20:21] == b"\x50") is expect_ma  # first when present
    _assert_semantics(pyrad_reply, reply_attributes)
    assert OrderedDict.get(pyrad_reply, 33, []) == proxy_states
    # And our own client-side check agrees.
    reply = decode_reply(raw_reply)
    assert verify_reply(reply, request.authenticator, secret, request_code=request_code)
    assert not verify_reply(reply, request.authenticator, secret + b"x")
    ref.assert_same_decode(reply, raw_reply, DICTIONARY)


# --- pyrad's encoder, our decoder and checks -------------------------------------


def _pyrad_build(cls: Any, code: int, attributes: list[tuple[str, Any]], secret: bytes) -> Any:
    pkt = cls(code=code, id=17, secret=secret, dict=DICTIONARY.pyrad)
    for name, value in attributes:
        pkt.AddAttribute(name, value)
    return pkt


@FAST
@given(attributes=attribute_lists, secret=SECRETS, code=st.sampled_from([4, 40, 43]))
def test_pyrad_computed_auth_requests_pass_ours(
    attributes: list[tuple[str, Any]], secret: bytes, code: int
) -> None:
    pkt = _pyrad_build(_PYRAD_CLASSES[code], code, attributes, secret)
    data = pkt.RequestPacket()
    ours = decode_request(data)
    assert verify_accounting_request(ours, secret)
    assert not verify_accounting_request(ours, secret + b"x")
    assert verify_message_authenticator(ours, secret) is None
    ref.assert_same_decode(ours, data, DICTIONARY)
    got = {name: ours.get_all(name) for name in ref.expected_attributes(attributes, DICTIONARY)}
    assert got == ref.expected_attributes(attributes, DICTIONARY)


@FAST
@given(attributes=attribute_lists, secret=SECRETS, password=passwords)
def test_pyrad_access_request_and_reply_pass_ours(
    attributes: list[tuple[str, Any]], secret: bytes, password: str
) -> None:
    pkt = _pyrad_build(pyrad_packet.AuthPacket, 1, attributes, secret)
    pkt.add_message_authenticator()
    pkt["User-Password"] = pkt.PwCrypt(password)
    data = pkt.RequestPacket()
    ours = decode_request(data)
    assert verify_message_authenticator(ours, secret) is True
    assert verify_message_authenticator(ours, secret + b"x") is False
    assert decrypt_user_password(ours, secret) == password
    ref.assert_same_decode(ours, data, DICTIONARY)

    reply = pkt.CreateReply()
    for name, value in attributes:
        reply.AddAttribute(name, value)
    raw_reply = reply.ReplyPacket()
    ours_reply = decode_reply(raw_reply)
    assert ours_reply.code == PacketCode.ACCESS_ACCEPT
    assert verify_reply(ours_reply, ours.authenticator, secret, require_message_authenticator=True)
    ref.assert_same_decode(ours_reply, raw_reply, DICTIONARY)


# --- arbitrary octets: same verdict, same content ---------------------------------


def _check_against_pyrad(data: bytes) -> None:
    try:
        ours = decode_packet(data)
    except MalformedPacket as exc:
        try:
            ref.pyrad_decode(data, DICTIONARY)
        except pyrad_packet.PacketError:
            return  # both refuse
        # pyrad accepts some packets we refuse; only for the documented reasons.
        assert exc.reason in ("bad_attribute_length", "bad_length", "bad_code"), exc.reason
        return
    pkt = ref.pyrad_decode(data, DICTIONARY)  # must not raise when we accept
    assume(not ref.has_vendor_zero(pkt))
    ref.assert_same_decode(ours, data, DICTIONARY)


@settings(max_examples=300, deadline=None)
@given(
    attributes=attribute_lists,
    secret=SECRETS,
    position=st.integers(min_value=0, max_value=4095),
    octet=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=4096),
)
def test_mutated_packets_decode_like_pyrad(
    attributes: list[tuple[str, Any]], secret: bytes, position: int, octet: int, cut: int
) -> None:
    data = bytearray(encode_request(4, 1, attributes, secret))
    data[position % len(data)] = octet
    _check_against_pyrad(bytes(data))
    _check_against_pyrad(bytes(data[:cut]))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=300))
def test_random_octets_decode_like_pyrad(data: bytes) -> None:
    # Give random octets a plausible header so the attribute walk gets exercised.
    framed = bytes([4, 0]) + len(data).to_bytes(2) + data[4:]
    _check_against_pyrad(framed)
    _check_against_pyrad(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # attribute Length past the packet: pyrad truncates it silently
        (bytes([4, 1, 0, 24]) + bytes(16) + bytes([1, 9, 65, 65]), "bad_attribute_length"),
        # 4097..8192 octets: RFC 2865 says at most 4096, pyrad allows 8192
        (bytes([4, 1, 0x10, 0x01]) + bytes(16) + bytes([18, 255] + [65] * 253) * 17, "bad_length"),
    ],
)
def test_known_stricter_than_pyrad(data: bytes, reason: str) -> None:
    ref.pyrad_decode(data, DICTIONARY)  # pyrad takes it
    with pytest.raises(MalformedPacket) as info:
        decode_packet(data)
    assert info.value.reason == reason


def test_pyrad_quirks_that_normalise_absorbs() -> None:
    secret = b"s"
    data = encode_request(
        4,
        1,
        [("Acct-Status-Type", "Interim-Update"), ("User-Name", b"\xff\xfeA")],
        secret,
    )
    pkt = ref.pyrad_decode(data, DICTIONARY)
    assert pkt["Acct-Status-Type"] == ["Interim-Update"]  # VALUE name, not 3
    assert pkt["User-Name"] == [b"\xff\xfeA"]  # bytes, not str
    ours = decode_request(data)
    assert ours.get("Acct-Status-Type") == 3
    assert ours.value_name("Acct-Status-Type") == "Interim-Update"
    assert ours.get("User-Name") == "\ufffd\ufffdA"
    assert ours.get_raw("User-Name") == b"\xff\xfeA"
    # A VSA with vendor id 0: pyrad splits it, we keep it whole.
    vsa = bytes([26, 9, 0, 0, 0, 0, 1, 3, 65])
    raw = bytes([4, 1, 0, 20 + len(vsa)]) + bytes(16) + vsa
    assert ref.has_vendor_zero(ref.pyrad_decode(raw, DICTIONARY))
    assert decode_packet(raw).unknown()[0][1:4] == (0, 26, vsa[2:])
