"""How a rate group rounds the final cost of a call, per level of the chain.

Costs are computed in micro-units and rounded up to the micro-unit once; a group
may then round that to fewer decimals (``decimals`` 0..6: 4 decimals is a multiple
of 100 micros), either up or half-up (to the nearest, a half going up). The
balance scripts read the same two numbers (lib.lua round_cost).
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("up", "half_up")


@dataclass(frozen=True, slots=True)
class Rounding:
    """``decimals`` kept of a call's cost and the ``mode`` that drops the rest."""

    decimals: int = 6
    mode: str = "up"

    def __post_init__(self) -> None:
        if type(self.decimals) is not int or not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals must be 0 to 6, got {self.decimals!r}")
        if self.mode not in MODES:
            raise ValueError(f"rounding must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def quantum(self) -> int:
        """The micros a rounded cost is a multiple of (1 at 6 decimals)."""
        return int(10 ** (6 - self.decimals))

    @property
    def exact(self) -> bool:
        return self.decimals == 6

    def apply(self, micros: int) -> int:
        """``micros`` rounded to ``decimals``: never below 0, non-decreasing."""
        q = self.quantum
        if q == 1:
            return micros
        if self.mode == "half_up":
            return (micros + q // 2) // q * q
        return -(-micros // q) * q

    def budget(self, available: int) -> int:
        """The largest unrounded cost whose rounding is <= ``available`` (>= 0)."""
        q = self.quantum
        if q == 1:
            return available
        if self.mode == "half_up":
            return (available // q + 1) * q - q // 2 - 1
        return available // q * q


EXACT = Rounding()
