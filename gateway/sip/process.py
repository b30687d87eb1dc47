"""One INVITE in, one call authorization, one answer out.

The caller is read the way a proxy presents it: the From user (or the Digest
username, when credentials came along) is the extension; P-Asserted-Identity, else
Remote-Party-ID (party=calling), else the From user is the caller-ID; the Request-URI
user is the dialled number. ``Calls.authorize`` identifies, rates and routes the
call (an unroutable one holds no money), then holds money under (accounting NAS,
Call-ID), the key the switch's RADIUS accounting for the same call settles. No
business rule lives here: this maps headers to a ``Party`` and the decision to an
``Answer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.authz.identify import Credentials
from gateway.calls.lifecycle import Calls
from gateway.calls.types import Authorized, CallKey, Party, Policy
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.reasons import Reason, Refusal
from gateway.sip import digest, replies
from gateway.sip.message import Answer, Request
from gateway.sip.uri import addr_user, header_params, uri_user

log = logging.getLogger(__name__)

# An unreadable or foreign credential must fail any secret check.
_INVALID = Credentials(password="\x00invalid")


@dataclass(frozen=True, slots=True)
class SipSettings:
    """What the process needs from configuration (see ``SipConfig``)."""

    nas: str  # the RADIUS client whose accounting settles these calls
    policy: Policy  # that client's number plan and identification order
    trust_proxy_auth: bool = True
    retry_after_s: int = 5


def _trusted(_secret: str) -> bool:
    return True  # the proxy authenticated the caller before asking


def caller_id(request: Request) -> str | None:
    """P-Asserted-Identity, else Remote-Party-ID of the calling party, else the From user."""
    for value in request.all("P-Asserted-Identity"):
        user = addr_user(value)
        if user:
            return user
    for value in request.all("Remote-Party-ID"):
        if header_params(value).get("party", "calling") in ("calling", None):
            user = addr_user(value)
            if user:
                return user
    return addr_user(request.header("From") or "")


class SipProcess:
    """Answers INVITEs; see the module docstring."""

    def __init__(self, calls: Calls, settings: SipSettings) -> None:
        self.calls = calls
        self.settings = settings

    def party(self, request: Request, source_ip: str) -> Party:
        username = addr_user(request.header("From") or "")
        credentials = Credentials(verify=_trusted) if self.settings.trust_proxy_auth else None
        auth = request.header("Proxy-Authorization") or request.header("Authorization")
        if auth is not None:
            parsed = digest.parse(auth)
            if parsed is None:
                credentials = _INVALID
            else:
                username = parsed.username

                def verify(secret: str) -> bool:
                    return digest.verify(parsed, request.method, secret)

                credentials = Credentials(verify=verify)
        return Party(
            username=username,
            calling=caller_id(request),
            called=uri_user(request.uri),
            credentials=credentials or Credentials(),
            remote_addr=source_ip,
        )

    async def invite(self, request: Request, source_ip: str) -> Answer:
        """The final answer to a new INVITE: 302 with route and credit, or a refusal."""
        settings = self.settings
        party = self.party(request, source_ip)
        key = CallKey(settings.nas, request.call_id, "")
        try:
            decision = await self.calls.authorize(key, party, settings.policy, route=True)
        except BackendUnavailable as exc:
            log.warning("sip.backend_unavailable", extra={"error": str(exc)})
            return self._refuse(Reason.BACKEND_UNAVAILABLE)
        if isinstance(decision, Refusal):
            return self._refuse(decision.reason)
        if not isinstance(decision, Authorized) or decision.route is None:
            return self._refuse(Reason.DESTINATION_NOT_RATED)  # no number was dialled
        metrics.AUTHZ_DECISIONS.labels("accept").inc()
        route = decision.route
        return replies.redirect(route.number, route.gateways, decision.granted_s)

    def _refuse(self, reason: Reason) -> Answer:
        metrics.AUTHZ_DECISIONS.labels(reason.value).inc()
        return replies.refusal(reason, self.settings.retry_after_s)
