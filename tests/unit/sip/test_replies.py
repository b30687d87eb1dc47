"""The SIP replies table: every refusal reason has its code, 302 carries route and credit."""

from __future__ import annotations

import pytest

from gateway.core.reasons import Reason
from gateway.rating.carriers import Gateway
from gateway.sip import replies

EXPECTED = {
    Reason.INSUFFICIENT_FUNDS: 402,
    Reason.ZERO_BALANCE: 402,
    Reason.AGENT_CAP: 402,
    Reason.UNKNOWN_CALLER: 403,
    Reason.ACCOUNT_DISABLED: 403,
    Reason.BAD_PASSWORD: 403,
    Reason.SESSION_ENDED: 403,
    Reason.DESTINATION_NOT_RATED: 404,
    Reason.DESTINATION_BLOCKED: 404,
    Reason.PRICE_LIMIT: 403,
    Reason.NEGATIVE_MARGIN: 403,
    Reason.SPEND_CAP_HOUR: 402,
    Reason.SPEND_CAP_DAY: 402,
    Reason.SPEND_CAP_CALL: 402,
    Reason.CPS_LIMIT: 403,
    Reason.TOO_MANY_CALLS: 486,
    Reason.OVERLOAD: 503,
    Reason.BACKEND_UNAVAILABLE: 503,
}


def test_every_reason_is_in_the_table() -> None:
    assert set(replies.REFUSALS) == set(Reason)
    assert set(EXPECTED) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_refusal_codes_and_headers(reason: Reason) -> None:
    answer = replies.refusal(reason, retry_after_s=7)
    assert answer.code == EXPECTED[reason]
    headers = dict(answer.headers)
    assert headers["X-Reason"] == reason.value
    assert ("Retry-After" in headers) is (answer.code == 503)
    if answer.code == 503:
        assert headers["Retry-After"] == "7"


def test_redirect_lists_gateways_in_order_with_falling_q_and_the_credit() -> None:
    gateways = [
        Gateway("gw1.example", 5060),
        Gateway("2001:db8::5", 5080, "tcp"),
        Gateway("192.0.2.9", 5061, "tls"),
    ]
    answer = replies.redirect("4930123456", gateways, 1800)
    assert (answer.code, answer.phrase) == (302, "Moved Temporarily")
    headers = dict(answer.headers)
    assert headers["Contact"] == (
        "<sip:4930123456@gw1.example:5060>;q=1.0, "
        "<sip:4930123456@[2001:db8::5]:5080;transport=tcp>;q=0.9, "
        "<sip:4930123456@192.0.2.9:5061;transport=tls>;q=0.8"
    )
    assert headers["X-Credit-Time"] == "1800" and headers["X-Max-Duration"] == "1800"


def test_redirect_keeps_at_most_ten_contacts() -> None:
    gateways = [Gateway(f"10.0.0.{i}") for i in range(15)]
    contact = dict(replies.redirect("1", gateways, 60).headers)["Contact"]
    assert contact.count("<sip:") == 10 and contact.endswith(";q=0.1")


def test_methods() -> None:
    assert replies.not_allowed("BYE").code == 405
    assert replies.not_allowed("FOO").code == 501
    for answer in (replies.not_allowed("BYE"), replies.not_allowed("FOO"), replies.options()):
        assert dict(answer.headers)["Allow"] == "INVITE, ACK, CANCEL, OPTIONS"
    assert replies.options().code == 200
    assert replies.bad_request("bad_cseq").phrase == "Bad Request (bad cseq)"
