"""Routes kept in step with PostgreSQL, and the route of one call.

``RouteCache`` is a ``GroupCache`` (``gateway.db.group_cache``), as the rates are:
the routes of each changed rate group reloaded, the index swapped in one assignment.

``Router`` picks the gateways of a call: the caller's rate group (found the way the
authorization will find it), the longest matching prefix of the normalized number,
else the configured default route.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from gateway.authz.directory import Directory
from gateway.authz.identify import Credentials, identify
from gateway.authz.reasons import Refusal
from gateway.calls import Party, Policy
from gateway.db.group_cache import GroupCache
from gateway.db.routes import CHANNEL, load_tables
from gateway.routes import Gateway, RouteIndex, RouteTable, ordered

log = logging.getLogger(__name__)


class RouteCache(GroupCache[RouteTable, RouteIndex]):
    """The current ``RouteIndex``, reloaded per changed rate group (migration 0005's
    triggers, channel ``gateway_routes``)."""

    def __init__(self, pool: asyncpg.Pool, database_url: str, **timing: float) -> None:
        super().__init__("routes", pool, database_url, CHANNEL, load_tables, RouteIndex, **timing)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: its normalized number and the gateways to try, in order.

    No gateways: the destination has no route (or its prefix is blocked).
    """

    number: str
    gateways: tuple[Gateway, ...]


class RouteSource(Protocol):
    """Anything with a current ``RouteIndex`` (the cache, or a fixed one in tests)."""

    @property
    def index(self) -> RouteIndex: ...


class Router:
    """Routes calls over the directory and the routes; see the module docstring."""

    def __init__(
        self, directory: Directory, routes: RouteSource, default: Sequence[Gateway]
    ) -> None:
        self.directory = directory
        self.routes = routes
        self.default = tuple(default)

    def route(self, party: Party, policy: Policy, call_id: str) -> Route | None:
        """The route of a call; None when the caller is not known (the authorization
        then refuses it with the right reason)."""
        account_id = self._caller(party, policy)
        if account_id is None:
            return None
        number = policy.number(party.called)
        account = self.directory.account(account_id)
        if number is None or account is None:
            return Route(number or "", ())
        found = None
        if account.rate_group_id is not None:
            found = self.routes.index.lookup(account.rate_group_id, number)
        if found is None:
            found = self.default
        return Route(number, ordered(found, call_id))

    def _caller(self, party: Party, policy: Policy) -> int | None:
        # Who the authorization will bill, without its checks (secret, status):
        # those belong to it and give the refusal its reason.
        caller = identify(
            self.directory,
            username=party.username,
            caller_number=policy.number(party.calling or party.username),
            credentials=Credentials(),
            order=policy.order,
            accounting=True,
        )
        return None if isinstance(caller, Refusal) else caller.account_id
