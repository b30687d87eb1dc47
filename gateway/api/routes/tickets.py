"""Tickets and the operator's messages to agents."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["tickets"])
