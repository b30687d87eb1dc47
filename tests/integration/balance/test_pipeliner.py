"""The pipeliner's own connection: scripts survive a Redis connection cut, a stalled
Redis times the batch out, and a batch never reads another batch's replies."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.exceptions

from gateway.balance.keys import Keys
from gateway.balance.redisconn import create_client
from gateway.balance.scripts import Pipeliner, Script, load_scripts
from gateway.config import RedisConfig
from gateway.core.errors import BackendUnavailable
from tests.integration.tcp_proxy import TcpProxy


@pytest.fixture
async def proxied(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


async def _release_twice(pipeliner: Pipeliner, key: str) -> list[object]:
    # release.lua on a session that does not exist: a cheap script with a known reply.
    return list(
        await asyncio.gather(
            *(pipeliner.call("release", (f"{key}:{i}", f"{key}:due"), (60,)) for i in range(2))
        )
    )


async def test_calls_go_on_after_the_connection_is_cut(
    proxied: TcpProxy, redis_url: str, keys: Keys
) -> None:
    db = urlsplit(redis_url).path or "/0"
    client = create_client(
        RedisConfig(socket_timeout_s=1.0), f"redis://127.0.0.1:{proxied.port}{db}"
    )
    pipeliner = Pipeliner(client, load_scripts())
    try:
        await pipeliner.load()
        key = f"{keys.prefix}:{{s0}}:sess:x"
        first = await _release_twice(pipeliner, key)
        await proxied.cut()
        with pytest.raises(BackendUnavailable):
            await _release_twice(pipeliner, key)
        await proxied.restore()
        assert await _release_twice(pipeliner, key) == first
    finally:
        await client.aclose()


async def test_a_stalled_redis_times_the_batch_out(keys: Keys) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = create_client(RedisConfig(socket_timeout_s=0.3), f"redis://127.0.0.1:{port}/0")
    pipeliner = Pipeliner(client, load_scripts())
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(BackendUnavailable):
            await _release_twice(pipeliner, f"{keys.prefix}:{{s0}}:sess:y")
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_close_gives_the_connection_back_to_the_pool(redis_url: str, keys: Keys) -> None:
    # One connection in the pool: a second pipeliner works only if the first gave it back.
    client = create_client(RedisConfig(max_connections=1), redis_url)
    try:
        key = f"{keys.prefix}:{{s0}}:sess:z"
        for _ in range(3):
            pipeliner = Pipeliner(client, load_scripts())
            await pipeliner.load()
            assert len(await _release_twice(pipeliner, key)) == 2
            await pipeliner.close()
        assert await client.ping()
    finally:
        await client.aclose()


def _script(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


async def test_an_error_reply_fails_its_call_only_and_the_replies_stay_in_step(
    redis_url: str,
) -> None:
    # An error reply fails only the call it answers; every reply of the batch is read,
    # so the next batch reads its own replies, not this one's leftovers.
    scripts = {
        "echo": _script("echo", "return ARGV[1]"),
        "boom": _script("boom", "return redis.error_reply('BOOM ' .. ARGV[1])"),
    }
    client = create_client(RedisConfig(), redis_url)
    pipeliner = Pipeliner(client, scripts)
    try:
        await pipeliner.load()
        for round_ in range(2):
            replies = await asyncio.gather(
                pipeliner.call("echo", (), (f"a{round_}",)),
                pipeliner.call("boom", (), (f"b{round_}",)),
                pipeliner.call("echo", (), (f"c{round_}",)),
                return_exceptions=True,
            )
            assert replies[0] == f"a{round_}".encode()
            assert isinstance(replies[1], redis.exceptions.ResponseError)
            assert f"BOOM b{round_}" in str(replies[1])
            assert replies[2] == f"c{round_}".encode()
    finally:
        await pipeliner.close()
        await client.aclose()


async def test_a_script_redis_does_not_know_is_loaded_and_sent_again(redis_url: str) -> None:
    # NOSCRIPT comes back as a value among the batch's replies: the pipeliner loads its
    # scripts and sends the calls that got it again (a source of this test's own, so
    # Redis cannot know it yet).
    source = f"return 'fresh {uuid.uuid4().hex}'"
    scripts = {"fresh": _script("fresh", source), "echo": _script("echo", "return ARGV[1]")}
    client = create_client(RedisConfig(), redis_url)
    pipeliner = Pipeliner(client, scripts)
    try:
        await client.script_load(scripts["echo"].source)
        replies = await asyncio.gather(
            pipeliner.call("echo", (), ("x",)), pipeliner.call("fresh", (), ())
        )
        assert replies == [b"x", source.split("'")[1].encode()]
    finally:
        await pipeliner.close()
        await client.aclose()
