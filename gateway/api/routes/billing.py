"""Billing reports: balances, refills, payments, payment log, commissions (JSON and CSV)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["billing"])
