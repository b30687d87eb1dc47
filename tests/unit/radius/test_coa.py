"""What a Disconnect-Request carries: the call's identity as the switch wrote it."""

from __future__ import annotations

from gateway.config import RadiusClientConfig
from gateway.radius import coa
from gateway.radius.clients import Client
from gateway.radius.codec import PacketCode, decode_request, encode_request

SECRET = b"testing123"
CONF_ID = "h323-conf-id=3F9C2A10 1B2C11EF 8A3BD4E5 6F7A8B9C"
ORIGIN = "h323-call-origin=answer"


def _client(profile: str) -> Client:
    return Client.from_config(
        RadiusClientConfig(
            name="gw1", address="127.0.0.1", secret="testing123", profile=profile, coa_port=3799
        )
    )


def _accounting() -> bytes:
    return encode_request(
        PacketCode.ACCOUNTING_REQUEST,
        9,
        [
            ("User-Name", "1001"),
            ("Acct-Session-Id", "sess-1"),
            ("Acct-Status-Type", 1),
            ("h323-conf-id", CONF_ID),
            ("h323-call-origin", ORIGIN),
            ("h323-setup-time", "h323-setup-time=10:00:00.000 UTC Mon Jan 5 2026"),
        ],
        SECRET,
    )


def _vsa(vendor: int, kind: int, value: str) -> bytes:
    sub = bytes([kind, len(value) + 2]) + value.encode()
    return bytes([26, len(sub) + 6]) + vendor.to_bytes(4) + sub


def _disconnect(profile: str) -> bytes:
    reach = coa.reach(_client(profile), ("127.0.0.1", 5000), decode_request(_accounting()))
    _, _, attributes = coa.parse_reach(reach)
    return encode_request(PacketCode.DISCONNECT_REQUEST, 3, attributes, SECRET)


def test_a_cisco_disconnect_carries_the_conf_id_and_call_origin_as_sent() -> None:
    datagram = _disconnect("cisco")
    # On the wire: vendor 9, h323-conf-id (24) and h323-call-origin (26), name=value.
    assert _vsa(9, 24, CONF_ID) in datagram
    assert _vsa(9, 26, ORIGIN) in datagram
    request = decode_request(datagram)
    assert request.code == PacketCode.DISCONNECT_REQUEST
    assert request.get("h323-conf-id") == CONF_ID
    assert request.get("h323-call-origin") == ORIGIN
    assert request.get("Acct-Session-Id") == "sess-1"
    # Only what identifies the call: no times, no status.
    assert "h323-setup-time" not in request
    assert "Acct-Status-Type" not in request


def test_a_standard_disconnect_carries_no_vendor_attributes() -> None:
    request = decode_request(_disconnect("standard"))
    assert request.get("Acct-Session-Id") == "sess-1"
    assert "h323-conf-id" not in request
    assert "h323-call-origin" not in request


def test_no_coa_port_no_reach() -> None:
    client = Client.from_config(
        RadiusClientConfig(name="gw1", address="127.0.0.1", secret="x", profile="cisco")
    )
    assert coa.reach(client, ("127.0.0.1", 1), decode_request(_accounting())) == ""
