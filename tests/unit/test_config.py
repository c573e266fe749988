"""Configuration loading: strict validation with errors naming file and key, secrets, defaults, the example
file, the sandbox configuration and `check-config`."""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge import config
from bridge.cli import config_show
from bridge.config import Config
from bridge.errors import ConfigError
from bridge.secret import Secret
from bridge.sources import signatures
from bridge.sources.mapping import MappingConfig
from bridge.sources.native import NativeConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
APP_SECRET = "app-secret-VALUE-0123456789"
ADMIN_TOKEN = "admin-token-VALUE-0123456789"
EXAMPLE_ENV = {
    "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
    "DINGTALK_APP_SECRET": APP_SECRET,
    "ERP_WEBHOOK_SECRET": WHSEC,
    "LEGACY_OA_SECRET": "legacy-new-secret-0001",
    "LEGACY_OA_SECRET_OLD": "legacy-old-secret-0002",
    "OA_DINGTALK_SECRET": "oa-dingtalk-secret-0003",
    "OA_FEISHU_SECRET": "oa-feishu-secret-0004",
}
MAPPING = {
    "time_format": "unix_ms",
    "event_id": "eventId",
    "status": ["type", "result"],
    "fields": {"approval_id": "processInstanceId", "occurred_at": "finishTime", "title": "title", "url": "url"},
    "constants": {"recipients": ["manager01"]},
    "statuses": {"pending": ["start"], "approved": ["finish/agree"]},
}
DT_NATIVE = {"token": "env:DT_TOKEN", "aes_key": "1234567890123456789012345678901234567890123",
             "app_key": "dingsnotzck6pm5veliw", "notify": "applicant"}


def minimal(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "dingtalk": {"app_key": "dingkey", "app_secret": APP_SECRET, "agent_id": 42},
        "sources": [{"name": "erp", "secret": WHSEC}],
    }
    data.update(sections)
    return data


def build(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return config.from_dict(data, path=Path("/etc/bridge/bridge.toml"), env=env or {})


def error(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build(data, env)
    return str(info.value)


def with_source(**fields: Any) -> dict[str, Any]:
    return minimal(sources=[{"name": "erp", "secret": WHSEC, **fields}])


# --- defaults and the happy path -----------------------------------------------------------------------------


def test_minimal_config_takes_documented_defaults() -> None:
    cfg = build(minimal())
    assert cfg.server == config.ServerConfig()
    assert cfg.statuses == config.StatusesConfig() and cfg.card == config.CardConfig()
    assert cfg.worker == config.WorkerConfig()
    assert cfg.dingtalk.base_url == "https://oapi.dingtalk.com" and cfg.dingtalk.agent_id == 42
    assert cfg.dingtalk.app_secret == Secret(APP_SECRET)
    assert cfg.storage == config.StorageConfig(path="/etc/bridge/bridge.db", synchronous="normal")
    (src,) = cfg.sources
    assert src == config.SourceConfig(name="erp", signature="standard-webhooks", secrets=(Secret(WHSEC),),
                                      format="canonical", timestamp_tolerance_s=300)
    assert cfg.source("erp") is src and cfg.source("nope") is None
    assert cfg.path == Path("/etc/bridge/bridge.toml")


def test_every_value_can_be_set() -> None:
    cfg = build(minimal(
        server={"host": "0.0.0.0", "port": 9000, "max_body_bytes": 2048, "admin_token": ADMIN_TOKEN,
                "shutdown_timeout_s": 0},
        storage={"path": "/var/lib/bridge/b.db", "synchronous": "full"},
        statuses={"approved": {"label": "通过"}, "rejected": {"color": "0xff000000"}},
        card={"head_color": "ff00ff00", "head_text": "ERP", "on_revoked": "recall"},
        worker={"concurrency": 2, "lease_s": 45, "retry_base_s": 0.5, "retry_cap_s": 60, "max_attempts": 3},
    ))
    assert cfg.server == config.ServerConfig("0.0.0.0", 9000, 2048, Secret(ADMIN_TOKEN), 0.0)
    assert cfg.storage.synchronous == "full" and cfg.storage.path == "/var/lib/bridge/b.db"
    assert cfg.statuses.approved == config.StatusStyle("通过", "0xFF78C06E")  # label set, colour kept
    assert cfg.statuses.rejected == config.StatusStyle("已拒绝", "0xff000000")
    assert cfg.card == config.CardConfig("ff00ff00", "ERP", "recall")
    assert cfg.worker.lease_s == 45.0 and isinstance(cfg.worker.lease_s, float) and cfg.worker.max_attempts == 3


def test_config_is_frozen() -> None:
    cfg = build(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


def test_dingtalk_base_url_loses_trailing_slash() -> None:
    cfg = build(minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1,
                                  "base_url": "http://127.0.0.1:8789/"}))
    assert cfg.dingtalk.base_url == "http://127.0.0.1:8789"


# --- unknown keys at each level --------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "key", "where"), [
    ({**minimal(), "sever": {}}, "sever", "the top level"),
    (minimal(server={"hots": "x"}), "hots", "[server]"),
    (minimal(storage={"file": "x"}), "file", "[storage]"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1, "appkey": "k"}), "appkey", "[dingtalk]"),
    (minimal(statuses={"cancelled": {}}), "cancelled", "[statuses]"),
    (minimal(statuses={"pending": {"colour": "0xFF000000"}}), "colour", "[statuses.pending]"),
    (minimal(card={"head_colour": "FF000000"}), "head_colour", "[card]"),
    (minimal(worker={"retries": 3}), "retries", "[worker]"),
    (with_source(recipient="x"), "recipient", "[[sources]] #1 ('erp')"),
    (with_source(mapping={}), "mapping", "[[sources]] #1 ('erp')"),  # only allowed with format = "mapping"
])
def test_unknown_keys_are_errors_naming_key_place_and_file(data: dict[str, Any], key: str, where: str) -> None:
    message = error(data)
    assert f"unknown {'section' if where == 'the top level' else 'key'} {key!r} in {where}" in message
    assert "bridge.toml" in message and "known " in message


def test_unknown_key_suggests_the_near_miss() -> None:
    assert "did you mean 'host'?" in error(minimal(server={"hots": "x"}))


def test_unknown_key_in_a_mapping_table_is_named_by_the_mapping_parser() -> None:
    message = error(with_source(signature="token", format="mapping", mapping={**MAPPING, "recipent": "x"}))
    assert "/etc/bridge/bridge.toml: sources[0].mapping" in message and "recipent" in message


def test_unknown_key_in_a_native_table_is_named_by_the_native_parser() -> None:
    message = error(minimal(sources=[{"name": "dt", "format": "dingtalk", **DT_NATIVE, "secret": "x"}]),
                    {"DT_TOKEN": "tok"})
    assert "sources[0]" in message and "secret" in message


# --- wrong types, bad values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "key", "needle"), [
    (minimal(server={"port": "8080"}), "server.port", "expected an integer, got a string"),
    (minimal(server={"port": 70000}), "server.port", "between 0 and 65535"),
    (minimal(server={"host": 127}), "server.host", "expected a string, got an integer"),
    (minimal(server={"max_body_bytes": True}), "server.max_body_bytes", "got a boolean"),
    (minimal(server={"shutdown_timeout_s": -1}), "server.shutdown_timeout_s", "at least 0"),
    (minimal(server={"shutdown_timeout_s": float("nan")}), "server.shutdown_timeout_s", "finite"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1.5}), "dingtalk.agent_id", "integer"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1, "qps": 0}), "dingtalk.qps", "greater than 0"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1, "recall_window_s": 86401}),
     "dingtalk.recall_window_s", "between 1 and 86400"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1, "status_bar_max_userids": 6}),
     "dingtalk.status_bar_max_userids", "between 1 and 5"),
    (minimal(dingtalk={"app_key": "", "app_secret": "s", "agent_id": 1}), "dingtalk.app_key", "must not be empty"),
    (minimal(dingtalk={"app_key": "k", "app_secret": 5, "agent_id": 1}), "dingtalk.app_secret", "expected a string"),
    (minimal(storage={"synchronous": "off"}), "storage.synchronous", "one of normal, full; got 'off'"),
    (minimal(card={"on_revoked": "delete"}), "card.on_revoked", "one of update, recall"),
    (minimal(worker={"concurrency": 0}), "worker.concurrency", "at least 1"),
    (minimal(worker={"lease_s": 0}), "worker.lease_s", "greater than 0"),
    (minimal(worker={"lease_s": 30}), "worker.lease_s", "more than 3 x dingtalk.timeout_s"),
    (minimal(worker={"retry_base_s": 10, "retry_cap_s": 5}), "worker.retry_cap_s", "at least worker.retry_base_s"),
    (minimal(worker={"calls_in_flight": 0}), "worker.calls_in_flight", "at least 1"),
    (minimal(worker={"concurrency": 2, "calls_in_flight": 3}), "worker.calls_in_flight",
     "at most worker.concurrency (2)"),
    (minimal(server="8080"), "server", "expected a table, got a string"),
    (minimal(statuses={"pending": "orange"}), "statuses.pending", "expected a table"),
    (with_source(name="ERP"), "sources[0].name", "must match"),
    (with_source(name="a/b"), "sources[0].name", "must match"),
    (with_source(name="x" * 65), "sources[0].name", "must match"),
    (with_source(signature="sha1"), "sources[0].signature", "one of standard-webhooks, hmac-sha256, token, none"),
    (with_source(format="xml"), "sources[0].format", "one of canonical, mapping, dingtalk, feishu, wecom"),
    (with_source(timestamp_tolerance_s=0), "sources[0].timestamp_tolerance_s", "at least 1"),
    (with_source(secret=[]), "sources[0].secret", "empty list"),
    (with_source(secret=[WHSEC, 7]), "sources[0].secret[1]", "expected a string"),
    (with_source(signature="token", secret=""), "sources[0].secret", "must not be empty"),
])
def test_bad_values_name_file_and_dotted_key(data: dict[str, Any], key: str, needle: str) -> None:
    message = error(data)
    assert message.startswith(f"/etc/bridge/bridge.toml: {key}: ")
    assert needle in message


@pytest.mark.parametrize("url", ["ftp://oapi.dingtalk.com", "https://", "oapi.dingtalk.com", "https:///path",
                                 "https://oapi.dingtalk.com/?x=1", "https://a b.com", "https://u@evil.com"])
def test_bad_urls(url: str) -> None:
    message = error(minimal(dingtalk={"app_key": "k", "app_secret": "s", "agent_id": 1, "base_url": url}))
    assert message.startswith("/etc/bridge/bridge.toml: dingtalk.base_url: must be an http:// or https:// URL")


@pytest.mark.parametrize(("data", "key"), [
    (minimal(dingtalk={"app_secret": "s", "agent_id": 1}), "dingtalk.app_key"),
    (minimal(dingtalk={"app_key": "k", "agent_id": 1}), "dingtalk.app_secret"),
    (minimal(dingtalk={"app_key": "k", "app_secret": "s"}), "dingtalk.agent_id"),
    ({"sources": [{"name": "erp", "secret": WHSEC}]}, "dingtalk.app_key"),
    (minimal(sources=[{"secret": WHSEC}]), "sources[0].name"),
    (minimal(sources=[{"name": "erp"}]), "sources[0].secret"),
    (minimal(sources=[{"name": "m", "signature": "token", "secret": "t", "format": "mapping"}]), "sources[0].mapping"),
    (minimal(sources=[]), "sources"),
])
def test_missing_required_values(data: dict[str, Any], key: str) -> None:
    message = error(data)
    assert message.startswith(f"/etc/bridge/bridge.toml: {key}: ") and "required" in message


@pytest.mark.parametrize("color", ["FFFF9D46", "0xFFF", "0xFFFF9D4G", "#FFFF9D46", "0xFFFF9D4600"])
def test_bad_status_colour(color: str) -> None:
    message = error(minimal(statuses={"revoked": {"color": color}}))
    assert message.startswith("/etc/bridge/bridge.toml: statuses.revoked.color: must match 0xAARRGGBB")


@pytest.mark.parametrize("color", ["0xFF1E7CF7", "1E7CF7", "GG1E7CF7"])
def test_bad_head_colour(color: str) -> None:
    assert error(minimal(card={"head_color": color})).startswith("/etc/bridge/bridge.toml: card.head_color: must match")


def test_duplicate_source_name() -> None:
    data = minimal(sources=[{"name": "erp", "secret": WHSEC}, {"name": "oa", "signature": "token", "secret": "t"},
                            {"name": "erp", "signature": "none"}])
    assert error(data) == "/etc/bridge/bridge.toml: sources[2].name: duplicate source name 'erp'"


# --- signature schemes and secrets -------------------------------------------------------------------------


def test_signature_none_allowed_on_loopback_only() -> None:
    cfg = build(minimal(sources=[{"name": "local", "signature": "none"}]))
    assert cfg.sources[0].secrets == () and cfg.sources[0].signature == "none"
    message = error(minimal(server={"host": "0.0.0.0"}, sources=[{"name": "local", "signature": "none"}]))
    assert "sources[0].signature = 'none'" in message and "server.host" in message and "'0.0.0.0'" in message


def test_override_server_rechecks_unsigned_sources() -> None:
    cfg = build(minimal(sources=[{"name": "erp", "secret": WHSEC}, {"name": "local", "signature": "none"}]))
    assert config.override_server(cfg, port=9999).server == config.ServerConfig(port=9999)
    assert config.override_server(cfg, host="localhost").server.host == "localhost"
    with pytest.raises(ConfigError, match=r"sources\[1\]\.signature = 'none' is only allowed when server\.host"):
        config.override_server(cfg, host="0.0.0.0")
    signed_only = build(minimal())
    assert config.override_server(signed_only, host="0.0.0.0", port=80).server.host == "0.0.0.0"


def test_signature_none_with_a_secret_is_refused() -> None:
    assert "sources[0].secret: given, but signature = 'none'" in error(with_source(signature="none"))


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_bad_standard_webhooks_secret_named_never_shown(secret: str) -> None:
    message = error(with_source(secret="env:ERP_SECRET"), {"ERP_SECRET": secret})
    assert message.startswith("/etc/bridge/bridge.toml: sources[0].secret: ")
    assert secret not in message and ("whsec" in message or "bytes" in message)


def test_rotation_list_of_secrets_inline_and_from_env() -> None:
    cfg = build(with_source(signature="hmac-sha256", secret=["env:NEW", "old-inline"]), {"NEW": "new-from-env"})
    assert cfg.sources[0].secrets == (Secret("new-from-env"), Secret("old-inline"))


def test_unset_env_var_is_named() -> None:
    message = error(with_source(secret=["env:ERP_SECRET_NEW", "env:ERP_SECRET_OLD"]), {"ERP_SECRET_NEW": WHSEC})
    assert message == "/etc/bridge/bridge.toml: sources[0].secret[1]: environment variable ERP_SECRET_OLD is not set"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_APP_SECRET", "from-the-environment")
    data = minimal(dingtalk={"app_key": "k", "app_secret": "env:BRIDGE_TEST_APP_SECRET", "agent_id": 1})
    assert config.from_dict(data).dingtalk.app_secret.reveal() == "from-the-environment"


def test_resolve_secret_contract() -> None:
    assert config.resolve_secret("inline", "f: k", {}) == Secret("inline")
    assert config.resolve_secret("env:A_B", "f: k", {"A_B": "v"}) == Secret("v")
    with pytest.raises(ConfigError, match=r"^f: k: environment variable MISSING is not set$"):
        config.resolve_secret("env:MISSING", "f: k", {})
    with pytest.raises(ConfigError, match="not an environment variable name"):
        config.resolve_secret("env:1 bad", "f: k", {})
    with pytest.raises(ConfigError, match="expected a string"):
        config.resolve_secret(["x"], "f: k", {})


def test_short_admin_token_refused_without_showing_it() -> None:
    message = error(minimal(server={"admin_token": "env:TOKEN"}), {"TOKEN": "short-tok"})
    assert message.startswith("/etc/bridge/bridge.toml: server.admin_token: must be at least 16")
    assert "short-tok" not in message


# --- secrets never show ------------------------------------------------------------------------------------------


def test_secret_masks_itself() -> None:
    long, short = Secret("abcdefghijklmnopqrstuvwxyz"), Secret("shortsecret")
    assert repr(long) == "Secret('****')" and str(long) == "****" and f"{long}" == "****"
    assert long.masked() == "ab****yz" and short.masked() == "****"
    assert long.reveal() == "abcdefghijklmnopqrstuvwxyz"


def test_secrets_are_masked_in_repr_and_summary() -> None:
    cfg = build(minimal(server={"admin_token": ADMIN_TOKEN},
                        sources=[{"name": "erp", "secret": WHSEC},
                                 {"name": "oa", "signature": "token", "secret": ["token-one-0123456789", "tok2"]},
                                 {"name": "dt", "format": "dingtalk", **DT_NATIVE}]),
                {"DT_TOKEN": "dingtalk-callback-token"})
    everything = repr(cfg) + str(cfg) + json.dumps(config_show.summary(cfg), ensure_ascii=False)
    for value in (APP_SECRET, ADMIN_TOKEN, WHSEC, "token-one-0123456789", "tok2", "dingtalk-callback-token",
                  DT_NATIVE["aes_key"]):
        assert value not in everything
    out = config_show.summary(cfg)
    assert out["dingtalk"]["app_secret"] == "ap****89" and out["server"]["admin_token"] == "ad****89"
    assert out["sources"][1]["secrets"] == ["to****89", "****"]
    assert out["sources"][2]["native"]["keys"]["token"] == "di****en"
    assert out["path"] == "/etc/bridge/bridge.toml"


def test_error_messages_never_contain_secret_values() -> None:
    secret = "whsec_this-is-not-base64-but-is-secret"
    for data in (with_source(secret=secret), with_source(secret=[WHSEC, secret]),
                 minimal(server={"admin_token": secret[:10]})):
        assert secret[:10] not in error(data)


# --- storage path -------------------------------------------------------------------------------------------------


def test_relative_storage_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    file = tmp_path / "etc" / "bridge.toml"
    file.write_text('[storage]\npath = "data/b.db"\n' + toml_for_minimal(), encoding="utf-8")
    assert config.load(file, env={}).storage.path == str(tmp_path / "etc" / "data" / "b.db")


def test_storage_path_absolute_kept_and_relative_kept_without_a_file() -> None:
    assert build(minimal(storage={"path": "/srv/b.db"})).storage.path == "/srv/b.db"
    assert config.from_dict(minimal(), env={}).storage.path == "bridge.db"


def test_storage_url_selects_postgres_with_the_password_from_the_environment() -> None:
    url = "postgresql://bridge@db.internal:5432/bridge"
    cfg = build(minimal(storage={"url": url}), env={"BRIDGE_STORAGE_PASSWORD": "pg-secret"})
    assert cfg.storage.engine == "postgres" and cfg.storage.url == url and cfg.storage.pool_size == 20
    assert cfg.storage.password is not None and cfg.storage.password.reveal() == "pg-secret"
    assert "pg-secret" not in repr(cfg.storage)
    named = build(minimal(storage={"url": url, "password_env": "PGPASS_B"}), env={"PGPASS_B": "other"})
    assert named.storage.password is not None and named.storage.password.reveal() == "other"
    assert build(minimal(storage={"url": url})).storage.password is None  # ~/.pgpass, trust, peer
    assert build(minimal()).storage.engine == "sqlite"


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://bridge:hunter2@db:5432/bridge", "must not contain a password"),
    ("mysql://bridge@db/bridge", "must look like postgresql://"),
    ("postgresql://bridge@db", "must look like postgresql://"),
])
def test_storage_url_is_checked_and_never_carries_a_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        build(minimal(storage={"url": url}))
    assert "hunter2" not in str(info.value)


def test_open_store_picks_the_engine() -> None:
    from bridge.store import open_store
    from bridge.store.postgres import PostgresStore
    from bridge.store.sqlite import SQLiteStore

    assert isinstance(open_store(build(minimal()).storage), SQLiteStore)
    pg = open_store(build(minimal(storage={"url": "postgresql://u@h:5432/d"}), env={"BRIDGE_STORAGE_PASSWORD": "pw"})
                    .storage)
    assert isinstance(pg, PostgresStore) and "pw" not in repr(pg)


def toml_for_minimal() -> str:
    return (f'[dingtalk]\napp_key = "dingkey"\napp_secret = "{APP_SECRET}"\nagent_id = 42\n\n'
            f'[[sources]]\nname = "erp"\nsecret = "{WHSEC}"\n')


def test_load_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: .*line 1"):
        config.load(bad, env={})


def test_load_errors_name_the_path_as_given(tmp_path: Path) -> None:
    file = tmp_path / "bridge.toml"
    file.write_text(toml_for_minimal() + 'recipient = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"in [[sources]] #1 ('erp') ({file})")):
        config.load(str(file), env={})


# --- mapped and native sources --------------------------------------------------------------------------------------


def test_mapped_source_gets_a_mapping_config() -> None:
    cfg = build(with_source(signature="hmac-sha256", secret="s", format="mapping", mapping=copy.deepcopy(MAPPING)))
    src = cfg.sources[0]
    assert isinstance(src.mapping, MappingConfig) and src.native is None
    assert src.mapping.time_format == "unix_ms"


def test_native_source_gets_a_native_config_and_signature_native() -> None:
    data = minimal(sources=[{"name": "dt", "format": "dingtalk", "timestamp_tolerance_s": 600, **DT_NATIVE}])
    src = build(data, {"DT_TOKEN": "tok"}).sources[0]
    assert src.signature == "native" and src.format == "dingtalk" and src.timestamp_tolerance_s == 600
    assert isinstance(src.native, NativeConfig) and src.native.keys.token == Secret("tok")
    assert src.secrets == () and src.mapping is None


def test_native_source_secret_env_unset_names_file_and_key() -> None:
    message = error(minimal(sources=[{"name": "dt", "format": "dingtalk", **DT_NATIVE}]))
    assert message == "/etc/bridge/bridge.toml: sources[0].token: environment variable DT_TOKEN is not set"


# --- the example file, the sandbox, check-config ----------------------------------------------------------------


def test_example_config_loads_fully() -> None:
    cfg = config.load(EXAMPLE, env=EXAMPLE_ENV)
    assert cfg.server.admin_token == Secret(ADMIN_TOKEN) and cfg.dingtalk.app_secret == Secret(APP_SECRET)
    assert cfg.storage.path == str(REPO / "bridge.db")
    by_name = {s.name: s for s in cfg.sources}
    assert list(by_name) == ["erp", "legacy-oa", "oa-dingtalk", "oa-feishu"]
    assert by_name["erp"].signature == "standard-webhooks" and by_name["erp"].format == "canonical"
    assert by_name["legacy-oa"].secrets == (Secret("legacy-new-secret-0001"), Secret("legacy-old-secret-0002"))
    for name in ("oa-dingtalk", "oa-feishu"):
        assert isinstance(by_name[name].mapping, MappingConfig)


def test_example_config_commented_native_sources_load_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    head, marker, tail = text.partition("# Native callbacks")
    assert marker, "the example documents native sources"
    uncommented = re.sub(r"(?m)^# (\[\[sources\]\]|[a-z_]+ = .*)$", r"\1", tail)
    file = tmp_path / "bridge.toml"
    file.write_text(head + marker + uncommented, encoding="utf-8")
    env = {**EXAMPLE_ENV, "DINGTALK_CALLBACK_TOKEN": "t", "DINGTALK_CALLBACK_AES_KEY": "a" * 43,
           "FEISHU_VERIFICATION_TOKEN": "v", "FEISHU_ENCRYPT_KEY": "e", "WECOM_CALLBACK_TOKEN": "w",
           "WECOM_ENCODING_AES_KEY": "b" * 43}
    formats = [s.format for s in config.load(file, env=env).sources]
    assert formats[-3:] == ["dingtalk", "feishu", "wecom"]


def test_example_config_without_env_names_the_first_missing_variable() -> None:
    with pytest.raises(ConfigError, match=r"server\.admin_token: environment variable BRIDGE_ADMIN_TOKEN is not set"):
        config.load(EXAMPLE, env={})


def test_sandbox_config() -> None:
    cfg = config.sandbox("http://127.0.0.1:8789", "bridge-sandbox.db")
    assert cfg.dingtalk.base_url == "http://127.0.0.1:8789"
    assert (cfg.dingtalk.app_key, cfg.dingtalk.app_secret.reveal(), cfg.dingtalk.agent_id) == \
        ("dingdemoappkey", "demo-app-secret", 1000001)
    assert cfg.storage.path == "bridge-sandbox.db" and cfg.server.on_loopback
    (demo,) = cfg.sources
    assert (demo.name, demo.signature, demo.format) == ("demo", "standard-webhooks", "canonical")
    assert demo.secrets == (Secret("whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1zYW5kYm94"),)
    assert signatures.decode_whsec(demo.secrets[0].reveal()) == b"demo-secret-for-the-sandbox"


def check(path: Path | str, *, as_json: bool = False) -> int:
    return config_show.run_check_cli(argparse.Namespace(config=str(path), json=as_json))


def test_check_cli_valid_file_prints_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    assert check(EXAMPLE) == 0
    out, err = capsys.readouterr()
    assert "is valid" in out and "/webhooks/oa-feishu" in out and "ap****89" in out and err == ""
    assert all(value not in out for value in EXAMPLE_ENV.values())
    assert check(EXAMPLE, as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dingtalk"]["app_secret"] == "ap****89" and len(data["sources"]) == 4


def test_check_cli_invalid_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "bridge.toml"
    file.write_text(toml_for_minimal() + "\n[server]\nport = 'x'\n", encoding="utf-8")
    assert check(file) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {file}: server.port: expected an integer, got a string\n"


def test_check_cli_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path / "nope.toml") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: configuration file ") and "nope.toml" in err and "not found" in err


# --- hardening: body size bound, connection limits, the admin listener ------------------------------------------


def test_max_body_bytes_has_an_upper_bound() -> None:
    """Bodies are read into memory: 10 GB must not pass check-config."""
    message = error(minimal(server={"max_body_bytes": 10_000_000_000}))
    assert "server.max_body_bytes: must be between 1024 and 16777216" in message
    assert build(minimal(server={"max_body_bytes": 16 * 1024 * 1024})).server.max_body_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(("key", "value", "message"), [
    ("header_timeout_s", 0, "greater than 0"), ("header_timeout_s", 1000, "at most 120"),
    ("body_timeout_s", 601, "at most 600"), ("idle_timeout_s", 86400, "at most 3600"),
    ("max_connections", 1, "between 8 and 65536"), ("max_future_s", -1, "between 0"),
    ("max_age_days", 0, "between 1"),
])
def test_connection_limits_are_bounded(key: str, value: int, message: str) -> None:
    assert f"server.{key}: must be" in error(minimal(server={key: value}))
    assert message in error(minimal(server={key: value}))


def test_connection_limits_have_safe_defaults() -> None:
    s = build(minimal()).server
    assert (s.header_timeout_s, s.body_timeout_s, s.idle_timeout_s, s.max_connections) == (10.0, 30.0, 30.0, 512)
    assert (s.max_future_s, s.max_age_days) == (86400, 1830)


def test_admin_listener_defaults_to_loopback_and_needs_its_own_port() -> None:
    cfg = build(minimal(admin={"port": 8081, "allowed_hosts": ["Bridge.Internal", "127.0.0.1"]}))
    assert (cfg.admin.host, cfg.admin.port, cfg.admin.allowed_hosts) == ("127.0.0.1", 8081,
                                                                         ("bridge.internal", "127.0.0.1"))
    assert build(minimal()).admin.port is None
    assert "admin.port: must differ from server.port (8080)" in error(minimal(admin={"port": 8080}))
    assert "unknown key 'token' in [admin]" in error(minimal(admin={"token": "x" * 20}))
    assert "admin.allowed_hosts: expected a list" in error(minimal(admin={"allowed_hosts": "bridge.internal"}))


def test_the_sandbox_gets_a_fresh_random_admin_token() -> None:
    a, b = config.sandbox("http://127.0.0.1:1", "x.db"), config.sandbox("http://127.0.0.1:1", "x.db")
    assert a.server.admin_token is not None and b.server.admin_token is not None
    assert a.server.admin_token != b.server.admin_token and len(a.server.admin_token.reveal()) >= 16


def test_every_problem_is_reported_at_once_first_one_first() -> None:
    data = {
        "server": {"port": "eighty"},
        "dingtalk": {"app_key": "k", "app_secret": "env:UNSET_APP_SECRET_X", "agent_id": 1},
        "worker": {"concurrency": "many"},
        "sources": [{"name": "erp", "secret": ["env:UNSET_A_X", "env:UNSET_B_X"]},
                    {"name": "oa", "signature": "token"}],
    }
    with pytest.raises(ConfigError) as exc:
        config.from_dict(data, env={})
    messages = exc.value.messages
    assert str(exc.value) == messages[0] and "server.port" in messages[0]
    for needle in ("UNSET_APP_SECRET_X", "worker.concurrency", "sources[0].secret[0]: environment variable UNSET_A_X",
                   "sources[0].secret[1]: environment variable UNSET_B_X", "sources[1].secret: required"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)
    assert len(messages) == 6  # the five above and server.port


def test_a_single_problem_is_one_message() -> None:
    with pytest.raises(ConfigError) as exc:
        build(minimal(server={"port": "eighty"}))
    assert exc.value.messages == (str(exc.value),) and "server.port" in str(exc.value)


def test_a_whsec_secret_without_its_base64_padding_is_accepted() -> None:
    key = b"a-key-of-22-bytes-long"  # 22 bytes: base64 ends in "==", left off here
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    cfg = build(with_source(secret="env:ERP_SECRET"), {"ERP_SECRET": unpadded})
    assert signatures.decode_whsec(cfg.sources[0].secrets[0].reveal()) == key
