"""No octets make the codec raise anything but MalformedPacket, nor its accessors fail."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.radius import (
    REASONS,
    MalformedPacket,
    Packet,
    decode_packet,
    decode_reply,
    decode_request,
    decrypt_user_password,
    encode_reply,
    encode_request,
    verify_accounting_request,
    verify_chap,
    verify_message_authenticator,
    verify_pap,
    verify_reply,
)
from tests.unit.radius.strategies import DICTIONARY, SECRETS, attribute_lists

NAMES = sorted(DICTIONARY.by_name)


def _exercise(p: Packet) -> None:
    """Everything a listener or process layer may do with a received packet."""
    for name in NAMES:
        p.get(name)
        p.get_all(name)
        p.get_raw(name)
        _ = name in p
        p.value_name(name)
    # The ordered view and the index the getters read agree.
    grouped: dict[int, list[bytes]] = {}
    for a in p.attributes():
        key = (a.vendor << 8) | a.number
        grouped.setdefault(key, []).append(a.raw)
    assert grouped == p.index
    p.unknown()
    repr(p)
    secret = b"s"
    verify_accounting_request(p, secret)
    verify_message_authenticator(p, secret, request_authenticator=bytes(16))
    verify_reply(p, bytes(16), secret)
    verify_pap(p, secret, "pw")
    verify_chap(p, "pw")
    try:
        decrypt_user_password(p, secret)
    except MalformedPacket as exc:
        assert exc.reason == "bad_user_password"
    # A request we accepted can be answered.
    if p.code in (1, 4, 12, 40, 43):
        answer = {1: 3, 4: 5, 12: 2, 40: 42, 43: 45}[p.code]
        decode_reply(encode_reply(p, answer, [("Reply-Message", "no")], secret))


def _decode_all_ways(data: bytes) -> None:
    for decode in (decode_packet, decode_request, decode_reply):
        try:
            p = decode(data)
        except MalformedPacket as exc:
            assert exc.reason in REASONS
            continue
        # What we accept, we can walk and re-frame identically.
        assert p.raw == data[: len(p.raw)]
        _exercise(p)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_octets(data: bytes) -> None:
    _decode_all_ways(data)


@settings(max_examples=500, deadline=None)
@given(
    code=st.sampled_from([1, 4, 40, 43, 12]),
    attributes=attribute_lists,
    secret=SECRETS,
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 4096),
    extra=st.binary(max_size=20),
)
def test_mutated_valid_packets(
    code: int,
    attributes: list[tuple[str, Any]],
    secret: bytes,
    edits: list[tuple[int, int]],
    cut: int | None,
    extra: bytes,
) -> None:
    data = bytearray(encode_request(code, 1, attributes, secret))
    _decode_all_ways(bytes(data))
    for position, octet in edits:
        data[position % len(data)] = octet
    data = data[:cut] + extra if cut is not None else data + extra
    _decode_all_ways(bytes(data))


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.lists(
        st.tuples(
            st.integers(0, 255),
            st.binary(max_size=30),
            st.integers(0, 2**32 - 1),
            st.booleans(),
        ),
        max_size=10,
    )
)
def test_well_framed_garbage_attributes(attributes: list[tuple[int, bytes, int, bool]]) -> None:
    # Framing right, contents arbitrary: every attribute decodes or is kept as unknown.
    body = b""
    for kind, value, vendor, as_vsa in attributes:
        if as_vsa:
            inner = vendor.to_bytes(4) + bytes([kind, len(value) + 2]) + value
            body += bytes([26, len(inner) + 2]) + inner
        else:
            body += bytes([kind, len(value) + 2]) + value
    data = bytes([4, 1]) + (20 + len(body)).to_bytes(2) + bytes(16) + body
    p = decode_request(data)
    _exercise(p)
    total = sum(len(v) for v in p.index.values())
    assert total <= len(body)
