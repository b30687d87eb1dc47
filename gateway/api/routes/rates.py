"""Rate groups and rates: browse, search, and private groups of transfer-mode agents."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["rates"])
