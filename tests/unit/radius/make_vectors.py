"""Write the protocol vectors in tests/radius/vectors/ with pyrad, the reference codec.

    .venv/bin/python -m tests.unit.radius.make_vectors

The vectors are committed data; this script only documents where their octets came
from and regenerates them if a case is added. Every octet is made by pyrad (fixed
authenticators, so the output is stable); our codec is checked against the files
by test_vectors.py, never used to write them.

File format (JSON), one exchange per file:

    description   what the case is
    secret        the shared secret (UTF-8)
    request       hex: the datagram; code, identifier; attributes: [name, value] in
                  wire order (integers may be VALUE names, octets are {"hex": ...});
                  checks: expected results of message_authenticator (true/false/null),
                  request_authenticator (accounting/CoA), user_password, chap_password
    reply         (optional) code, attributes, message_authenticator (bool), hex:
                  what encode_reply must produce for that spec, byte for byte

malformed.json instead lists datagrams with the MalformedPacket reason expected.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pyrad import packet as pyrad_packet

from gateway.radius import default_dictionary

OUT = Path(__file__).resolve().parents[2] / "radius" / "vectors"
PYRAD = default_dictionary().pyrad

CISCO_CONF_ID = "h323-conf-id=3F9C2A10 1B2C11EF 8A3BD4E5 6F7A8B9C"
CALL_ID = "call-id=a84b4c76e66710@192.0.2.20"


def _json_value(value: Any) -> Any:
    return {"hex": value.hex()} if isinstance(value, bytes) else value


def _wire_order(pkt: Any, spec: list[tuple[str, Any]]) -> list[list[Any]]:
    """The attributes in the order pyrad put them on the wire, with the M-A value."""
    out: list[list[Any]] = []
    by_name: dict[str, list[Any]] = {}
    for name, value in spec:
        by_name.setdefault(name, []).append(value)
    for key in OrderedDict.keys(pkt):
        if key == 80:
            out.append(
                ["Message-Authenticator", {"hex": OrderedDict.__getitem__(pkt, 80)[0].hex()}]
            )
            continue
        name = pkt._DecodeKey(key)
        for value in by_name.pop(name):
            out.append([name, _json_value(value)])
    assert not by_name, by_name
    return out


def _build(
    cls: Any,
    code: int,
    identifier: int,
    secret: bytes,
    spec: list[tuple[str, Any]],
    *,
    authenticator: bytes | None = None,
    message_authenticator: bool = False,
) -> tuple[Any, bytes]:
    pkt = cls(code=code, id=identifier, secret=secret, dict=PYRAD, authenticator=authenticator)
    for name, value in spec:
        if name == "User-Password":
            value = pkt.PwCrypt(value)
        pkt.AddAttribute(name, value)
    if message_authenticator:
        pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


def _reply(
    request: Any, code: int, spec: list[tuple[str, Any]], message_authenticator: bool
) -> dict[str, Any]:
    # Attributes through the constructor so that Proxy-State lands last, like ours.
    reply = request.CreateReply(
        **{name.replace("-", "_"): [v for n, v in spec if n == name] for name, _ in spec}
    )
    reply.code = code
    reply.message_authenticator = message_authenticator or None
    raw = reply.ReplyPacket()
    assert request.VerifyReply(pyrad_packet.Packet(packet=raw, dict=PYRAD, secret=request.secret))
    return {
        "code": _code_name(code),
        "attributes": [[n, _json_value(v)] for n, v in spec],
        "message_authenticator": message_authenticator,
        "hex": raw.hex(),
    }


def _code_name(code: int) -> str:
    from gateway.radius import PacketCode

    return PacketCode(code).name


def _dump(value: Any, depth: int = 0) -> str:
    """JSON with one line per attribute or malformed case, so diffs stay readable."""
    pad = "  " * (depth + 1)
    if (
        isinstance(value, dict)
        and depth < 2
        and any(isinstance(v, dict | list) for v in value.values())
    ):
        items = [f"{pad}{json.dumps(k)}: {_dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    if isinstance(value, list) and value and isinstance(value[0], list | dict):
        items = [pad + json.dumps(v, ensure_ascii=False) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"
    return json.dumps(value, ensure_ascii=False)


def _write(name: str, case: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    text = _dump(case) + "\n"
    assert json.loads(text) == case
    (OUT / f"{name}.json").write_text(text)


def _request_case(
    description: str,
    secret: bytes,
    pkt: Any,
    raw: bytes,
    spec: list[tuple[str, Any]],
    checks: dict[str, Any],
) -> dict[str, Any]:
    shown = [(n, pkt.PwCrypt(v) if n == "User-Password" else v) for n, v in spec]
    return {
        "description": description,
        "secret": secret.decode(),
        "request": {
            "hex": raw.hex(),
            "code": _code_name(raw[0]),
            "identifier": raw[1],
            "attributes": _wire_order(pkt, shown),
            "checks": checks,
        },
    }


def kamailio_access_request() -> None:
    secret = b"kamailio-secret"
    spec = [
        ("User-Name", "15551230001"),
        ("Called-Station-Id", "442079460000"),
        ("Calling-Station-Id", "15551230001"),
        ("Acct-Session-Id", "a84b4c76e66710@192.0.2.10"),
        ("Service-Type", "Call-Check"),
        ("NAS-IP-Address", "192.0.2.10"),
        ("NAS-Port", 5060),
    ]
    auth = bytes.fromhex("6b1c0e8c5a4c3bd9e0f1a2b3c4d5e6f7")
    pkt, raw = _build(pyrad_packet.AuthPacket, 1, 11, secret, spec, authenticator=auth)
    case = _request_case(
        "Kamailio misc_radius style: caller in User-Name, no password, no Message-Authenticator",
        secret,
        pkt,
        raw,
        spec,
        {"message_authenticator": None},
    )
    case["reply"] = _reply(pkt, 2, [("Session-Timeout", 3600)], True)
    _write("kamailio_access_request", case)


def cisco_access_request() -> None:
    secret = b"cisco-gw-secret"
    spec = [
        ("User-Name", "1001"),
        ("User-Password", "7788"),
        ("NAS-IP-Address", "192.0.2.20"),
        ("NAS-Port-Type", "Async"),
        ("Called-Station-Id", "4930901820"),
        ("Calling-Station-Id", "1001"),
        ("h323-conf-id", CISCO_CONF_ID),
        ("Cisco-AVPair", CALL_ID),
        ("Cisco-AVPair", "h323-ivr-out=transactionID:1234"),
        ("h323-call-origin", "h323-call-origin=answer"),
        ("h323-call-type", "h323-call-type=VoIP"),
        ("h323-remote-address", "h323-remote-address=198.51.100.7"),
    ]
    auth = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    pkt, raw = _build(
        pyrad_packet.AuthPacket, 1, 42, secret, spec, authenticator=auth, message_authenticator=True
    )
    case = _request_case(
        "Cisco-style gateway: h323 VSAs, Cisco-AVPair call-id, PAP password, Message-Authenticator",
        secret,
        pkt,
        raw,
        spec,
        {"message_authenticator": True, "user_password": "7788"},
    )
    reply = [
        ("h323-credit-time", "h323-credit-time=1800"),
        ("h323-return-code", "h323-return-code=0"),
        ("Session-Timeout", 1800),
        ("h323-credit-amount", "h323-credit-amount=12.50"),
        ("h323-currency", "h323-currency=USD"),
        ("h323-billing-model", "h323-billing-model=1"),
    ]
    case["reply"] = _reply(pkt, 2, reply, True)
    _write("cisco_access_request", case)


def cisco_chap_reject() -> None:
    secret = b"cisco-gw-secret"
    challenge = bytes.fromhex("00112233445566778899aabbccddeeff")
    response = hashlib.md5(b"\x05" + b"s3cret" + challenge).digest()
    spec = [
        ("User-Name", "1002"),
        ("CHAP-Password", b"\x05" + response),
        ("CHAP-Challenge", challenge),
        ("NAS-IP-Address", "192.0.2.20"),
        ("Called-Station-Id", "4930901820"),
        ("Calling-Station-Id", "1002"),
        ("h323-conf-id", "h323-conf-id=11111111 22222222 33333333 44444444"),
    ]
    auth = bytes.fromhex("1234567890abcdef1234567890abcdef")
    pkt, raw = _build(
        pyrad_packet.AuthPacket, 1, 43, secret, spec, authenticator=auth, message_authenticator=True
    )
    case = _request_case(
        "CHAP with CHAP-Challenge; answered with a reject (zero balance)",
        secret,
        pkt,
        raw,
        spec,
        {"message_authenticator": True, "chap_password": "s3cret"},
    )
    reply = [("h323-return-code", "h323-return-code=4"), ("Reply-Message", "Zero balance")]
    case["reply"] = _reply(pkt, 3, reply, True)
    _write("cisco_chap_reject", case)


def _accounting(name: str, description: str, spec: list[tuple[str, Any]], ident: int) -> None:
    secret = b"cisco-gw-secret"
    pkt, raw = _build(pyrad_packet.AcctPacket, 4, ident, secret, spec)
    case = _request_case(description, secret, pkt, raw, spec, {"request_authenticator": True})
    case["reply"] = _reply(pkt, 5, [], False)
    _write(name, case)


def _call_accounting(status: str, extra: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [
        ("Acct-Status-Type", status),
        ("Acct-Session-Id", "0000A1B2"),
        ("User-Name", "1001"),
        ("NAS-IP-Address", "192.0.2.20"),
        ("Called-Station-Id", "4930901820"),
        ("Calling-Station-Id", "1001"),
        ("Acct-Delay-Time", 0),
        ("h323-conf-id", CISCO_CONF_ID),
        ("Cisco-AVPair", CALL_ID),
        ("h323-call-origin", "h323-call-origin=answer"),
        ("h323-setup-time", "h323-setup-time=*12:00:00.000 UTC Mon Jan 6 2025"),
        *extra,
    ]


def accounting() -> None:
    connect = ("h323-connect-time", "h323-connect-time=*12:00:05.000 UTC Mon Jan 6 2025")
    _accounting(
        "accounting_start",
        "Accounting Start of an answered call, Cisco VSAs",
        _call_accounting("Start", [connect, ("Event-Timestamp", 1736164805)]),
        50,
    )
    _accounting(
        "accounting_interim",
        "Interim-Update after 300 s",
        _call_accounting(
            "Interim-Update",
            [connect, ("Acct-Session-Time", 300), ("Event-Timestamp", 1736165105)],
        ),
        51,
    )
    _accounting(
        "accounting_stop",
        "Stop after 421 s, relayed by a proxy (Proxy-State copied into the reply)",
        _call_accounting(
            "Stop",
            [
                connect,
                ("h323-disconnect-time", "h323-disconnect-time=*12:07:06.000 UTC Mon Jan 6 2025"),
                ("h323-disconnect-cause", "h323-disconnect-cause=10"),
                ("Acct-Session-Time", 421),
                ("Acct-Terminate-Cause", "User-Request"),
                ("Event-Timestamp", 1736165226),
                ("Proxy-State", b"proxy-7"),
            ],
        ),
        52,
    )
    _accounting(
        "accounting_on",
        "Accounting-On: the NAS restarted, its open calls are over",
        [
            ("Acct-Status-Type", "Accounting-On"),
            ("Acct-Session-Id", "00000000"),
            ("NAS-IP-Address", "192.0.2.20"),
            ("NAS-Identifier", "gw-fra-1"),
            ("Acct-Delay-Time", 0),
        ],
        53,
    )


def disconnect_request() -> None:
    secret = b"coa-secret"
    spec = [
        ("Acct-Session-Id", "0000A1B2"),
        ("User-Name", "1001"),
        ("NAS-IP-Address", "192.0.2.20"),
        ("h323-conf-id", CISCO_CONF_ID),
    ]
    pkt, raw = _build(pyrad_packet.CoAPacket, 40, 60, secret, spec)
    case = _request_case(
        "Disconnect-Request the gateway sends when a call's credit runs out; the NAS NAKs",
        secret,
        pkt,
        raw,
        spec,
        {"request_authenticator": True},
    )
    case["reply"] = _reply(pkt, 42, [("Error-Cause", "Session-Context-Not-Found")], False)
    _write("disconnect_request", case)


def malformed() -> None:
    auth = bytes(16)
    cases = [
        ("", "short", "empty datagram"),
        ("04010014" + auth.hex()[:30], "short", "19 octets"),
        ("63010014" + auth.hex(), "bad_code", "code 99"),
        ("02010014" + auth.hex(), "bad_code", "a reply sent to the server (decode_request)"),
        ("04010013" + auth.hex(), "bad_length", "Length 19"),
        ("04011001" + auth.hex(), "bad_length", "Length 4097"),
        ("0401001e" + auth.hex(), "length_mismatch", "Length 30, 20 octets received"),
        ("04010016" + auth.hex() + "0101", "bad_attribute_length", "attribute Length 1"),
        ("04010018" + auth.hex() + "01096161", "bad_attribute_length", "attribute past Length"),
        ("04010015" + auth.hex() + "01", "bad_attribute_length", "half an attribute header"),
    ]
    _write(
        "malformed",
        {
            "description": "Datagrams decode_request refuses, with the reason",
            "malformed": [{"hex": h, "reason": r, "what": w} for h, r, w in cases],
        },
    )


def main() -> None:
    kamailio_access_request()
    cisco_access_request()
    cisco_chap_reject()
    accounting()
    disconnect_request()
    malformed()


if __name__ == "__main__":
    main()
