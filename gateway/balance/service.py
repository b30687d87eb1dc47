"""The balance service: scripts loaded, store, mirror and sweeper wired together."""

from __future__ import annotations

import asyncpg

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.mirror import AccountMirror
from gateway.balance.redisconn import RedisClient
from gateway.balance.store import BalanceStore, NotLoaded, SessionRef
from gateway.balance.sweeper import Sweeper
from gateway.balance.types import CallEnd, CallMeta, Grant, Settled
from gateway.config import BalanceConfig, RedisConfig
from gateway.core.reasons import Refusal
from gateway.rating.chain import Chain


class Balance:
    """Reservations that load accounts into Redis on first use."""

    name = "balance"

    def __init__(
        self,
        config: BalanceConfig,
        redis: RedisClient,
        pool: asyncpg.Pool,
        keys: Keys,
        redis_config: RedisConfig | None = None,
    ) -> None:
        self.pipeliner = pipeliner_for(redis, redis_config)
        self.store = BalanceStore(self.pipeliner, keys, config)
        self.mirror = AccountMirror(pool, self.pipeliner, keys)
        self.sweeper = Sweeper(self.store)

    async def start(self) -> None:
        await self.pipeliner.load()
        await self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()
        await self.pipeliner.close()

    async def reserve(
        self,
        ref: SessionRef,
        chain: Chain,
        meta: CallMeta,
        *,
        slice_mode: bool = False,
        links: tuple[tuple[str, int], ...] = (),
        answered_at: float | None = None,
    ) -> Grant | Refusal:
        """``BalanceStore.reserve``, mirroring the chain's accounts first when needed."""
        try:
            return await self.store.reserve(
                ref, chain, meta, slice_mode=slice_mode, links=links, answered_at=answered_at
            )
        except NotLoaded:
            await self.mirror.load(chain.account_ids)
            return await self.store.reserve(
                ref, chain, meta, slice_mode=slice_mode, links=links, answered_at=answered_at
            )

    async def charge(
        self, ref: SessionRef, chain: Chain, meta: CallMeta, duration_s: int, end: CallEnd
    ) -> Settled:
        """``BalanceStore.charge``, mirroring the chain's accounts first when needed."""
        try:
            return await self.store.charge(ref, chain, meta, duration_s, end)
        except NotLoaded:
            await self.mirror.load(chain.account_ids)
            return await self.store.charge(ref, chain, meta, duration_s, end)
