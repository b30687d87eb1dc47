"""What a paged list needs of the API's paging, without importing FastAPI here."""

from __future__ import annotations

from typing import Protocol


class PageRequest(Protocol):
    """A page of a list: window, sort key and direction (``gateway.api.deps.Paging`` fits)."""

    @property
    def limit(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def sort(self) -> str: ...

    @property
    def descending(self) -> bool: ...

    def order_by(self, columns: dict[str, str], tie_breaker: str) -> str: ...
