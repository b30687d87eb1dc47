"""Digest credentials checked against an independent RFC 2617 computation."""

from __future__ import annotations

import hashlib

from gateway.sip import digest


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def header(response: str, qop: bool) -> str:
    extra = ', qop=auth, nc=00000001, cnonce="c0"' if qop else ""
    return (
        'Digest username="1001", realm="pbx.example", nonce="n0", '
        f'uri="sip:4930@gw", response="{response}", algorithm=MD5{extra}'
    )


def test_rfc2617_without_and_with_qop() -> None:
    ha1, ha2 = md5("1001:pbx.example:s3cret"), md5("INVITE:sip:4930@gw")
    plain = digest.parse(header(md5(f"{ha1}:n0:{ha2}"), qop=False))
    with_qop = digest.parse(header(md5(f"{ha1}:n0:00000001:c0:auth:{ha2}"), qop=True))
    assert plain is not None and with_qop is not None
    assert plain.username == "1001"
    assert digest.verify(plain, "INVITE", "s3cret")
    assert digest.verify(with_qop, "INVITE", "s3cret")
    assert not digest.verify(plain, "INVITE", "wrong")
    assert not digest.verify(plain, "OPTIONS", "s3cret")


def test_unusable_credentials() -> None:
    assert digest.parse("Basic dXNlcjpwYXNz") is None
    assert digest.parse('Digest username="1001", realm="r"') is None
    sha = digest.parse(header("00", qop=False).replace("MD5", "SHA-256"))
    assert sha is not None and not digest.verify(sha, "INVITE", "s3cret")
