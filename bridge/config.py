"""Configuration: TOML loaded once, at the edge, into frozen dataclasses.

SKELETON: the dataclass shapes below are the contract the rest of bridge codes against. The loader
(`load`, `from_dict`, strict validation, `env:NAME` secrets) is being written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Secret:
    """A secret string that never shows itself in repr, str, logs or exceptions.

    `reveal()` is the only way to read it, so every place that uses a secret is easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return "****" if len(self._value) < 8 else f"{self._value[:2]}****{self._value[-2:]}"

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    admin_token: Secret | None = None
    shutdown_timeout_s: float = 10.0

    @property
    def on_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    path: str = "bridge.db"
    synchronous: str = "normal"  # "normal" (WAL, survives a process crash) or "full" (also power loss)


@dataclass(frozen=True, slots=True)
class DingTalkConfig:
    base_url: str = "https://oapi.dingtalk.com"
    app_key: str = ""
    app_secret: Secret = field(default_factory=lambda: Secret(""))
    agent_id: int = 0
    qps: float = 20.0  # client-side limit per endpoint, below DingTalk's 20/s per app per API
    timeout_s: float = 10.0
    recall_window_s: int = 24 * 3600  # DingTalk: recall within 24 h
    update_window_s: int = 7 * 24 * 3600  # DingTalk: status bar update within 7 days
    status_bar_max_userids: int = 5  # DingTalk: OA status bar only on sends to at most 5 userids


@dataclass(frozen=True, slots=True)
class StatusStyle:
    label: str
    color: str  # "0xAARRGGBB", as status_bar.status_bg wants it


@dataclass(frozen=True, slots=True)
class StatusesConfig:
    pending: StatusStyle = StatusStyle("待审批", "0xFFFF9D46")
    approved: StatusStyle = StatusStyle("已同意", "0xFF78C06E")
    rejected: StatusStyle = StatusStyle("已拒绝", "0xFFF65E5E")
    revoked: StatusStyle = StatusStyle("已撤销", "0xFF858E99")

    def style(self, status: str) -> StatusStyle:
        return getattr(self, status)


@dataclass(frozen=True, slots=True)
class CardConfig:
    head_color: str = "FF1E7CF7"  # oa.head.bgcolor: 8 hex digits, no 0x
    head_text: str = "审批"  # replaced by the app name in work notifications
    on_revoked: str = "update"  # "update": grey status bar; "recall": recall the cards


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 8
    lease_s: float = 60.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    max_attempts: int = 12
    poll_interval_s: float = 1.0  # fallback only: in-process commits wake the worker at once
    check_delay_s: float = 2.0  # first getsendprogress after a send
    check_max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    signature: str = "standard-webhooks"  # standard-webhooks | hmac-sha256 | token | none
    secrets: tuple[Secret, ...] = ()
    format: str = "canonical"  # canonical | mapping | dingtalk | feishu | wecom
    timestamp_tolerance_s: int = 300
    mapping: Any = None  # bridge.mapping.MappingConfig when format == "mapping"
    native: Any = None  # bridge.native.NativeConfig when format is dingtalk / feishu / wecom


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    dingtalk: DingTalkConfig = field(default_factory=DingTalkConfig)
    statuses: StatusesConfig = field(default_factory=StatusesConfig)
    card: CardConfig = field(default_factory=CardConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    sources: tuple[SourceConfig, ...] = ()
    path: Path | None = None

    def source(self, name: str) -> SourceConfig | None:
        for s in self.sources:
            if s.name == name:
                return s
        return None
