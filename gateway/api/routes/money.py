"""Account information, money moves (refills, payments, transfers, commission) and add-funds requests."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["money"])
