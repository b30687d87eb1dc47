"""Decoding and encoding, case by case (the random cases are in test_differential/test_fuzz)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.radius import (
    REASONS,
    Dictionary,
    MalformedPacket,
    PacketCode,
    UnknownAttribute,
    decode_packet,
    decode_reply,
    decode_request,
    default_dictionary,
    encode_reply,
    encode_request,
    verify_message_authenticator,
    verify_reply,
)
from gateway.radius.dictionary import DICTIONARY_DIR

SECRET = b"testing123"
AUTH = bytes(range(16))


def _packet(code: int, attrs: bytes, identifier: int = 1, tail: bytes = b"") -> bytes:
    return bytes([code, identifier]) + (20 + len(attrs)).to_bytes(2) + AUTH + attrs + tail


def _attr(kind: int, value: bytes) -> bytes:
    return bytes([kind, len(value) + 2]) + value


def _vsa(vendor: int, *subs: tuple[int, bytes]) -> bytes:
    body = vendor.to_bytes(4) + b"".join(_attr(k, v) for k, v in subs)
    return _attr(26, body)


# --- decoding ---------------------------------------------------------------------


def test_header_fields_and_lazy_values() -> None:
    data = _packet(1, _attr(1, b"1001") + _attr(4, bytes([192, 0, 2, 1])) + _attr(27, b"\0\0\1\0"))
    p = decode_request(data)
    assert (p.code, p.identifier, p.authenticator, p.raw) == (1, 1, AUTH, data)
    assert p.code is PacketCode.ACCESS_REQUEST
    assert p.get("User-Name") == "1001"
    assert p.get("NAS-IP-Address") == "192.0.2.1"
    assert p.get("Session-Timeout") == 256
    assert p.get("Called-Station-Id") is None
    assert p.get_all("Called-Station-Id") == []
    assert "User-Name" in p and "Called-Station-Id" not in p and 1 not in p
    assert p.message_authenticator_offset == -1


def test_vendor_attributes_by_name_and_repeats() -> None:
    attrs = (
        _vsa(9, (24, b"h323-conf-id=ABC"))
        + _vsa(9, (1, b"call-id=x@h"), (1, b"h323-ivr-out=y"))  # two in one VSA
        + _attr(1, b"u")
        + _vsa(9, (1, b"third"))
    )
    p = decode_request(_packet(4, attrs))
    assert p.get("h323-conf-id") == "h323-conf-id=ABC"
    assert p.get("Cisco-AVPair") == "call-id=x@h"
    assert p.get_all("Cisco-AVPair") == ["call-id=x@h", "h323-ivr-out=y", "third"]
    assert p.get_all_raw("Cisco-AVPair")[2] == b"third"
    names = [a.name for a in p.attributes()]
    assert names == ["h323-conf-id", "Cisco-AVPair", "Cisco-AVPair", "User-Name", "Cisco-AVPair"]
    assert p.unknown() == []


def test_unknown_and_invalid_attributes_are_kept() -> None:
    attrs = (
        _attr(1, b"alice")
        + _attr(224, b"\x01\x02")  # undefined standard attribute
        + _vsa(311, (1, b"ms"))  # undefined vendor
        + _attr(26, (9).to_bytes(4) + _attr(1, b"x") + b"\xc8\x05\x01")  # sub-lengths: bad
        + _attr(27, b"\x00\x01")  # integer of 2 octets: invalid
        + _attr(27, b"\x00\x00\x00\x05")  # a valid one after it
        + _attr(26, b"\x00\x00")  # VSA too short to split
        + _attr(4, b"\x01\x02\x03")  # ipaddr of 3 octets
    )
    p = decode_request(_packet(4, attrs))
    assert p.get("User-Name") == "alice"
    assert p.get("Session-Timeout") == 5  # first *valid* occurrence
    assert p.get_all("Session-Timeout") == [5]
    assert p.get_raw("Session-Timeout") == b"\x00\x01"
    assert p.get("NAS-IP-Address") is None and "NAS-IP-Address" in p
    unknown = [(a.name, a.vendor, a.number, a.raw) for a in p.unknown()]
    assert unknown == [
        (None, 0, 224, b"\x01\x02"),
        (None, 311, 1, b"ms"),
        (None, 0, 26, (9).to_bytes(4) + _attr(1, b"x") + b"\xc8\x05\x01"),
        ("Session-Timeout", 0, 27, b"\x00\x01"),
        (None, 0, 26, b"\x00\x00"),
        ("NAS-IP-Address", 0, 4, b"\x01\x02\x03"),
    ]
    assert p.raw_values(224) == [b"\x01\x02"]
    assert "Packet ACCOUNTING_REQUEST" in repr(p)


def test_strings_that_are_not_utf8() -> None:
    p = decode_request(_packet(4, _attr(1, b"caf\xe9")))
    assert p.get("User-Name") == "caf\ufffd"
    assert p.get_raw("User-Name") == b"caf\xe9"


def test_padding_after_length_is_ignored() -> None:
    data = _packet(4, _attr(1, b"a"), tail=b"\xff\xff\x00")
    p = decode_request(data)
    assert p.raw == data[:-3]
    assert p.get("User-Name") == "a"


def test_typed_getters() -> None:
    p = decode_request(_packet(4, _attr(1, b"a") + _attr(40, b"\0\0\0\3")))
    assert p.get_str("User-Name") == "a"
    assert p.get_int("Acct-Status-Type") == 3
    assert p.value_name("Acct-Status-Type") == "Interim-Update"
    assert p.value_name("User-Name") is None
    assert p.get_int("Acct-Session-Time") is None
    with pytest.raises(TypeError):
        p.get_int("User-Name")
    with pytest.raises(TypeError):
        p.get_str("Acct-Status-Type")
    with pytest.raises(UnknownAttribute):
        p.get("No-Such-Attribute")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (bytes(19), "short"),
        (bytes([99, 1, 0, 20]) + AUTH, "bad_code"),
        (bytes([0, 1, 0, 20]) + AUTH, "bad_code"),
        (bytes([4, 1, 0, 19]) + AUTH, "bad_length"),
        (bytes([4, 1, 0x10, 0x01]) + AUTH + bytes(4077), "bad_length"),
        (bytes([4, 1, 0, 30]) + AUTH, "length_mismatch"),
        (bytes([4, 1, 0, 21]) + AUTH + b"\x01", "bad_attribute_length"),
        (_packet(4, b"\x01\x01"), "bad_attribute_length"),
        (_packet(4, b"\x01\x00"), "bad_attribute_length"),
        (_packet(4, b"\x01\x05ab"), "bad_attribute_length"),
        (_packet(4, _attr(1, b"ok") + b"\x1a\x09\x00\x00"), "bad_attribute_length"),
    ],
)
def test_malformed_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode_packet(data)
    assert info.value.reason == reason
    assert reason in REASONS
    assert str(info.value) == reason


def test_direction_is_checked() -> None:
    request = _packet(1, b"")
    reply = _packet(2, b"")
    with pytest.raises(MalformedPacket, match="bad_code"):
        decode_reply(request)
    with pytest.raises(MalformedPacket, match="bad_code"):
        decode_request(reply)
    assert decode_packet(reply).code is PacketCode.ACCESS_ACCEPT


def test_message_authenticator_offset() -> None:
    ma = _attr(80, bytes(16))
    assert decode_request(_packet(1, _attr(1, b"a") + ma)).message_authenticator_offset == 25
    assert decode_request(_packet(1, ma + ma)).message_authenticator_offset == -2
    assert decode_request(_packet(1, _attr(80, bytes(15)))).message_authenticator_offset == -2


# --- encoding ---------------------------------------------------------------------


def _access_request(**kw: object) -> bytes:
    return encode_request(
        PacketCode.ACCESS_REQUEST,
        5,
        [("User-Name", "1001"), ("Proxy-State", b"p1"), ("Proxy-State", b"p2")],
        SECRET,
        authenticator=AUTH,
        **kw,  # type: ignore[arg-type]
    )


def test_reply_layout_message_authenticator_first_and_proxy_state_last() -> None:
    request = decode_request(_access_request())
    raw = encode_reply(
        request, 2, [("Session-Timeout", 60), ("h323-credit-time", "h323-credit-time=60")], SECRET
    )
    reply = decode_reply(raw)
    assert reply.identifier == 5
    names = [a.name for a in reply.attributes()]
    assert names == [
        "Message-Authenticator",
        "Session-Timeout",
        "h323-credit-time",
        "Proxy-State",
        "Proxy-State",
    ]
    assert reply.get_all("Proxy-State") == [b"p1", b"p2"]
    assert verify_reply(reply, AUTH, SECRET, require_message_authenticator=True)
    assert verify_message_authenticator(reply, SECRET, request_authenticator=AUTH)
    assert not verify_reply(reply, bytes(16), SECRET)


def test_reply_options() -> None:
    request = decode_request(_access_request())
    raw = encode_reply(
        request, 3, [], SECRET, add_message_authenticator=False, copy_proxy_state=False
    )
    assert len(raw) == 20
    reply = decode_reply(raw)
    assert verify_reply(reply, AUTH, SECRET)
    assert not verify_reply(reply, AUTH, SECRET, require_message_authenticator=True)
    with pytest.raises(ValueError, match="request authenticator"):
        verify_message_authenticator(decode_reply(encode_reply(request, 2, [], SECRET)), SECRET)


@pytest.mark.parametrize(
    ("request_code", "good", "bad"),
    [(1, 11, 5), (4, 5, 2), (40, 42, 44), (43, 44, 41), (12, 5, 3)],
)
def test_reply_code_must_answer_the_request(request_code: int, good: int, bad: int) -> None:
    auth = AUTH if request_code in (1, 12) else None
    request = decode_request(encode_request(request_code, 1, [], SECRET, authenticator=auth))
    assert decode_reply(encode_reply(request, good, [], SECRET)).code == good
    with pytest.raises(ValueError, match="does not answer"):
        encode_reply(request, bad, [], SECRET)


def test_accounting_response_message_authenticator_uses_zero_vector() -> None:
    request = decode_request(encode_request(4, 9, [("Acct-Status-Type", "Start")], SECRET))
    reply = decode_reply(encode_reply(request, 5, [], SECRET, add_message_authenticator=True))
    assert verify_reply(reply, request.authenticator, SECRET, require_message_authenticator=True)
    # ... and with the request authenticator after a Status-Server (RFC 5997).
    status = decode_request(encode_request(12, 3, [], SECRET))
    reply = decode_reply(encode_reply(status, 5, [], SECRET))  # signed by default (RFC 5997)
    assert reply.message_authenticator_offset == 22
    assert verify_reply(reply, status.authenticator, SECRET, request_code=12)
    assert not verify_reply(reply, status.authenticator, SECRET)


def test_encode_errors() -> None:
    request = decode_request(_access_request())
    with pytest.raises(UnknownAttribute):
        encode_reply(request, 2, [("No-Such", "x")], SECRET)
    with pytest.raises(ValueError, match="no VALUE"):
        encode_reply(request, 2, [("Service-Type", "Sideways")], SECRET)
    with pytest.raises(ValueError, match="does not fit"):
        encode_reply(request, 2, [("Session-Timeout", 2**32)], SECRET)
    with pytest.raises(ValueError, match="does not fit"):
        encode_reply(request, 2, [("Session-Timeout", -1)], SECRET)
    with pytest.raises(ValueError, match="no VALUE"):
        encode_reply(request, 2, [("Session-Timeout", "60")], SECRET)
    with pytest.raises(TypeError):
        encode_reply(request, 2, [("Session-Timeout", True)], SECRET)
    with pytest.raises(TypeError):
        encode_reply(request, 2, [("User-Name", 5)], SECRET)
    with pytest.raises(ValueError, match="octets do not fit"):
        encode_reply(request, 2, [("Reply-Message", "x" * 254)], SECRET)
    with pytest.raises(ValueError, match="octets do not fit"):
        encode_reply(request, 2, [("h323-currency", "x" * 248)], SECRET)
    with pytest.raises(ValueError, match="IPv4"):
        encode_reply(request, 2, [("Framed-IP-Address", "10.0.0")], SECRET)
    with pytest.raises(ValueError, match="hidden"):
        encode_reply(request, 2, [("User-Password", "x")], SECRET)
    with pytest.raises(ValueError, match="over 4096"):
        encode_reply(request, 2, [("Reply-Message", "x" * 253)] * 16, SECRET)


def test_encode_limits() -> None:
    request = decode_request(_access_request(add_message_authenticator=False))
    reply = decode_reply(
        encode_reply(
            request,
            2,
            [("Reply-Message", "é" * 126), ("h323-currency", "x" * 247)],
            SECRET,
        )
    )
    assert reply.get("Reply-Message") == "é" * 126
    assert reply.get("h323-currency") == "x" * 247


def test_encode_value_forms() -> None:
    from ipaddress import IPv4Address

    data = encode_request(
        4,
        1,
        [
            ("Acct-Status-Type", "Stop"),
            ("Acct-Terminate-Cause", 1),
            ("NAS-IP-Address", IPv4Address("192.0.2.7")),
            ("Framed-IP-Address", "198.51.100.1"),
            ("Class", b"\x00\x01"),
            ("User-Name", b"raw"),
            ("Event-Timestamp", 1_700_000_000),
        ],
        SECRET,
    )
    p = decode_request(data)
    assert [a.value for a in p.attributes()] == [
        2,
        1,
        "192.0.2.7",
        "198.51.100.1",
        b"\x00\x01",
        "raw",
        1_700_000_000,
    ]


def test_encode_request_rules() -> None:
    with pytest.raises(ValueError, match="not a request"):
        encode_request(2, 1, [], SECRET)
    with pytest.raises(ValueError, match="identifier"):
        encode_request(4, 256, [], SECRET)
    with pytest.raises(ValueError, match="computed"):
        encode_request(4, 1, [], SECRET, authenticator=AUTH)
    with pytest.raises(ValueError, match="16 octets"):
        encode_request(1, 1, [], SECRET, authenticator=b"short")
    with pytest.raises(ValueError, match="User-Password"):
        encode_request(4, 1, [("User-Password", "x")], SECRET)
    with pytest.raises(ValueError, match="longer than 128"):
        encode_request(1, 1, [("User-Password", "x" * 129)], SECRET)
    # Random authenticators differ; a given one is used.
    assert encode_request(1, 1, [], SECRET)[4:20] != encode_request(1, 1, [], SECRET)[4:20]
    assert _access_request()[4:20] == AUTH
    # Message-Authenticator: default on for Access-Request, off for accounting.
    assert _access_request()[20] == 80
    assert _access_request(add_message_authenticator=False)[20] == 1
    assert len(encode_request(4, 1, [], SECRET)) == 20


def test_a_profile_dictionary_encodes_and_decodes(tmp_path: Path) -> None:
    extra = tmp_path / "dictionary.acme"
    extra.write_text("ATTRIBUTE Acme-Leg 224 string\nATTRIBUTE Acme-Six 225 ipv6addr\n")
    d = Dictionary.load(DICTIONARY_DIR / "dictionary", extra)
    data = encode_request(
        4, 1, [("Acme-Leg", "answer"), ("Acme-Six", "2001:db8::1")], SECRET, dictionary=d
    )
    p = decode_request(data, d)
    assert p.get("Acme-Leg") == "answer"
    assert p.get("Acme-Six") == "2001:db8::1"
    # The default dictionary does not know it: kept as unknown.
    assert [a.number for a in decode_request(data).unknown()] == [224, 225]
    assert default_dictionary().lookup(0, 224) is None
