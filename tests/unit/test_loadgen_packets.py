"""The load generator's precomputed datagrams: byte-equal to the gateway codec's,
accepted by the gateway's checks, and re-signed correctly for another identifier."""

from __future__ import annotations

import pytest

from gateway.loadgen.packets import RequestBuilder, conf_id, reply_matches, resign
from gateway.loadgen.plan import CallSpec
from gateway.radius.auth import verify_accounting_request, verify_message_authenticator, verify_pap
from gateway.radius.codec import PacketCode, decode_request, encode_reply, encode_request
from gateway.radius.dictionary import EncodableValue
from gateway.radius.profiles import PROFILES

SECRET = b"load-secret"
AUTHENTICATOR = bytes(range(16))
SPEC = CallSpec(
    index=7,
    session_id="lg-abc123-7",
    username="lgabc123x3",
    password="pw-secret",
    calling="4479000000042",
    called="49301234567",
    dial_prefix="4930",
    customer_id=42,
    duration_s=125,
)


def _common(spec: CallSpec) -> list[tuple[str, EncodableValue]]:
    return [
        ("User-Name", spec.username),
        ("Calling-Station-Id", spec.calling),
        ("Called-Station-Id", spec.called),
        ("Acct-Session-Id", spec.session_id),
        ("h323-conf-id", f"h323-conf-id={conf_id(spec.session_id)}"),
        ("Cisco-AVPair", f"call-id={spec.session_id}@loadgen"),
        ("h323-call-origin", "h323-call-origin=answer"),
        ("h323-call-type", "h323-call-type=VoIP"),
        ("NAS-IP-Address", "127.0.0.1"),
    ]


def _packets(interims: int = 0, ident: int = 9) -> list[bytes]:
    builder = RequestBuilder(SECRET, nas_ip="127.0.0.1")
    return builder.call(SPEC, ident, AUTHENTICATOR, interims)


def test_access_request_equals_the_codecs() -> None:
    auth = _packets()[0]
    expected = encode_request(
        PacketCode.ACCESS_REQUEST,
        9,
        [*_common(SPEC), ("User-Password", SPEC.password)],
        SECRET,
        authenticator=AUTHENTICATOR,
    )
    assert auth == expected


def test_accounting_requests_equal_the_codecs() -> None:
    _auth, start, interim, stop = _packets(interims=1)
    common = _common(SPEC)
    assert start == encode_request(
        PacketCode.ACCOUNTING_REQUEST, 9, [*common, ("Acct-Status-Type", "Start")], SECRET
    )
    assert interim == encode_request(
        PacketCode.ACCOUNTING_REQUEST,
        9,
        [*common, ("Acct-Status-Type", "Interim-Update"), ("Acct-Session-Time", 62)],
        SECRET,
    )
    assert stop == encode_request(
        PacketCode.ACCOUNTING_REQUEST,
        9,
        [
            *common,
            ("Acct-Status-Type", "Stop"),
            ("Acct-Terminate-Cause", "User-Request"),
            ("h323-disconnect-cause", "h323-disconnect-cause=10"),
            ("Acct-Session-Time", 125),
        ],
        SECRET,
    )


def test_the_gateway_reads_the_call_as_sent() -> None:
    auth, start, interim, stop = (decode_request(p) for p in _packets(interims=1))
    assert verify_message_authenticator(auth, SECRET) is True
    assert verify_pap(auth, SECRET, SPEC.password)
    for acct in (start, interim, stop):
        assert verify_accounting_request(acct, SECRET)
    facts = [PROFILES["cisco"].facts(p) for p in (auth, start, interim, stop)]
    assert {(f.session_id, f.leg, f.username, f.calling, f.called) for f in facts} == {
        (SPEC.session_id, "answer", SPEC.username, SPEC.calling, SPEC.called)
    }
    assert [p.get("Acct-Session-Time") for p in (start, interim, stop)] == [None, 62, 125]
    assert [p.value_name("Acct-Status-Type") for p in (start, interim, stop)] == [
        "Start",
        "Interim-Update",
        "Stop",
    ]


@pytest.mark.parametrize("interims", [0, 1, 3])
def test_interims_spread_over_the_simulated_length(interims: int) -> None:
    packets = _packets(interims=interims)
    assert len(packets) == 3 + interims
    times = [decode_request(p).get("Acct-Session-Time") for p in packets[2:]]
    assert times == [125 * i // (interims + 1) for i in range(1, interims + 1)] + [125]


def test_resign_moves_every_datagram_to_another_identifier() -> None:
    for original, rebuilt in zip(
        _packets(interims=1), _packets(interims=1, ident=200), strict=True
    ):
        moved = resign(original, 200, SECRET)
        assert moved == rebuilt
        packet = decode_request(moved)
        assert packet.identifier == 200
        if packet.code == PacketCode.ACCESS_REQUEST:
            assert verify_message_authenticator(packet, SECRET) is True
            assert verify_pap(packet, SECRET, SPEC.password)
        else:
            assert verify_accounting_request(packet, SECRET)


def test_probe_carries_no_session_identity() -> None:
    probe = decode_request(RequestBuilder(SECRET).probe(3, AUTHENTICATOR, SPEC))
    facts = PROFILES["cisco"].facts(probe)
    assert facts.session_id is None
    assert (facts.username, facts.called) == (SPEC.username, SPEC.called)
    assert verify_message_authenticator(probe, SECRET) is True


def test_reply_matches_only_the_request_it_answers() -> None:
    auth, start, stop = _packets()
    accept = encode_reply(decode_request(auth), PacketCode.ACCESS_ACCEPT, [], SECRET)
    ack = encode_reply(decode_request(stop), PacketCode.ACCOUNTING_RESPONSE, [], SECRET)
    assert reply_matches(accept, auth, SECRET)
    assert reply_matches(ack, stop, SECRET)
    # A late answer to the Start, arriving when the same identifier carries the Stop:
    late = encode_reply(decode_request(start), PacketCode.ACCOUNTING_RESPONSE, [], SECRET)
    assert not reply_matches(late, stop, SECRET)
    assert not reply_matches(accept, auth, b"another-secret")
    assert not reply_matches(accept[:-1], auth, SECRET)  # shorter than its Length
