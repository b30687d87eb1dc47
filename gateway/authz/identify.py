"""Identify the caller: by extension (SIP username, with its secret when it has one),
by caller-ID (the calling number, normalized), or by DID (the called number is one of
a customer's inbound numbers: the call is the owner's, rated inbound), in the
configured order."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.authz.directory import Directory
from gateway.core.reasons import Reason, Refusal

BY_EXTENSION = "extension"
BY_CALLER_ID = "caller_id"
BY_DID = "did"
METHODS = (BY_EXTENSION, BY_CALLER_ID, BY_DID)


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Credentials:
    """What the front received to prove the caller: nothing, a password, or a check.

    ``verify`` takes the extension's secret and says whether the request proves
    knowledge of it (CHAP, digest); ``password`` is a PAP cleartext.
    """

    password: str | None = None
    verify: Callable[[str], bool] | None = None

    @property
    def present(self) -> bool:
        return self.password is not None or self.verify is not None

    def matches(self, secret: str) -> bool:
        if self.verify is not None:
            return self.verify(secret)
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), secret.encode())
        return False


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Caller:
    """An identified caller: the paying account and how it was recognized."""

    account_id: int
    method: str

    @property
    def inbound(self) -> bool:
        """A call to the account's DID: rated at its inbound rate groups."""
        return self.method == BY_DID


def identify(
    directory: Directory,
    *,
    username: str | None,
    caller_number: str | None,
    credentials: Credentials,
    order: Sequence[str],
    accounting: bool = False,
    check_secret: bool = True,
    called_number: str | None = None,
) -> Caller | Refusal:
    """The account a call is billed to, or why the caller is refused.

    For ``accounting`` (the switch already let the call through) neither the secret
    nor the status is checked: a call that happened is billed to whoever made it,
    even if the account was disabled meanwhile.
    """
    for method in order:
        if method == BY_EXTENSION and username:
            extension = directory.extension(username)
            if extension is None:
                continue
            if accounting:
                return _customer(directory, extension.account_id, BY_EXTENSION, accounting)
            if not extension.active:
                return Refusal(Reason.ACCOUNT_DISABLED, extension.account_id, detail="extension")
            # check_secret off: the switch authenticated the user itself (Kamailio
            # with misc_radius sends no password at all).
            if check_secret and extension.secret and not credentials.matches(extension.secret):
                return Refusal(Reason.BAD_PASSWORD, extension.account_id)
            return _customer(directory, extension.account_id, BY_EXTENSION, accounting)
        if method == BY_CALLER_ID and caller_number:
            account_id = directory.caller_id(caller_number)
            if account_id is not None:
                return _customer(directory, account_id, BY_CALLER_ID, accounting)
        if method == BY_DID and called_number:
            owner = directory.did(called_number)
            if owner is not None:
                return _customer(directory, owner, BY_DID, accounting)
    return Refusal(Reason.UNKNOWN_CALLER)


def _customer(
    directory: Directory, account_id: int, method: str, accounting: bool
) -> Caller | Refusal:
    account = directory.account(account_id)
    if account is None or account.kind != "customer":
        return Refusal(Reason.UNKNOWN_CALLER, account_id, detail="not a customer account")
    if account.status != "active" and not accounting:
        return Refusal(Reason.ACCOUNT_DISABLED, account_id)
    return Caller(account_id, method)
