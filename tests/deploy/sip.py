"""A few hand-written SIP messages over UDP: enough to place a call through a proxy."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import asyncio_dgram

_branches = itertools.count(1)


@dataclass
class Message:
    """A parsed SIP request or response (headers in order, names as sent)."""

    first: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str:
        values = self.all(name)
        assert values, f"no {name} in {self.first!r}"
        return values[0]

    @property
    def status(self) -> int | None:
        if not self.first.startswith("SIP/2.0 "):
            return None
        return int(self.first.split()[1])

    @property
    def method(self) -> str | None:
        return None if self.first.startswith("SIP/2.0") else self.first.split()[0]


def parse(data: bytes) -> Message:
    head = data.decode("utf-8", errors="replace").split("\r\n\r\n", 1)[0]
    first, *lines = head.split("\r\n")
    message = Message(first)
    for line in lines:
        name, _, value = line.partition(":")
        message.headers.append((name.strip(), value.strip()))
    return message


def render(first: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first, *(f"{k}: {v}" for k, v in headers), "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def via(host: str, port: int) -> tuple[str, str]:
    return ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-t{next(_branches)};rport")


def reply(request: Message, status: int, reason: str, *, to_tag: str = "", contact: str = ""):
    """A response to ``request`` (its Vias, From, To, Call-ID, CSeq, Record-Route)."""
    to = request.header("To")
    if to_tag and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    headers = [("Via", v) for v in request.all("Via")]
    headers += [("Record-Route", r) for r in request.all("Record-Route")]
    headers += [
        ("From", request.header("From")),
        ("To", to),
        ("Call-ID", request.header("Call-ID")),
        ("CSeq", request.header("CSeq")),
    ]
    if contact:
        headers.append(("Contact", contact))
    return render(f"SIP/2.0 {status} {reason}", headers)


def sent_by(message: Message) -> tuple[str, int]:
    """Where a response to ``message`` goes: the top Via's host and port."""
    host_port = message.header("Via").split()[1].split(";")[0]
    host, _, port = host_port.partition(":")
    return host, int(port or 5060)


class Endpoint:
    """A UDP socket that speaks SIP, with receive helpers that wait a bounded time."""

    def __init__(self, stream: asyncio_dgram.DatagramServer) -> None:
        self.stream = stream
        self.host, self.port = stream.sockname[:2]

    @classmethod
    async def open(cls) -> Endpoint:
        return cls(await asyncio_dgram.bind(("127.0.0.1", 0)))

    async def send(self, data: bytes, to: tuple[str, int]) -> None:
        await self.stream.send(data, to)

    async def receive(self, timeout_s: float = 5.0) -> Message:
        data, _ = await asyncio.wait_for(self.stream.recv(), timeout_s)
        return parse(data)

    async def request(self, method: str, timeout_s: float = 5.0) -> Message:
        """The next request of ``method`` (others and retransmissions skipped)."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.receive(timeout_s)
                if message.method == method:
                    return message

    async def final(self, cseq_method: str, timeout_s: float = 5.0) -> Message:
        """The next final response (>= 200) to a ``cseq_method`` request."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.receive(timeout_s)
                status = message.status
                if status and status >= 200 and message.header("CSeq").endswith(cseq_method):
                    return message

    async def quiet(self, timeout_s: float) -> Message | None:
        """The first message within ``timeout_s``, or None."""
        try:
            return await self.receive(timeout_s)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.stream.close()
