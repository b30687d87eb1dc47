"""Every protocol vector in tests/radius/vectors/, through both codecs.

A vector's request must decode (ours and pyrad's) to the listed attributes and pass
the listed checks; its reply spec must encode (ours) to the listed octets exactly,
which pyrad must accept as the reply to that request. See make_vectors.py for the
format and where the octets came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet as pyrad_packet

from gateway.radius import (
    MalformedPacket,
    PacketCode,
    decode_reply,
    decode_request,
    decrypt_user_password,
    default_dictionary,
    encode_reply,
    encode_request,
    verify_accounting_request,
    verify_chap,
    verify_message_authenticator,
    verify_pap,
    verify_reply,
)
from tests.unit.radius import reference as ref

VECTORS = Path(__file__).resolve().parents[2] / "radius" / "vectors"
FILES = sorted(VECTORS.glob("*.json"))
DICTIONARY = default_dictionary()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _value(name: str, value: Any) -> Any:
    """A vector value as our decoder returns it."""
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    d = DICTIONARY.attribute(name)
    if isinstance(value, str) and d.python_type is int:
        return d.values[value]
    return value


def _pairs(attributes: list[list[Any]]) -> list[tuple[str, Any]]:
    return [(name, _value(name, value)) for name, value in attributes]


def test_the_folder_has_the_cases_the_front_needs() -> None:
    names = {p.stem for p in FILES}
    assert {
        "kamailio_access_request",
        "cisco_access_request",
        "accounting_start",
        "accounting_interim",
        "accounting_stop",
        "accounting_on",
        "disconnect_request",
        "malformed",
    } <= names


@pytest.mark.parametrize("path", [p for p in FILES if "malformed" not in _load(p)], ids=str)
def test_exchange(path: Path) -> None:
    case = _load(path)
    secret = case["secret"].encode()
    spec = case["request"]
    data = bytes.fromhex(spec["hex"])
    request = decode_request(data)
    assert request.code is PacketCode[spec["code"]]
    assert request.identifier == spec["identifier"]
    expected = _pairs(spec["attributes"])
    assert [(a.name, a.value) for a in request.attributes()] == expected
    assert request.unknown() == []
    ref.assert_same_decode(request, data, DICTIONARY)

    checks = spec["checks"]
    if "message_authenticator" in checks:
        assert verify_message_authenticator(request, secret) is checks["message_authenticator"]
        if checks["message_authenticator"] is not None:
            assert verify_message_authenticator(request, secret + b"x") is False
    if "request_authenticator" in checks:
        assert verify_accounting_request(request, secret) is checks["request_authenticator"]
        assert not verify_accounting_request(request, secret + b"x")
        # Computed authenticators make our encoder's output fully determined: it must
        # match the vector's octets too.
        plain = [(n, v) for n, v in expected if n != "Message-Authenticator"]
        assert encode_request(request.code, request.identifier, plain, secret) == data
    if "user_password" in checks:
        assert decrypt_user_password(request, secret) == checks["user_password"]
        assert verify_pap(request, secret, checks["user_password"])
        clear = [
            (n, checks["user_password"] if n == "User-Password" else v)
            for n, v in expected
            if n != "Message-Authenticator"
        ]
        assert (
            encode_request(1, request.identifier, clear, secret, authenticator=data[4:20]) == data
        )
    if "chap_password" in checks:
        assert verify_chap(request, checks["chap_password"])
        assert not verify_chap(request, checks["chap_password"] + "x")

    if "reply" in case:
        _check_reply(case["reply"], request, secret)


def _check_reply(spec: dict[str, Any], request: Any, secret: bytes) -> None:
    attributes = _pairs(spec["attributes"])
    raw = encode_reply(
        request,
        PacketCode[spec["code"]],
        attributes,
        secret,
        add_message_authenticator=spec["message_authenticator"],
    )
    assert raw.hex() == spec["hex"]
    reply = decode_reply(raw)
    assert verify_reply(
        reply,
        request.authenticator,
        secret,
        require_message_authenticator=spec["message_authenticator"],
    )
    ref.assert_same_decode(reply, raw, DICTIONARY)
    classes = {1: pyrad_packet.AuthPacket, 4: pyrad_packet.AcctPacket}
    cls = classes.get(request.code, pyrad_packet.CoAPacket)
    pyrad_request = cls(packet=request.raw, secret=secret, dict=DICTIONARY.pyrad)
    assert pyrad_request.VerifyReply(pyrad_request.CreateReply(packet=raw))


@pytest.mark.parametrize("path", [p for p in FILES if "malformed" in _load(p)], ids=str)
def test_malformed(path: Path) -> None:
    for case in _load(path)["malformed"]:
        with pytest.raises(MalformedPacket) as info:
            decode_request(bytes.fromhex(case["hex"]))
        assert info.value.reason == case["reason"], case["what"]
