"""One RADIUS request in, one call event, one reply out (or none).

Access-Request -> ``Calls.authorize``; Accounting-Request Start / Interim-Update /
Stop / Accounting-On / Off -> ``answered`` / ``interim`` / ``ended`` /
``nas_restarted``. No business rule lives here: this maps attributes through the
client's profile and maps the outcome back. What must not be answered gets None:
malformed or forged packets (dropped and counted) and requests whose outcome could
not be made durable (the switch retries).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from gateway.authz.identify import Credentials
from gateway.balance.types import CallEnd
from gateway.calls.lifecycle import Calls
from gateway.calls.types import Authorized, CallKey, LoginAccepted, Party
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.reasons import Reason, Refusal
from gateway.radius import auth, coa
from gateway.radius.clients import Client
from gateway.radius.codec import MalformedPacket, Packet, PacketCode, decode_request, encode_reply
from gateway.radius.profiles import PROFILES, CallFacts
from gateway.radius.replies import SILENT, reply_message

log = logging.getLogger(__name__)

STATUS_START, STATUS_STOP, STATUS_INTERIM, STATUS_ON, STATUS_OFF = 1, 2, 3, 7, 8
STATUS_FAILED = 15  # Kamailio acc_radius: a call that never connected
_CALL_EVENTS = (STATUS_START, STATUS_INTERIM, STATUS_STOP, STATUS_FAILED)
_STATUS_NAMES = {
    STATUS_FAILED: "failed",
    STATUS_START: "start",
    STATUS_STOP: "stop",
    STATUS_INTERIM: "interim",
    STATUS_ON: "accounting_on",
    STATUS_OFF: "accounting_off",
}

NO_CREDENTIALS = Credentials()


def _party(facts: CallFacts, credentials: Credentials, addr: tuple[Any, ...]) -> Party:
    return Party(
        username=facts.username,
        calling=facts.calling,
        called=facts.called,
        credentials=credentials,
        remote_addr=str(addr[0]),
    )


class RadiusProcess:
    """The request handler the listener calls: bytes in, bytes (or None) out."""

    def __init__(self, calls: Calls, *, interim_may_grow: bool = True) -> None:
        self.calls = calls
        self.interim_may_grow = interim_may_grow

    async def handle(
        self, data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
    ) -> bytes | None:
        """``port``: the kind of port the request came on (``auth`` or ``acct``), which
        decides only how a Status-Server is answered."""
        try:
            packet = decode_request(data)
        except MalformedPacket as exc:
            metrics.RADIUS_DROPPED.labels(f"malformed_{exc.reason}").inc()
            return None
        kind = "access" if packet.code == PacketCode.ACCESS_REQUEST else "accounting"
        try:
            if packet.code == PacketCode.ACCESS_REQUEST:
                return await self._access(packet, client, addr)
            if packet.code == PacketCode.ACCOUNTING_REQUEST:
                return await self._accounting(packet, client, addr)
            if packet.code == PacketCode.STATUS_SERVER:
                return self._status_server(packet, client, port)
        except BackendUnavailable as exc:
            # No reply: the switch retries or fails over, and nothing was lost.
            log.warning(
                "radius.backend_unavailable", extra={"client": client.name, "error": str(exc)}
            )
            metrics.RADIUS_REQUESTS.labels(kind, "no_reply_backend", client.name).inc()
            return None
        metrics.RADIUS_DROPPED.labels("unsupported_code").inc()
        return None

    def _status_server(self, packet: Packet, client: Client, port: str) -> bytes | None:
        """RFC 5997: a proxy asks whether we are alive. Answered only when signed, with
        Access-Accept on the authentication port and Accounting-Response on the
        accounting one (section 3); the call path is never touched."""
        if auth.verify_message_authenticator(packet, client.secret) is not True:
            metrics.RADIUS_DROPPED.labels("bad_message_authenticator").inc()
            return None
        metrics.RADIUS_REQUESTS.labels("status", "alive", client.name).inc()
        code = PacketCode.ACCOUNTING_RESPONSE if port == "acct" else PacketCode.ACCESS_ACCEPT
        return encode_reply(packet, code, [], client.secret)

    # -- Access-Request ---------------------------------------------------------------

    async def _access(self, packet: Packet, client: Client, addr: tuple[Any, ...]) -> bytes | None:
        verified = auth.verify_message_authenticator(packet, client.secret)
        if verified is False:
            metrics.RADIUS_DROPPED.labels("bad_message_authenticator").inc()
            return None
        if verified is None and client.require_message_authenticator:
            metrics.RADIUS_DROPPED.labels("missing_message_authenticator").inc()
            return None
        profile = PROFILES[client.profile]
        facts = profile.facts(packet)
        party = _party(facts, self._credentials(packet, client), addr)
        # Only Acct-Session-Id names the session here: a conference or call id links
        # the hold to the accounting, which may name the session otherwise.
        key = CallKey(
            client.name,
            facts.accounting_id or "",
            facts.leg,
            find_links=partial(profile.links, packet),
        )
        decision = await self.calls.authorize(key, party, client.policy)
        if isinstance(decision, Refusal):
            metrics.child(metrics.AUTHZ_DECISIONS, decision.reason.value).inc()
            return self._reject(packet, client, decision.reason)
        metrics.child(metrics.AUTHZ_DECISIONS, "accept").inc()
        metrics.child(metrics.RADIUS_REQUESTS, "access", "accept", client.name).inc()
        if isinstance(decision, LoginAccepted):
            attributes = profile.login_accept()
        else:
            assert isinstance(decision, Authorized)
            attributes = profile.accept(
                decision.granted_s,
                decision.available_micros,
                decision.currency,
                low_balance=decision.low_balance,
            )
        return encode_reply(packet, PacketCode.ACCESS_ACCEPT, attributes, client.secret)

    def _credentials(self, packet: Packet, client: Client) -> Credentials:
        if "User-Password" in packet:
            try:
                password = auth.decrypt_user_password(packet, client.secret)
            except MalformedPacket:
                password = None
            # An unreadable password must fail the check, never count as "no password".
            return Credentials(password=password if password is not None else "\x00invalid")
        if "CHAP-Password" in packet:
            return Credentials(verify=lambda secret: auth.verify_chap(packet, secret))
        return Credentials()

    def _reject(self, packet: Packet, client: Client, reason: Reason) -> bytes | None:
        if reason in SILENT:
            return None
        metrics.child(metrics.RADIUS_REQUESTS, "access", "reject", client.name).inc()
        profile = PROFILES[client.profile]
        attributes = profile.reject(client.codes.code(reason), reply_message(reason))
        return encode_reply(packet, PacketCode.ACCESS_REJECT, attributes, client.secret)

    # -- Accounting-Request -----------------------------------------------------------

    async def _accounting(
        self, packet: Packet, client: Client, addr: tuple[Any, ...]
    ) -> bytes | None:
        if not auth.verify_accounting_request(packet, client.secret):
            metrics.RADIUS_DROPPED.labels("bad_authenticator").inc()
            return None
        status = packet.get_int("Acct-Status-Type")
        kind = _STATUS_NAMES.get(status or 0, "other")
        profile = PROFILES[client.profile]
        facts = profile.facts(packet)
        now = time.time()
        if status in (STATUS_ON, STATUS_OFF):
            await self.calls.nas_restarted(client.name, now)
        elif status in _CALL_EVENTS:
            if not facts.session_id:
                metrics.RADIUS_DROPPED.labels("no_session_id").inc()
                return None
            if not client.policy.bills(facts.leg):
                kind = "other_leg"  # acknowledged, not billed: the other leg is
            durable = await self._call_event(packet, client, addr, facts, status, now)
            if not durable:
                return None
        metrics.child(metrics.RADIUS_REQUESTS, "accounting", kind, client.name).inc()
        return encode_reply(packet, PacketCode.ACCOUNTING_RESPONSE, [], client.secret)

    async def _call_event(
        self,
        packet: Packet,
        client: Client,
        addr: tuple[Any, ...],
        facts: CallFacts,
        status: int | None,
        now: float,
    ) -> bool:
        assert facts.session_id is not None
        links = partial(PROFILES[client.profile].links, packet)
        key = CallKey(client.name, facts.session_id, facts.leg, find_links=links)
        party = _party(facts, NO_CREDENTIALS, addr)
        reported = packet.get_int("Acct-Session-Time")
        elapsed = reported or 0
        if status == STATUS_START:
            answered_at = facts.connect_at or facts.disconnect_at or now
            reach = coa.reach(client, addr, packet)
            await self.calls.answered(key, party, client.policy, answered_at, reach)
            return True
        if status == STATUS_INTERIM:
            reach = coa.reach(client, addr, packet)
            await self.calls.interim(
                key, party, client.policy, self.interim_may_grow, reported, reach, now
            )
            return True
        disconnect_at = facts.disconnect_at or now
        if status == STATUS_FAILED:
            duration: int | None = 0
        elif reported is None:
            duration = None  # the call's own answer time tells (Calls.ended)
        else:
            duration = max(reported, 0)
        connect_at = facts.connect_at or (disconnect_at - elapsed if elapsed else None)
        end = CallEnd(
            disconnect_at=disconnect_at,
            cause=facts.cause,
            connect_at=connect_at,
            cause_q850=facts.cause_q850,
            duration_ms=facts.duration_ms if status != STATUS_FAILED else None,
        )
        ended = await self.calls.ended(key, party, client.policy, duration, end)
        if ended.settled is None and ended.reason and client.policy.bills(facts.leg):
            log.warning(
                "radius.stop_unbilled",
                extra={"client": client.name, "session": key.session_key, "reason": ended.reason},
            )
        return True
