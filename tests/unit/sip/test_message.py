"""The SIP codec: parsing requests leniently, rejecting what transactions cannot use,
writing responses that copy what RFC 3261 §8.2.6 says to copy."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import (
    Answer,
    MalformedMessage,
    NotARequest,
    encode_response,
    frame,
    parse,
    parse_via,
    reply_address,
)
from gateway.sip.uri import addr_user, header_params, split_addr, split_values, uri_user

INVITE = (
    "INVITE sip:004930123456@gw.example;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a1;rport\r\n"
    "Via: SIP/2.0/TCP proxy.example;branch=z9hG4bK-b2\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:1001@pbx.example>;tag=from-1\r\n'
    "To: <sip:004930123456@gw.example>\r\n"
    "Call-ID: abc-123@10.0.0.1\r\n"
    "CSeq: 7 INVITE\r\n"
    "P-Asserted-Identity: <sip:+442071234567@pbx.example>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
)


def test_parses_a_request() -> None:
    req = parse(INVITE.encode())
    assert (req.method, req.uri) == ("INVITE", "sip:004930123456@gw.example;user=phone")
    assert req.call_id == "abc-123@10.0.0.1"
    assert req.cseq == (7, "INVITE")
    assert req.vias == [
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a1;rport",
        "SIP/2.0/TCP proxy.example;branch=z9hG4bK-b2",
    ]
    assert req.top_via.branch == "z9hG4bK-a1" and req.top_via.sent_by == "10.0.0.1:5060"
    assert req.from_tag == "from-1" and req.to_tag == ""
    assert req.body == b"v=0\n"


def test_compact_names_any_case_folding_bare_lf_and_list_values() -> None:
    text = (
        "invite sip:49301@x SIP/2.0\n"
        "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-2\n"
        "f: <sip:1001@x>\n"
        " ;tag=ft\n"
        "T: sip:49301@x\n"
        "i: cid\n"
        "cSeQ: 1 INVITE\n"
        "l: 0\n"
        "\n"
    )
    req = parse(text.encode())
    assert req.method == "INVITE"
    assert len(req.vias) == 2 and req.top_via.host == "10.0.0.1"
    assert req.header("from") == "<sip:1001@x> ;tag=ft" and req.from_tag == "ft"
    assert req.call_id == "cid"


def test_body_beyond_content_length_is_ignored_and_missing_length_takes_the_rest() -> None:
    assert parse(INVITE.encode() + b"junk").body == b"v=0\n"
    no_length = INVITE.replace("Content-Length: 4\r\n", "")
    assert parse(no_length.encode()).body == b"v=0\n"


def test_a_response_is_not_a_request() -> None:
    with pytest.raises(NotARequest):
        parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n\r\n")


@pytest.mark.parametrize(
    ("mutate", "reason", "answerable"),
    [
        (lambda t: t.replace("INVITE sip:", "INVITE  sip:", 1), "start_line", False),
        (lambda t: t.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1), "start_line", False),
        (lambda t: t.replace("CSeq: 7 INVITE", "CSeq: 7 BYE"), "bad_cseq", True),
        (lambda t: t.replace("CSeq: 7 INVITE", "CSeq: seven INVITE"), "bad_cseq", True),
        (lambda t: t.replace("Call-ID: abc-123@10.0.0.1\r\n", ""), "duplicate_header", False),
        (
            lambda t: t.replace("Call-ID: abc", "Call-ID: x\r\nCall-ID: abc"),
            "duplicate_header",
            True,
        ),
        (
            lambda t: t.replace("Via: SIP/2.0/UDP 10.0.0.1:5060", "Via: SIP/2.0/UDP"),
            "bad_via",
            False,
        ),
        (lambda t: t.replace("Via: SIP/2.0/UDP", "Via: HTTP/1.1/UDP"), "bad_via", False),
        (lambda t: t.replace("Content-Length: 4", "Content-Length: 40"), "truncated_body", True),
        (lambda t: t.replace("Content-Length: 4", "Content-Length: -1"), "content_length", True),
        (lambda t: t.replace("Max-Forwards: 70", "Max Forwards 70"), "header_line", False),
    ],
)
def test_malformed_requests_say_why_and_whether_a_400_can_be_sent(
    mutate: object, reason: str, answerable: bool
) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse(mutate(INVITE).encode())  # type: ignore[operator]
    assert caught.value.reason == reason
    assert (caught.value.answerable is not None) is answerable


def test_bad_utf8_and_huge_heads_are_malformed() -> None:
    with pytest.raises(MalformedMessage, match="encoding"):
        parse(INVITE.replace("Alice", "Al\udcffce").encode("utf-8", "surrogateescape"))
    with pytest.raises(MalformedMessage, match="too_large"):
        parse(INVITE.replace("Max-Forwards: 70", "X-Pad: " + "a" * 20_000).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage, NotARequest):
        parse(data)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(INVITE) - 1))
def test_truncated_requests_never_raise_anything_else(cut: int) -> None:
    with contextlib.suppress(MalformedMessage, NotARequest):
        parse(INVITE.encode()[:cut])


def test_via_forms() -> None:
    v6 = parse_via("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;received=1.2.3.4")
    assert (v6.transport, v6.host, v6.port, v6.branch) == ("TCP", "2001:db8::1", 5070, "z9hG4bKx")
    assert v6.sent_by == "[2001:db8::1]:5070"
    spaced = parse_via("SIP / 2.0 / udp host.example ;branch=z9hG4bKy ; rport")
    assert (spaced.transport, spaced.port, spaced.has("rport")) == ("UDP", None, True)
    for bad in ("SIP/2.0/UDP", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP [::1]x"):
        with pytest.raises(ValueError):
            parse_via(bad)


def test_response_copies_vias_from_to_call_id_cseq_and_adds_our_tag() -> None:
    req = parse(INVITE.encode())
    answer = Answer(302, "Moved Temporarily", (("Contact", "<sip:1@gw>;q=1.0"),))
    data = encode_response(req, answer, to_tag="t0", source=("192.0.2.7", 40000))
    lines = data.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 302 Moved Temporarily"
    assert lines[1] == (
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a1;received=192.0.2.7;rport=40000"
    )
    assert lines[2] == "Via: SIP/2.0/TCP proxy.example;branch=z9hG4bK-b2"
    assert lines[3] == 'From: "Alice" <sip:1001@pbx.example>;tag=from-1'
    assert lines[4] == "To: <sip:004930123456@gw.example>;tag=t0"
    assert lines[5:8] == [
        "Call-ID: abc-123@10.0.0.1",
        "CSeq: 7 INVITE",
        "Contact: <sip:1@gw>;q=1.0",
    ]
    assert data.endswith(b"Content-Length: 0\r\n\r\n")


def test_response_keeps_an_existing_to_tag_and_100_gets_none() -> None:
    tagged = parse(INVITE.replace("gw.example>\r\n", "gw.example>;tag=theirs\r\n").encode())
    data = encode_response(tagged, Answer(481, "x"), to_tag="t0", source=("10.0.0.1", 5060))
    assert b"To: <sip:004930123456@gw.example>;tag=theirs\r\n" in data
    plain = parse(INVITE.encode())
    trying = encode_response(plain, Answer(100, "Trying"), to_tag="t0", source=("10.0.0.1", 5060))
    assert b"To: <sip:004930123456@gw.example>\r\n" in trying


def test_received_only_when_the_source_differs_and_no_rport() -> None:
    req = parse(INVITE.replace(";rport", "").encode())
    same = encode_response(req, Answer(200, "OK"), to_tag="", source=("10.0.0.1", 5060))
    assert b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a1\r\n" in same
    assert reply_address(req, ("10.0.0.9", 33333)) == ("10.0.0.9", 5060)
    assert reply_address(parse(INVITE.encode()), ("10.0.0.9", 33333)) == ("10.0.0.9", 33333)


def test_stream_framing() -> None:
    one = INVITE.encode()
    buffer = bytearray(b"\r\n\r\n" + one + one[:30])
    messages, pings = frame(buffer)
    assert messages == [one] and pings == 1 and bytes(buffer) == one[:30]
    buffer += one[30:]
    assert frame(buffer) == ([one], 0) and not buffer
    half_ping = bytearray(b"\r\n")
    assert frame(half_ping) == ([], 0) and half_ping == b"\r\n"
    with pytest.raises(MalformedMessage, match="content_length"):
        frame(bytearray(INVITE.replace("Content-Length: 4\r\n", "").encode()))
    with pytest.raises(MalformedMessage, match="too_large"):
        frame(bytearray(b"INVITE " + b"x" * 20_000))


def test_uri_helpers() -> None:
    assert split_values('"a, b" <sip:x@y>;p=1, <sip:z@w>') == ['"a, b" <sip:x@y>;p=1', "<sip:z@w>"]
    assert split_addr('"A" <sip:1@h;user=phone>;tag=9') == ("sip:1@h;user=phone", ";tag=9")
    assert split_addr("sip:1@h;tag=9") == ("sip:1@h", ";tag=9")
    assert header_params("<sip:x@y>;tag=a;lr") == {"tag": "a", "lr": None}
    assert uri_user("sip:%2B4930@gw;user=phone") == "+4930"
    assert uri_user("sips:alice:pw@h") == "alice"
    assert uri_user("tel:+4930123;phone-context=x") == "+4930123"
    assert uri_user("sip:gw.example") is None and uri_user("mailto:a@b") is None
    assert addr_user("<tel:+44207>") == "+44207"
