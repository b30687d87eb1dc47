"""The [sip] section: defaults, checks that name the key, settings from the NAS client."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, SipConfig, from_mapping
from gateway.rating.carriers import Gateway
from gateway.sip.server import settings

CLIENT = {"name": "kamailio", "address": "127.0.0.1", "secret": "s", "country_code": "44"}


def test_defaults() -> None:
    sip = from_mapping({}).sip
    assert (sip.enabled, sip.port, sip.transports) == (False, 5070, ("udp", "tcp"))
    assert sip.proxies == ("127.0.0.1", "::1") and sip.default_route == ()
    assert sip.transaction_ttl_s == 32.0 and sip.trust_proxy_auth is True


def test_file_and_environment() -> None:
    loaded = from_mapping(
        {
            "radius": {"clients": [CLIENT]},
            "sip": {
                "enabled": True,
                "accounting_nas": "kamailio",
                "default_route": ["gw1.example:5060", "[2001:db8::1]:5080;transport=tcp"],
            },
        },
        {"GATEWAY_SIP_PORT": "5090", "GATEWAY_SIP_PROXIES": "10.0.0.0/8, 192.0.2.7"},
    )
    assert loaded.sip.port == 5090 and loaded.sip.proxies == ("10.0.0.0/8", "192.0.2.7")
    made = settings(loaded.sip, loaded.radius.clients)
    assert made.nas == "kamailio" and made.policy.plan.country_code == "44"
    assert [Gateway.parse(g) for g in loaded.sip.default_route][1].transport == "tcp"


@pytest.mark.parametrize(
    ("sip", "message"),
    [
        ({"enabled": True}, "sip.accounting_nas: must name one of the [[radius.clients]]"),
        ({"enabled": True, "accounting_nas": "other"}, "got 'other'"),
        ({"port": 70000}, "sip.port: must be a port number"),
        ({"transports": ["sctp"]}, "sip.transports: unknown sctp"),
        ({"proxies": ["10.0.0.300"]}, "sip.proxies: not an IP address or network"),
        ({"default_route": ["gw:0"]}, "sip.default_route: 'gw:0': bad port"),
        ({"max_in_flight": 0}, "sip.max_in_flight: must be >= 1"),
    ],
)
def test_bad_values_name_the_key(sip: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"radius": {"clients": [CLIENT]}, "sip": sip})
    assert message in str(caught.value)


def test_settings_need_the_nas_among_the_clients() -> None:
    with pytest.raises(ValueError, match=r"sip\.accounting_nas"):
        settings(SipConfig(accounting_nas="gone"), ())
