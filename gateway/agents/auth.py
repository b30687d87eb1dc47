"""Logins, sessions and passwords.

A session is a random token handed to the client once; PostgreSQL keeps only its
SHA-256, with a sliding expiry (``api.session_ttl_s``). Failed logins are counted in
Redis per login name and per source address; past ``api.login_attempts`` in
``api.login_window_s`` the next try is refused before the password is even checked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Invalid, RateLimited, Unauthenticated
from gateway.agents.passwords import hash_password, verify_password
from gateway.agents.principal import Principal, load_principal
from gateway.balance.redisconn import redis_errors
from gateway.db.pool import pg_errors

MIN_PASSWORD_LEN = 8
# Expiry is pushed forward at most this often, so reads do not all become writes.
_SLIDE_EVERY = timedelta(seconds=60)
# Verified against when the login does not exist, so both cases take as long.
_DUMMY_HASH = hash_password("not-a-real-password")


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_at: datetime
    principal: Principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# Count one failure; the window starts at the first. (``EXPIRE ... NX`` would say it in
# one command, but needs Redis 7 and the embedded Redis is 6.2.)
_COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


async def _check_throttle(ctx: ManagementContext, login: str, remote_addr: str) -> None:
    limit = ctx.config.api.login_attempts
    names = [ctx.keys.login_failures("name", login.lower())]
    if remote_addr:
        names.append(ctx.keys.login_failures("addr", remote_addr))
    with redis_errors():
        # one GET each, not MGET: the two keys are in different Redis Cluster slots
        counts = [await ctx.redis.get(name) for name in names]
        for name, count in zip(names, counts, strict=True):
            if count is not None and int(count) >= limit:
                ttl = await ctx.redis.ttl(name)
                raise RateLimited("too many failed logins; try again later", max(int(ttl), 1))


async def _count_failure(ctx: ManagementContext, login: str, remote_addr: str) -> None:
    window = ctx.config.api.login_window_s
    names = [ctx.keys.login_failures("name", login.lower())]
    if remote_addr:
        names.append(ctx.keys.login_failures("addr", remote_addr))
    with redis_errors():
        for name in names:
            await ctx.redis.eval(_COUNT_FAILURE, 1, name, window)


async def login(ctx: ManagementContext, login: str, password: str, remote_addr: str) -> Session:
    """A new session for valid credentials; ``Unauthenticated`` or ``RateLimited`` else."""
    await _check_throttle(ctx, login, remote_addr)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, password_hash FROM users WHERE lower(login) = lower($1)", login
            )
            ok = verify_password(row["password_hash"] if row else _DUMMY_HASH, password)
            principal = await load_principal(conn, row["id"]) if row and ok else None
            if row is None or principal is None:
                await _count_failure(ctx, login, remote_addr)
                raise Unauthenticated("wrong login or password")
            token = secrets.token_urlsafe(32)
            expires_at = datetime.now(UTC) + timedelta(seconds=ctx.config.api.session_ttl_s)
            await conn.execute(
                "INSERT INTO api_sessions (token_sha256, user_id, expires_at, remote_addr) "
                "VALUES ($1, $2, $3, $4)",
                _digest(token),
                principal.user_id,
                expires_at,
                remote_addr,
            )
            await conn.execute(
                "UPDATE users SET last_login_at = now() WHERE id = $1", principal.user_id
            )
    with redis_errors():
        await ctx.redis.delete(ctx.keys.login_failures("name", login.lower()))
    return Session(token, expires_at, principal)


async def authenticate(ctx: ManagementContext, token: str) -> Principal:
    """The principal behind a live session token; ``Unauthenticated`` when there is none."""
    if not token:
        raise Unauthenticated("login required")
    now = datetime.now(UTC)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT user_id, last_seen_at FROM api_sessions "
                "WHERE token_sha256 = $1 AND expires_at > $2",
                _digest(token),
                now,
            )
            if row is None:
                raise Unauthenticated("session expired or unknown; log in again")
            principal = await load_principal(conn, row["user_id"])
            if principal is None:
                raise Unauthenticated("user disabled or removed")
            if now - row["last_seen_at"] > _SLIDE_EVERY:
                await conn.execute(
                    "UPDATE api_sessions SET last_seen_at = $2, expires_at = $3 "
                    "WHERE token_sha256 = $1",
                    _digest(token),
                    now,
                    now + timedelta(seconds=ctx.config.api.session_ttl_s),
                )
    return principal


async def logout(ctx: ManagementContext, token: str) -> None:
    """End the session of ``token`` (no error when it is already gone)."""
    with pg_errors():
        await ctx.pool.execute("DELETE FROM api_sessions WHERE token_sha256 = $1", _digest(token))


def check_new_password(password: str, field: str = "new_password") -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise Invalid(field, f"must be at least {MIN_PASSWORD_LEN} characters")
    if len(password) > 256:
        raise Invalid(field, "must be at most 256 characters")


async def change_password(
    ctx: ManagementContext, principal: Principal, current: str, new: str, keep_token: str
) -> None:
    """Replace the caller's password; every other session of the user ends."""
    check_new_password(new)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(
                "SELECT password_hash FROM users WHERE id = $1 FOR UPDATE", principal.user_id
            )
            if stored is None or not verify_password(stored, current):
                raise Invalid("current_password", "does not match the current password")
            await conn.execute(
                "UPDATE users SET password_hash = $2, password_changed_at = now(), "
                "updated_at = now() WHERE id = $1",
                principal.user_id,
                hash_password(new),
            )
            await conn.execute(
                "DELETE FROM api_sessions WHERE user_id = $1 AND token_sha256 <> $2",
                principal.user_id,
                _digest(keep_token),
            )
