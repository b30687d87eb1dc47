"""Authenticators, Message-Authenticator, PAP and CHAP, against independent computations."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad import packet as pyrad_packet

from gateway.radius import (
    MalformedPacket,
    decode_request,
    decrypt_user_password,
    default_dictionary,
    encode_request,
    verify_accounting_request,
    verify_chap,
    verify_message_authenticator,
    verify_pap,
)
from gateway.radius.auth import hide_password, hmac_md5, reveal_password

SECRET = b"xyzzy5461"
AUTH = bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=100), message=st.binary(max_size=300))
def test_hmac_md5_is_rfc2104(key: bytes, message: bytes) -> None:
    assert hmac_md5(key, message) == hmac.new(key, message, "md5").digest()


def test_hmac_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.radius import auth

    monkeypatch.setattr(auth, "_HMAC_CACHE_MAX", 3)
    for i in range(10):
        assert hmac_md5(bytes([i]), b"m") == hmac.new(bytes([i]), b"m", "md5").digest()
    assert len(auth._HMAC_STATES) <= 3


def test_pap_rfc2865_example() -> None:
    # RFC 2865 section 7.1: the password "arctangent" with this secret and
    # Request Authenticator is hidden as these 16 octets.
    hidden = bytes.fromhex("0dbe708d93d413ce3196e43f782a0aee")
    assert hide_password(b"arctangent", SECRET, AUTH) == hidden
    assert reveal_password(hidden, SECRET, AUTH) == b"arctangent"
    data = encode_request(
        1,
        0,
        [("User-Name", "nemo"), ("User-Password", "arctangent")],
        SECRET,
        authenticator=AUTH,
        add_message_authenticator=False,
    )
    assert data[-18:] == b"\x02\x12" + hidden
    p = decode_request(data)
    assert decrypt_user_password(p, SECRET) == "arctangent"
    assert verify_pap(p, SECRET, "arctangent")
    assert verify_pap(p, SECRET, b"arctangent")
    assert not verify_pap(p, SECRET, "arctangen")
    assert not verify_pap(p, b"wrong", "arctangent")


@settings(max_examples=100, deadline=None)
@given(
    password=st.binary(max_size=128).map(lambda b: b.rstrip(b"\0")),
    secret=st.binary(min_size=1, max_size=30),
)
def test_pap_round_trip_and_pyrad(password: bytes, secret: bytes) -> None:
    hidden = hide_password(password, secret, AUTH)
    assert len(hidden) == max(16, -(-len(password) // 16) * 16)
    assert reveal_password(hidden, secret, AUTH) == password
    pyrad = pyrad_packet.AuthPacket(secret=secret, authenticator=AUTH)
    assert pyrad.PwCrypt(password) == hidden


def test_pap_malformed_and_absent() -> None:
    absent = decode_request(encode_request(1, 0, [("User-Name", "a")], SECRET))
    assert decrypt_user_password(absent, SECRET) is None
    assert not verify_pap(absent, SECRET, "")
    for size in (0, 15, 17, 144):
        raw = bytes([1, 0]) + (22 + size).to_bytes(2) + AUTH + bytes([2, size + 2]) + bytes(size)
        p = decode_request(raw)
        with pytest.raises(MalformedPacket) as info:
            decrypt_user_password(p, SECRET)
        assert info.value.reason == "bad_user_password"
        assert not verify_pap(p, SECRET, "")


def _chap_request(password: bytes, challenge: bytes | None, ident: int = 7) -> bytes:
    vector = challenge if challenge is not None else AUTH
    response = hashlib.md5(bytes([ident]) + password + vector).digest()
    attrs: list[tuple[str, object]] = [("CHAP-Password", bytes([ident]) + response)]
    if challenge is not None:
        attrs.append(("CHAP-Challenge", challenge))
    return encode_request(1, 3, attrs, SECRET, authenticator=AUTH)  # type: ignore[arg-type]


@pytest.mark.parametrize("challenge", [None, b"0123456789abcdef", b"short"])
def test_chap(challenge: bytes | None) -> None:
    p = decode_request(_chap_request(b"s3cret", challenge))
    assert verify_chap(p, "s3cret")
    assert verify_chap(p, b"s3cret")
    assert not verify_chap(p, "s3cret ")
    assert not verify_chap(p, "other")
    pyrad = pyrad_packet.AuthPacket(packet=p.raw, secret=SECRET, dict=default_dictionary().pyrad)
    assert pyrad.VerifyChapPasswd(b"s3cret")


def test_chap_absent_or_malformed() -> None:
    assert not verify_chap(decode_request(encode_request(1, 0, [], SECRET)), "x")
    bad = encode_request(1, 0, [("CHAP-Password", b"\x01" * 16)], SECRET)
    assert not verify_chap(decode_request(bad), "x")


def test_accounting_request_authenticator() -> None:
    # Built by hand from RFC 2866 section 3, independently of the encoder.
    attrs = bytes([40, 6, 0, 0, 0, 1]) + bytes([44, 5]) + b"abc"
    header = bytes([4, 9]) + (20 + len(attrs)).to_bytes(2)
    authenticator = hashlib.md5(header + bytes(16) + attrs + SECRET).digest()
    data = header + authenticator + attrs
    assert encode_request(4, 9, [("Acct-Status-Type", 1), ("Acct-Session-Id", "abc")], SECRET) == (
        data
    )
    p = decode_request(data)
    assert verify_accounting_request(p, SECRET)
    assert not verify_accounting_request(p, SECRET + b"!")
    tampered = bytearray(data)
    tampered[-1] ^= 1
    assert not verify_accounting_request(decode_request(bytes(tampered)), SECRET)
    # The same rule authenticates Disconnect/CoA-Request; other codes never pass.
    for code in (40, 43):
        assert verify_accounting_request(
            decode_request(encode_request(code, 1, [], SECRET)), SECRET
        )
    assert not verify_accounting_request(decode_request(encode_request(1, 1, [], SECRET)), SECRET)


def test_message_authenticator_on_requests() -> None:
    data = encode_request(1, 1, [("User-Name", "a")], SECRET, authenticator=AUTH)
    # By hand (RFC 3579 section 3.2): HMAC-MD5 over the packet with the M-A zeroed.
    zeroed = data[:22] + bytes(16) + data[38:]
    assert data[22:38] == hmac.new(SECRET, zeroed, "md5").digest()
    p = decode_request(data)
    assert verify_message_authenticator(p, SECRET) is True
    assert verify_message_authenticator(p, b"other") is False
    tampered = bytearray(data)
    tampered[-1] ^= 1
    assert verify_message_authenticator(decode_request(bytes(tampered)), SECRET) is False
    plain = encode_request(1, 1, [], SECRET, add_message_authenticator=False)
    assert verify_message_authenticator(decode_request(plain), SECRET) is None
    # Accounting-Request: computed with a zero authenticator, then the request auth.
    acct = decode_request(encode_request(4, 1, [], SECRET, add_message_authenticator=True))
    assert verify_message_authenticator(acct, SECRET) is True
    assert verify_accounting_request(acct, SECRET)


def test_message_authenticator_repeated_or_wrong_size_fails() -> None:
    data = encode_request(1, 1, [], SECRET)
    doubled = data[:2] + (len(data) + 18).to_bytes(2) + data[4:] + data[20:38]
    assert verify_message_authenticator(decode_request(doubled), SECRET) is False
    short = data[:2] + (37).to_bytes(2) + data[4:20] + b"\x50\x11" + data[22:37]
    assert verify_message_authenticator(decode_request(short), SECRET) is False
