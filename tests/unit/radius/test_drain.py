"""Stopping the RADIUS front: new requests are dropped, the ones in flight are still
answered on the open socket, then the sockets close."""

from __future__ import annotations

import asyncio
import os
import socket
from types import SimpleNamespace
from typing import Any

from gateway.config import RadiusClientConfig, RadiusConfig
from gateway.core import metrics
from gateway.radius.clients import Client
from gateway.radius.server import RadiusFront


async def test_requests_in_flight_are_answered_before_the_sockets_close() -> None:
    config = RadiusConfig(
        bind=("127.0.0.1",),
        auth_port=0,
        acct_port=0,
        clients=(RadiusClientConfig(name="sw", address="127.0.0.1", secret="s"),),
    )
    front = RadiusFront(config, SimpleNamespace(), drain_timeout_s=5.0)  # type: ignore[arg-type]
    release = asyncio.Event()

    async def slow(
        data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
    ) -> bytes | None:
        await release.wait()
        return b"answer:" + data[1:2]

    front.process.handle = slow  # type: ignore[method-assign]
    await front.start()
    dropped = metrics.RADIUS_DROPPED.labels("stopping")._value.get()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as switch:
        switch.bind(("127.0.0.1", 0))
        switch.settimeout(5)
        target = ("127.0.0.1", front.port("auth"))
        switch.sendto(b"\x01\x07\x00\x14" + os.urandom(16), target)
        await asyncio.sleep(0.1)  # in flight
        stopping = asyncio.create_task(front.stop())
        await asyncio.sleep(0.1)
        switch.sendto(b"\x01\x08\x00\x14" + os.urandom(16), target)  # arrives while stopping
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert await asyncio.to_thread(switch.recv, 100) == b"answer:\x07"
        switch.settimeout(0.3)
        try:
            late = switch.recv(100)
        except TimeoutError:
            late = b""
    assert late == b""
    assert metrics.RADIUS_DROPPED.labels("stopping")._value.get() == dropped + 1
    assert not front.listening()
