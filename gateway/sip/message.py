"""SIP messages on the wire: bytes -> ``Request``, ``Answer`` -> bytes (RFC 3261 §7, §20).

The codec layer of the SIP front: no transaction, no call logic. It reads what a
stateless redirect server needs (start line, the headers every response copies,
the top Via) and writes responses that copy Via (in order, the top one marked with
``received``/``rport``), From, To (with our tag), Call-ID and CSeq.

Parsing is lenient where RFC 3261 §7.3.1 asks for leniency (compact header names,
any case, folded lines, bare LF line ends, several values on one line) and strict
on what the transaction layer depends on: a request line, exactly one well-formed
CSeq whose method matches, a Via with a sent-by, From, To and Call-ID. A message
failing those raises ``MalformedMessage``; ``answerable`` says whether enough was
read to send a 400 back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.sip.uri import header_params, split_values

VERSION = "SIP/2.0"
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024

# RFC 3261 §7.3.3 and the IANA registry: compact form -> canonical name.
_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Max-Forwards",
        "Authorization",
        "Proxy-Authorization",
        "P-Asserted-Identity",
        "Remote-Party-ID",
        "Require",
        "Supported",
    )
}
# Headers that may carry several comma-separated values on one line.
_LIST_HEADERS = frozenset({"Via", "Contact", "P-Asserted-Identity", "Remote-Party-ID"})
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_CSEQ = re.compile(r"^\s*(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$")
_SENT_PROTOCOL = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(.*)$", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$")
MAGIC_COOKIE = "z9hG4bK"


class MalformedMessage(ValueError):
    """Not a request we can process; ``answerable`` if a 400 can still be built."""

    def __init__(self, reason: str, answerable: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answerable = answerable


class NotARequest(ValueError):
    """A SIP response arrived; a redirect server sends no requests, so it is stray."""


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...]

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.params)

    @property
    def branch(self) -> str:
        return self.param("branch") or ""

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def render(self) -> str:
        text = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {self.sent_by}{text}"


def parse_via(value: str) -> Via:
    """Parse one Via value; raise ValueError when its shape is wrong."""
    match = _SENT_PROTOCOL.match(value)
    if match is None:
        raise ValueError("bad Via protocol")
    sent_by, *raw_params = match[2].split(";")
    sent_by = sent_by.strip()
    if not sent_by:
        raise ValueError("Via without sent-by")
    port: int | None = None
    if sent_by.startswith("["):
        host, _, tail = sent_by[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
        elif tail:
            raise ValueError("bad Via sent-by")
    elif sent_by.count(":") == 1:
        host, _, port_text = sent_by.partition(":")
        port = int(port_text)
    else:
        host = sent_by
    if not host or (port is not None and not 0 < port < 65536):
        raise ValueError("bad Via sent-by")
    parsed: list[tuple[str, str | None]] = []
    for raw in raw_params:
        name, sep, val = raw.strip().partition("=")
        if name:
            parsed.append((name.strip().lower(), val.strip() if sep else None))
    return Via(match[1].upper(), host, port, tuple(parsed))


@dataclass(slots=True)
class Request:
    """A parsed SIP request: the start line, headers in order (canonical names), body."""

    method: str
    uri: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    _by_name: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _top: Via | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        by_name = self._by_name
        for name, value in self.headers:
            lowered = name.lower()
            found = by_name.get(lowered)
            if found is None:
                by_name[lowered] = [value]
            else:
                found.append(value)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (canonical or any case), or None."""
        found = self._by_name.get(name.lower())
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        return list(self._by_name.get(name.lower(), ()))

    def count(self, name: str) -> int:
        return len(self._by_name.get(name.lower(), ()))

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        match = _CSEQ.match(self.header("CSeq") or "")
        return (int(match[1]), match[2].upper()) if match else (-1, "")

    @property
    def vias(self) -> list[str]:
        return self.all("Via")

    @property
    def top_via(self) -> Via:
        """The top Via, parsed (ValueError when malformed, IndexError when absent)."""
        if self._top is None:
            self._top = parse_via(self.vias[0])
        return self._top

    @property
    def from_tag(self) -> str:
        return header_params(self.header("From") or "").get("tag") or ""

    @property
    def to_tag(self) -> str:
        return header_params(self.header("To") or "").get("tag") or ""


def _canonical(name: str) -> str:
    lowered = name.lower()
    if lowered in _COMPACT:
        return _COMPACT[lowered]
    return _CANONICAL.get(lowered, name)


def _lines(head: str) -> list[str]:
    """Header lines with folded continuations joined (RFC 3261 §7.3.1)."""
    lines: list[str] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = f"{lines[-1]} {line.strip()}"
        else:
            lines.append(line)
    return lines


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        at = data.find(separator)
        if at >= 0:
            return data[:at], data[at + len(separator) :]
    return data.rstrip(b"\r\n"), b""  # a datagram may end right after the last header


def parse(data: bytes) -> Request:
    """Parse one request; raise ``NotARequest`` or ``MalformedMessage``."""
    head_bytes, rest = _split_head(data.lstrip(b"\r\n"))
    if len(head_bytes) > MAX_HEAD_BYTES:
        raise MalformedMessage("too_large")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("encoding") from None
    lines = _lines(head)
    start = lines[0].strip()
    if start.startswith(VERSION + " ") or start == VERSION:
        raise NotARequest(start)
    parts = start.split(" ")
    if len(parts) != 3 or parts[2].upper() != VERSION or not _TOKEN.match(parts[0]):
        raise MalformedMessage("start_line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise MalformedMessage("header_line")
        canonical = _canonical(name)
        if canonical in _LIST_HEADERS and "," in value:
            headers.extend((canonical, v) for v in split_values(value))
        else:
            headers.append((canonical, value.strip()))
    request = Request(parts[0].upper(), parts[1], headers)
    request.body = _body(request, rest)
    _check(request)
    return request


def _body(request: Request, rest: bytes) -> bytes:
    declared = request.header("Content-Length")
    if declared is None:
        return rest
    if not declared.isdigit():
        raise MalformedMessage("content_length", _answerable(request))
    length = int(declared)
    if length > len(rest):
        raise MalformedMessage("truncated_body", _answerable(request))
    return rest[:length]  # bytes after the declared length are ignored (§18.3)


def _answerable(request: Request) -> Request | None:
    """The request, if a response can be addressed and matched from what it holds."""
    try:
        request.top_via  # noqa: B018 - parsing is the check
    except (ValueError, IndexError):
        return None
    needed = ("From", "To", "Call-ID", "CSeq")
    return request if all(request.header(name) for name in needed) else None


def _check(request: Request) -> None:
    if any(request.count(name) != 1 for name in ("CSeq", "Call-ID", "From", "To")):
        raise MalformedMessage("duplicate_header", _answerable(request))
    try:
        request.top_via  # noqa: B018
    except IndexError:
        raise MalformedMessage("no_via") from None
    except ValueError:
        raise MalformedMessage("bad_via") from None
    if not request.call_id:
        raise MalformedMessage("no_call_id")
    number, method = request.cseq
    if number < 0 or number >= 2**31 or method != request.method:
        raise MalformedMessage("bad_cseq", _answerable(request))


# -- responses --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer: status, reason phrase, and headers beyond the copied ones."""

    code: int
    phrase: str
    headers: tuple[tuple[str, str], ...] = ()


def _with_tag(to_value: str, tag: str) -> str:
    if not tag or "tag" in header_params(to_value):
        return to_value
    return f"{to_value};tag={tag}"


def marked_via(via: Via, source: tuple[str, int]) -> Via:
    """The top Via as answered: ``received`` when the source differs, ``rport`` filled.

    RFC 3261 §18.2.1 (received) and RFC 3581 (rport: received is then always added).
    """
    host, port = source[0], source[1]
    wants_rport = via.has("rport")
    kept = [(k, v) for k, v in via.params if k not in ("received", "rport")]
    if wants_rport or via.host != host:
        kept.append(("received", host))
    if wants_rport:
        kept.append(("rport", str(port)))
    return Via(via.transport, via.host, via.port, tuple(kept))


def reply_address(request: Request, source: tuple[str, int]) -> tuple[str, int]:
    """Where an unreliable-transport response goes (RFC 3261 §18.2.2, RFC 3581).

    The source address always; its port with ``rport``, else the sent-by port (5060).
    """
    via = request.top_via
    if via.has("rport"):
        return source[0], source[1]
    return source[0], via.port or 5060


def encode_response(
    request: Request, answer: Answer, *, to_tag: str, source: tuple[str, int]
) -> bytes:
    """The response to ``request`` as bytes (Content-Length 0: we send no bodies)."""
    vias = request.vias
    lines = [f"{VERSION} {answer.code} {answer.phrase}"]
    lines.append(f"Via: {marked_via(request.top_via, source).render()}")
    lines.extend(f"Via: {v}" for v in vias[1:])
    to_value = request.header("To") or ""
    lines.append(f"From: {request.header('From') or ''}")
    lines.append(f"To: {_with_tag(to_value, to_tag) if answer.code > 100 else to_value}")
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {request.header('CSeq') or ''}")
    lines.extend(f"{name}: {value}" for name, value in answer.headers)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


# -- stream framing (TCP) ---------------------------------------------------------------


def frame(buffer: bytearray) -> tuple[list[bytes], int]:
    """Cut whole messages off the front of a stream buffer (RFC 3261 §18.3).

    Returns the messages and how many CRLF keep-alive pings (RFC 5626 §4.4.1) were
    found; consumed bytes are removed from ``buffer``. Raises ``MalformedMessage``
    when the stream cannot be framed (no or bad Content-Length, oversized message):
    the connection must then be closed.
    """
    messages: list[bytes] = []
    pings = 0
    while buffer:
        if buffer.startswith(b"\r\n\r\n"):
            del buffer[:4]
            pings += 1
            continue
        if len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
            break  # maybe the start of a ping
        if buffer.startswith(b"\r\n"):
            del buffer[:2]  # a stray line end between messages
            continue
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise MalformedMessage("too_large")
            break
        head = bytes(buffer[:end])
        lengths = _CONTENT_LENGTH.findall(head)
        if len(lengths) != 1:
            raise MalformedMessage("content_length")
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            raise MalformedMessage("too_large")
        total = end + 4 + length
        if len(buffer) < total:
            break
        messages.append(bytes(buffer[:total]))
        del buffer[:total]
    return messages, pings


def allow_header(methods: Sequence[str]) -> tuple[str, str]:
    return ("Allow", ", ".join(methods))
