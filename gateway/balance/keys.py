"""Redis key names, in one place.

Account trees are spread over ``redis.shards`` hash tags ``{s<k>}``, k = root account
id mod shards. Every key of one tree (its accounts, its calls' sessions) and the
shard's settlement stream and sweep set carry that tag, so each Lua script touches
one Redis Cluster slot, and settle can debit and append to the stream atomically.
"""

from __future__ import annotations


class Keys:
    """Key builder for one deployment's prefix (``redis.key_prefix``)."""

    __slots__ = ("prefix", "shards")

    def __init__(self, prefix: str, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.prefix = prefix
        self.shards = shards

    def shard_of(self, root_id: int) -> int:
        return root_id % self.shards

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}"

    def account(self, root_id: int, account_id: int) -> str:
        """Hash: balance, credit limit, held, calls up, status of one account."""
        return f"{self.tag(self.shard_of(root_id))}:acct:{account_id}"

    def countries(self, root_id: int, account_id: int) -> str:
        """The countries a customer has dialled, first-seen times (fraud checks)."""
        return f"{self.tag(self.shard_of(root_id))}:cc:{account_id}"

    def session(self, root_id: int, session_key: str) -> str:
        """Hash: one call's reservation (accounts, rates, holds, granted time, state)."""
        return f"{self.tag(self.shard_of(root_id))}:sess:{session_key}"

    def due(self, shard: int) -> str:
        """Sorted set: session key -> deadline after which the sweeper ends it."""
        return f"{self.tag(shard)}:due"

    def slices(self, shard: int) -> str:
        """Sorted set: slice-mode session key -> when the slice keeper looks at it next
        (its held time is about to run out, or it was cut and must end then)."""
        return f"{self.tag(shard)}:slices"

    def link(self, root_id: int, nas: str, link: str) -> str:
        """Sorted set: provisional holds (session keys) an accounting request of ``nas``
        may take over by ``link`` (a conference id, a call id, a caller and number)."""
        return f"{self.tag(self.shard_of(root_id))}:link:{nas}|{link}"

    def settlements(self, shard: int) -> str:
        """Stream: settled calls waiting for the committer."""
        return f"{self.tag(shard)}:settle"

    def commits_channel(self, shard: int) -> str:
        """Pub/sub channel: the committers announce each batch of the shard's stream they
        committed (gateway.settlement.commit_wait)."""
        return f"{self.settlements(shard)}:committed"

    def dead_settlements(self, shard: int) -> str:
        """Stream: settlements the committer could not store (malformed), kept for people."""
        return f"{self.settlements(shard)}:dead"

    def move_seen(self, root_id: int, ledger_id: int) -> str:
        """Marker that a money move was mirrored (apply_move.lua's dedupe)."""
        return f"{self.tag(self.shard_of(root_id))}:mv:{ledger_id}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:{{lock}}:{name}"

    def login_failures(self, scope: str, who: str) -> str:
        """Counter of failed logins by one login name or source address (``scope``)."""
        return f"{self.prefix}:login:{scope}:{who}"

    def sessions_pattern(self, nas: str | None = None) -> str:
        """Glob matching the sessions of every shard (of switch ``nas`` when given): one
        SCAN pass per node, where a pass per shard would read each node ``shards`` times."""
        head = f"{glob_escape(self.prefix)}:{{s*}}:sess:"
        return head + ("*" if nas is None else f"{glob_escape(nas)}|*")

    def shard_of_key(self, key: str) -> int:
        """The shard a key of this deployment carries in its hash tag."""
        start = len(self.prefix) + 3
        return int(key[start : key.index("}", start)])

    def pattern(self) -> str:
        """Glob matching every key of this deployment (for tests and reconcile)."""
        return f"{self.prefix}:*"


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (SCAN MATCH)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
