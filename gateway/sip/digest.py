"""HTTP Digest credentials in SIP requests (RFC 3261 §22.4, RFC 2617, MD5 only).

The redirect server sits behind a proxy that challenged the caller: it never sends a
challenge itself, it checks the response the proxy passed along against the
extension's secret. Nonce freshness is the proxy's business (it issued the nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str = ""
    nc: str = ""
    cnonce: str = ""


def parse(value: str) -> DigestCredentials | None:
    """An Authorization / Proxy-Authorization value; None unless it is usable Digest."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    found: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, token = match[2], match[3]
        raw = quoted if quoted is not None else token
        found[match[1].lower()] = re.sub(r"\\(.)", r"\1", raw) if quoted is not None else raw
    try:
        return DigestCredentials(
            username=found["username"],
            realm=found["realm"],
            nonce=found["nonce"],
            uri=found["uri"],
            response=found["response"].lower(),
            algorithm=found.get("algorithm", "MD5"),
            qop=found.get("qop", ""),
            nc=found.get("nc", ""),
            cnonce=found.get("cnonce", ""),
        )
    except KeyError:
        return None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def expected(credentials: DigestCredentials, method: str, secret: str) -> str:
    """The response a client knowing ``secret`` computes (RFC 2617 §3.2.2.1)."""
    c = credentials
    ha1 = _md5(f"{c.username}:{c.realm}:{secret}")
    ha2 = _md5(f"{method}:{c.uri}")
    if c.qop:
        return _md5(f"{ha1}:{c.nonce}:{c.nc}:{c.cnonce}:{c.qop}:{ha2}")
    return _md5(f"{ha1}:{c.nonce}:{ha2}")


def verify(credentials: DigestCredentials, method: str, secret: str) -> bool:
    """Whether the credentials prove knowledge of ``secret`` (MD5, qop auth or none)."""
    if credentials.algorithm.upper() != "MD5" or credentials.qop not in ("", "auth"):
        return False
    return hmac.compare_digest(expected(credentials, method, secret), credentials.response)
