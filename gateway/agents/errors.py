"""What the management service refuses, as types with stable codes.

The HTTP layer maps each to one status (``gateway/api/errors.py``); the service
never speaks HTTP. ``NotFound`` covers "exists but not yours" on purpose: an agent
must not learn that another agent's customer exists.
"""

from __future__ import annotations

from gateway.core.errors import GatewayError


class ManagementError(GatewayError):
    """Base of every refusal of the management service."""

    code = "ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(ManagementError):
    """No such thing, or not one the caller may see (the two are not told apart)."""

    code = "NOT_FOUND"


class Unauthenticated(ManagementError):
    """No valid login: missing, expired or revoked token, or wrong credentials."""

    code = "UNAUTHENTICATED"


class Forbidden(ManagementError):
    """The caller may see the thing but not do this to it (role or mode rule)."""

    code = "FORBIDDEN"


class Conflict(ManagementError):
    """The request is valid but clashes with the current state (duplicate, overdraw)."""

    code = "CONFLICT"


class Invalid(ManagementError):
    """A field value the service refuses; ``field`` names it for the form."""

    code = "INVALID"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class RateLimited(ManagementError):
    """Too many attempts; ``retry_after_s`` says when to try again."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
