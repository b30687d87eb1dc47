"""Configuration: defaults, file and environment overrides, errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import config as cfg
from gateway.config import ConfigError, from_mapping, load

REPO = Path(__file__).resolve().parents[2]


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(env={})
    assert loaded.redis.url == ""
    assert loaded.database.url == ""
    assert loaded.service.state_dir == "var"


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[redis]\nurl = "redis://10.0.0.1:6379/0"\nmax_connections = 8\n')
    loaded = load(
        str(path),
        env={
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6380/1",
            "GATEWAY_DRAIN_TIMEOUT_S": "2.5",
            "GATEWAY_DATABASE_MIGRATE_ON_START": "no",
        },
    )
    assert loaded.redis.url == "redis://127.0.0.1:6380/1"
    assert loaded.redis.max_connections == 8
    assert loaded.service.drain_timeout_s == 2.5
    assert loaded.database.migrate_on_start is False


def test_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[service]\nlog_level = "debug"\n')
    assert load(env={"GATEWAY_CONFIG": str(path)}).service.log_level == "debug"


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({"redis": {"max_connections": 0}}, {}, "redis.max_connections: must be >= 1"),
        ({"redis": {"max_connections": "many"}}, {}, "redis.max_connections: must be a whole"),
        ({"redis": {"url": "http://x"}}, {}, "redis.url: must be empty"),
        ({"database": {"url": "mysql://x"}}, {}, "database.url: must be empty"),
        ({"service": {"log_level": "loud"}}, {}, "service.log_level: must be one of"),
        ({"service": {"colour": "red"}}, {}, "service.colour: unknown key"),
        ({"radiusx": {}}, {}, "[radiusx]: unknown section"),
        ({"database": {"pool_min": 5, "pool_max": 2}}, {}, "database.pool_min: must not exceed"),
        ({}, {"GATEWAY_REDIS_MAX_CONNECTIONS": "x"}, "(from GATEWAY_REDIS_MAX_CONNECTIONS)"),
        ({}, {"GATEWAY_DATABASE_MIGRATE_ON_START": "maybe"}, "must be true or false"),
    ],
)
def test_bad_values_name_the_key(
    data: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(data, env)
    assert message in str(caught.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[redis\nurl=")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load(str(path), env={})


def test_missing_explicit_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load("/nonexistent/gateway.toml", env={})


def test_show_masks_secrets() -> None:
    loaded = from_mapping({"database": {"url": "postgresql://gw:hunter2@db:5432/gw"}})
    shown = cfg.render(loaded, with_docs=False, mask=True)
    assert "hunter2" not in shown
    assert "postgresql://gw:***@db:5432/gw" in shown


def test_example_file_is_current_and_loads(tmp_path: Path) -> None:
    committed = (REPO / "gateway.example.toml").read_text()
    assert committed == cfg.example(), "run: gateway config example > gateway.example.toml"
    path = tmp_path / "copy.toml"
    path.write_text(committed)
    assert load(str(path), env={}) == cfg.Config()


def test_every_key_is_documented() -> None:
    text = cfg.example()
    for section in ("service", "redis", "database"):
        assert f"[{section}]" in text
    assert "# env: GATEWAY_REDIS_URL" in text
    assert "# env: GATEWAY_STATE_DIR" in text


def test_radius_clients_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        "[radius]\nauth_port = 11812\n\n"
        '[[radius.clients]]\nname = "kamailio"\naddress = "127.0.0.1"\nsecret = "s3cret"\n'
        'profile = "standard"\nrequire_message_authenticator = false\n'
        "return_codes = { ZERO_BALANCE = 14 }\n\n"
        '[[radius.clients]]\nname = "cisco-gw"\naddress = "10.0.0.0/24"\nsecret = "x"\n'
    )
    loaded = load(str(path), env={})
    kamailio, cisco = loaded.radius.clients
    assert (kamailio.name, kamailio.profile, kamailio.require_message_authenticator) == (
        "kamailio",
        "standard",
        False,
    )
    assert kamailio.return_codes == (("ZERO_BALANCE", 14),)
    assert cisco.profile == "cisco" and cisco.identify == ("extension", "caller_id")
    shown = cfg.render(loaded, with_docs=False, mask=True)
    assert "s3cret" not in shown and "[[radius.clients]]" in shown
    again = tmp_path / "again.toml"
    again.write_text(cfg.render(loaded, with_docs=False, mask=False))
    assert load(str(again), env={}) == loaded


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"name": "a b", "address": "127.0.0.1", "secret": "s"}, "radius.clients[0].name"),
        ({"name": "a", "address": "300.1.1.1", "secret": "s"}, "radius.clients[0].address"),
        ({"name": "a", "address": "127.0.0.1", "secret": ""}, "radius.clients[0].secret"),
        ({"name": "a", "address": "::1", "secret": "s", "profile": "x"}, "profile"),
        ({"name": "a", "address": "::1", "secret": "s", "identify": ["ani"]}, "identify"),
        ({"name": "a", "address": "::1", "secret": "s", "colour": 1}, "unknown key"),
    ],
)
def test_bad_client_names_the_key(client: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_mapping({"radius": {"clients": [client]}})


def test_duplicate_client_names() -> None:
    client = {"name": "a", "address": "::1", "secret": "s"}
    with pytest.raises(ConfigError, match="two clients are named 'a'"):
        from_mapping({"radius": {"clients": [client, client]}})


def test_config_check_says_which_switches_hold_whole_grants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import grant_notes, main

    path = tmp_path / "gateway.toml"
    path.write_text(
        "[[radius.clients]]\n"
        'name = "with-coa"\naddress = "192.0.2.1"\nsecret = "s1"\ncoa_port = 3799\n'
        "[[radius.clients]]\n"
        'name = "without"\naddress = "192.0.2.2"\nsecret = "s2"\n'
    )
    assert main(["--config", str(path), "config", "check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "radius client with-coa: slice grants",
        "radius client without: whole grants (no coa_port: it cannot be told to hang up)",
        "configuration OK",
    ]
    whole = from_mapping(
        {
            "balance": {"grant": "whole"},
            "radius": {
                "clients": [
                    {"name": "with-coa", "address": "192.0.2.1", "secret": "s", "coa_port": 3799}
                ]
            },
        }
    )
    assert grant_notes(whole) == ["radius client with-coa: whole grants"]


def test_slice_bounds_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"balance\.slice_min_s"):
        from_mapping({"balance": {"slice_min_s": 400, "slice_s": 300}})


def test_radius_tls_and_tcp_sub_tables(tmp_path: Path) -> None:
    cert = tmp_path / "gw.pem"
    cert.write_text("not checked here: the front loads it")
    loaded = from_mapping(
        {
            "radius": {
                "tls": {"enabled": True, "cert_file": str(cert), "key_file": str(cert)},
                "tcp": {"enabled": True, "auth_port": 11812},
                "clients": [
                    # A RADIUS/TLS-only switch needs no UDP secret.
                    {"name": "tls-only", "address": "192.0.2.1", "tls_identity": "sw.example"}
                ],
            }
        },
        env={"GATEWAY_RADIUS_TLS_CA_FILE": str(cert), "GATEWAY_RADIUS_TLS_PORT": "12083"},
    )
    assert loaded.radius.tls.enabled and loaded.radius.tls.port == 12083
    assert loaded.radius.tls.ca_file == str(cert)
    assert loaded.radius.tcp.auth_port == 11812 and loaded.radius.tcp.acct_port == 1813
    assert loaded.radius.clients[0].tls_secret == "radsec"
    again = tmp_path / "again.toml"
    again.write_text(cfg.render(loaded, with_docs=True, mask=False))
    assert load(str(again), env={}) == loaded


@pytest.mark.parametrize(
    ("radius", "message"),
    [
        ({"tls": {"enabled": True}}, "radius.tls.cert_file: must be set"),
        (
            {"tls": {"enabled": True, "cert_file": "/nope", "key_file": "/x", "ca_file": "/y"}},
            "radius.tls.cert_file: file not found",
        ),
        (
            {"clients": [{"name": "a", "address": "::1", "secret": "s", "psk_identity": "a"}]},
            "radius.clients[0].psk_identity: ",
        ),
        ({"clients": [{"name": "a", "address": "::1"}]}, "radius.clients[0].secret"),
        ({"tcp": {"colour": 1}}, "radius.tcp.colour: unknown key"),
    ],
)
def test_bad_radius_transport_config_names_the_key(radius: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_mapping({"radius": radius})
