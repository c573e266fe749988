"""Helpers shared by the native-callback tests: configs built through `parse_config`, fixtures, a seeded rng."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bridge.config
from bridge.errors import ConfigError
from bridge.secret import Secret
from bridge.sources.native import NativeConfig, parse_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

DT_TABLE: dict[str, Any] = {
    "token": "123456",
    "aes_key": "1234567890123456789012345678901234567890123",
    "app_key": "dingsnotzck6pm5veliw",
    "notify": "applicant",
}
FS_TABLE: dict[str, Any] = {
    "verification_token": "vt_test_token",
    "encrypt_key": "test key",
    "notify": "fixed",
    "recipients": ["manager01", "manager02"],
    "url_template": "https://applink.feishu.cn/client/approval?instanceCode={instance_code}",
}
WC_TABLE: dict[str, Any] = {
    "token": "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "encoding_aes_key": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "corp_id": "ww1436e0e65a779aee",
    "notify": "applicant",
    "id_map": {"WuJunJie": "ding_wjj"},
    "url_template": "https://work.weixin.qq.com/approval/{SpNoStr}",
}
TABLES = {"dingtalk": DT_TABLE, "feishu": FS_TABLE, "wecom": WC_TABLE}


def _stand_in_resolve_secret(value: str, key_path: str, env: Mapping[str, str]) -> Secret:
    """The documented contract of bridge.config.resolve_secret, used only until the real one lands."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in env:
            raise ConfigError(f"{key_path}: environment variable {name} is not set")
        return Secret(env[name])
    return Secret(value)


def ensure_resolve_secret(monkeypatch: Any) -> None:
    if not hasattr(bridge.config, "resolve_secret"):
        monkeypatch.setattr(bridge.config, "resolve_secret", _stand_in_resolve_secret, raising=False)


def config(fmt: str, env: Mapping[str, str] | None = None, **overrides: Any) -> NativeConfig:
    table = {**TABLES[fmt], **overrides}
    table = {k: v for k, v in table.items() if v is not None}
    return parse_config(fmt, table, f"sources.test-{fmt}", env or {})


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes().rstrip(b"\n")


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def seeded_rng(seed: int = 0) -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom: a counter, so successive calls differ."""
    state = [seed]

    def rng(n: int) -> bytes:
        out = bytes((state[0] + i) % 256 for i in range(n))
        state[0] += n
        return out

    return rng
