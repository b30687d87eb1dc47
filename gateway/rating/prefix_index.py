"""Longest-prefix rate lookup for rate groups.

A ``RateTable`` holds the rates of one rate group in a dict keyed by prefix, so a
lookup costs one dict probe per distinct prefix length, independent of table size.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import pairwise

from gateway.rating.rates import Rate
from gateway.rating.rounding import EXACT, Rounding

# Stands in for an open start when ordering rates that share a prefix.
_OPEN_START = datetime.min.replace(tzinfo=UTC)


def _newest_first_key(rate: Rate) -> tuple[bool, datetime]:
    start = rate.effective_from
    return (start is not None, _OPEN_START if start is None else start)


class RateTable:
    """Immutable set of rates for one rate group, indexed for longest-prefix match.

    Several rates may share a prefix with different periods. When more than one is
    in force at the same instant, the one with the latest ``effective_from`` wins
    (a newly published rate supersedes an older open-ended one). Two rates with the
    same prefix *and* the same ``effective_from`` are ambiguous and rejected.
    """

    __slots__ = ("_by_prefix", "_count", "_lengths", "rounding")

    def __init__(self, rates: Iterable[Rate], rounding: Rounding = EXACT) -> None:
        """Index ``rates``; raises ``ValueError`` on a duplicate (prefix, effective_from).
        ``rounding``: how the group rounds a call's cost."""
        self.rounding = rounding
        # A prefix with one rate (the common case) maps straight to it; a list per
        # prefix would cost ~70 bytes per entry across millions of rows.
        by_prefix: dict[str, Rate | tuple[Rate, ...]] = {}
        shared: dict[str, list[Rate]] = {}
        count = 0
        for rate in rates:
            count += 1
            prefix = rate.prefix
            existing = by_prefix.get(prefix)
            if existing is None:
                by_prefix[prefix] = rate
                continue
            group = shared.get(prefix)
            if group is None:
                # Only single rates are stored while building; tuples come after the loop.
                shared[prefix] = [existing, rate]  # type: ignore[list-item]
            else:
                group.append(rate)
        for prefix, group in shared.items():
            group.sort(key=_newest_first_key, reverse=True)
            for newer, older in pairwise(group):
                if newer.effective_from == older.effective_from:
                    raise ValueError(
                        f"duplicate rate for prefix {prefix} with effective_from "
                        f"{_describe_start(newer.effective_from)}"
                    )
            by_prefix[prefix] = tuple(group)
        self._by_prefix = by_prefix
        self._count = count
        # Probing only lengths that exist skips useless slices on sparse decks.
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))

    def lookup(self, number: str, at: datetime) -> Rate | None:
        """Return the rate for ``number`` (normalised digits) in force at ``at``.

        The longest prefix of ``number`` with a rate in force at ``at`` wins; when
        the longest matching prefix has none in force, shorter prefixes are tried.
        ``None`` when no prefix matches. Raises ``ValueError`` if ``at`` is naive.
        """
        if at.utcoffset() is None:
            raise ValueError(f"'at' must be timezone-aware, got naive {at.isoformat()}")
        by_prefix = self._by_prefix
        size = len(number)
        for length in self._lengths:
            if length > size:
                continue
            entry = by_prefix.get(number[:length])
            if entry is None:
                continue
            if isinstance(entry, tuple):
                for rate in entry:
                    if _in_force(rate, at):
                        return rate
                continue
            # Inlined _in_force: this branch runs for almost every matching probe.
            start = entry.effective_from
            end = entry.effective_to
            if (start is None or start <= at) and (end is None or at < end):
                return entry
        return None

    @property
    def max_prefix_length(self) -> int:
        """Length of the longest prefix in the table (0 when empty)."""
        return self._lengths[0] if self._lengths else 0

    def __len__(self) -> int:
        """Number of rates in the table (not of distinct prefixes)."""
        return self._count

    def __iter__(self) -> Iterator[Rate]:
        """Yield every rate once, grouped by prefix, newest first within a prefix."""
        for entry in self._by_prefix.values():
            if isinstance(entry, Rate):
                yield entry
            else:
                yield from entry

    def __repr__(self) -> str:
        return f"RateTable(<{self._count} rates, {len(self._by_prefix)} prefixes>)"


def _in_force(rate: Rate, at: datetime) -> bool:
    # Same rule as Rate.in_force minus the naive check, which lookup did once already.
    start = rate.effective_from
    if start is not None and at < start:
        return False
    end = rate.effective_to
    return end is None or at < end


def _describe_start(start: datetime | None) -> str:
    return "open" if start is None else start.isoformat()


class UnknownRateGroup(KeyError):
    """Raised when a rate group id has no table in a ``RatingIndex``."""


class RatingIndex(Mapping[int, RateTable]):
    """Read-only mapping of rate-group id to its ``RateTable``.

    Instances are never mutated; ``with_table`` returns a new index so a reload can
    swap the whole index in one assignment while lookups keep running.
    """

    __slots__ = ("_tables",)

    def __init__(self, tables: Mapping[int, RateTable] | None = None) -> None:
        """Wrap a copy of ``tables`` (so later changes to the argument do not leak in)."""
        self._tables: dict[int, RateTable] = dict(tables) if tables is not None else {}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, Rate]]) -> "RatingIndex":
        """Build an index from ``(group_id, rate)`` pairs, one table per group."""
        grouped: defaultdict[int, list[Rate]] = defaultdict(list)
        for group_id, rate in rows:
            grouped[group_id].append(rate)
        return cls({group_id: RateTable(rates) for group_id, rates in grouped.items()})

    def lookup(self, group_id: int, number: str, at: datetime) -> Rate | None:
        """Return ``self[group_id].lookup(number, at)``.

        Raises ``UnknownRateGroup`` (a ``KeyError``) when the group has no table, so
        a misconfigured account is told apart from an unroutable number (``None``).
        """
        table = self._tables.get(group_id)
        if table is None:
            raise UnknownRateGroup(group_id)
        return table.lookup(number, at)

    def rounding(self, group_id: int) -> Rounding:
        """How ``group_id`` rounds a call's cost (exact for a group not indexed)."""
        table = self._tables.get(group_id)
        return EXACT if table is None else table.rounding

    def with_table(self, group_id: int, table: RateTable) -> "RatingIndex":
        """Return a new index with ``group_id`` set to ``table``; ``self`` is unchanged."""
        tables = dict(self._tables)
        tables[group_id] = table
        return RatingIndex(tables)

    def __getitem__(self, group_id: int) -> RateTable:
        try:
            return self._tables[group_id]
        except KeyError:
            raise UnknownRateGroup(group_id) from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"RatingIndex(<{len(self._tables)} rate groups>)"
