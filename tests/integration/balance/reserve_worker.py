"""One worker process of the two-worker overdraft test: reserves COUNT calls at once
on a chain already mirrored in Redis and prints how many were granted.

python -m tests.integration.balance.reserve_worker URL PREFIX SHARDS CHAIN_JSON COUNT MODE TAG AT

Both workers begin at unix time AT, so their requests reach Redis interleaved.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import create_client
from gateway.balance.store import BalanceStore, SessionRef
from gateway.balance.types import Grant
from gateway.config import BalanceConfig, RedisConfig
from gateway.rating.chain import Chain, Level
from tests import factories


async def main(
    url: str, prefix: str, shards: int, chain_json: str, count: int, mode: str, tag: str, at: float
) -> int:
    root, levels = json.loads(chain_json)
    chain = Chain(root, tuple(Level(a, True, factories.rate(p)) for a, p in levels))
    config = BalanceConfig(max_call_s=7200 if mode == "slice" else 60, slice_min_s=60)
    redis_config = RedisConfig(url=url)
    client = create_client(redis_config, url)
    store = BalanceStore(pipeliner_for(client, redis_config), Keys(prefix, shards), config)
    await store.pipeliner.load()
    await asyncio.sleep(max(0.0, at - time.time()))
    results = await asyncio.gather(
        *(
            store.reserve(
                SessionRef(root, f"{tag}-{i}"),
                chain,
                factories.meta(f"{tag}-{i}"),
                slice_mode=mode == "slice",
            )
            for i in range(count)
        )
    )
    await store.pipeliner.close()
    await client.aclose()
    return sum(isinstance(r, Grant) for r in results)


if __name__ == "__main__":
    url, prefix, shards, chain_json, count, mode, tag, at = sys.argv[1:9]
    print(asyncio.run(main(url, prefix, int(shards), chain_json, int(count), mode, tag, float(at))))
