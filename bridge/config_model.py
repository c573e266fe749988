"""What a configuration is: the frozen dataclasses `bridge.config` loads a TOML file into.

Why it exists apart from the loader: these are plain values that many modules take (the worker its
`WorkerConfig`, the client its `DingTalkConfig`, the web app a `SourceConfig`), while only start-up needs the
loader's parsing and validation. Import them from `bridge.config`, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge.cards import CardTemplate
from bridge.secret import Secret
from bridge.sources.mapping import MappingConfig
from bridge.sources.native import NativeConfig

__all__ = [
    "DEFAULT_APP",
    "AdminConfig",
    "CardConfig",
    "Config",
    "DingTalkApp",
    "DingTalkConfig",
    "ServerConfig",
    "SourceConfig",
    "StatusStyle",
    "StatusesConfig",
    "StorageConfig",
    "WorkerConfig",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The webhook listener and its limits against slow or hostile clients (docs/security.md explains each)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    admin_token: Secret | None = None
    shutdown_timeout_s: float = 10.0
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout_s: float = 30.0  # reading one request body, start to end
    idle_timeout_s: float = 30.0  # a keep-alive connection with no request in flight
    max_connections: int = 512  # open connections at once (kept under the file-descriptor limit too)
    max_future_s: int = 24 * 3600  # occurred_at may be at most this far ahead of bridge's clock
    max_age_days: int = 5 * 366  # ... and at most this far behind it

    @property
    def on_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """Where the admin API listens. Without `port` it shares the webhook listener; with one it is served only
    there (host default loopback) and the webhook listener answers 404 for it. `allowed_hosts`, when given,
    is the list of Host header values admin requests may carry (against DNS rebinding)."""

    host: str = "127.0.0.1"
    port: int | None = None
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StorageConfig:
    path: str = "bridge.db"
    synchronous: str = "normal"  # "normal" (WAL, survives a process crash) or "full" (also power loss)
    url: str = ""  # postgresql://USER@HOST:PORT/DB selects PostgreSQL; empty: SQLite at `path`
    password_env: str = "BRIDGE_STORAGE_PASSWORD"  # the PostgreSQL password is read from this variable
    password: Secret | None = None  # resolved from password_env at load; never in the file
    pool_size: int = 20  # PostgreSQL connections per process, shared by the worker and the webhooks

    @property
    def engine(self) -> str:
        return "postgres" if self.url else "sqlite"


# The name of today's single, unnamed `[dingtalk]` app (no [[dingtalk.apps]] tables): sources need no `app`.
DEFAULT_APP = "default"


@dataclass(frozen=True, slots=True)
class DingTalkApp:
    """One DingTalk app, e.g. one org of a group company: its own credentials, agent (the sender of its cards),
    access token and rate limit. DingTalk counts `qps` per app and endpoint, so each app gets its own."""

    name: str
    app_key: str
    app_secret: Secret
    agent_id: int
    base_url: str = "https://oapi.dingtalk.com"
    qps: float = 20.0
    default: bool = False  # sources without `app` use this one (the only app is always the default)


@dataclass(frozen=True, slots=True)
class DingTalkConfig:
    """[dingtalk]: DingTalk's windows and lookups for every app, and the apps. Without [[dingtalk.apps]] the
    table's own app_key / app_secret / agent_id are the one app, named DEFAULT_APP (`all_apps`)."""

    base_url: str = "https://oapi.dingtalk.com"
    app_key: str = ""
    app_secret: Secret = field(default_factory=lambda: Secret(""))
    agent_id: int = 0
    qps: float = 20.0  # client-side limit per endpoint, below DingTalk's 20/s per app per API
    timeout_s: float = 10.0
    recall_window_s: int = 24 * 3600  # DingTalk: recall within 24 h
    update_window_s: int = 7 * 24 * 3600  # DingTalk: status bar update within 7 days
    status_bar_max_userids: int = 5  # DingTalk: OA status bar only on sends to at most 5 userids
    # recipients given as mobile:/unionid: (bridge.resolve): how long a lookup is kept in the store, and which
    # errcodes of getbymobile / getbyunionid mean "no such user" (60121 is likely; unconfirmed, hence configurable)
    recipient_ttl_s: int = 24 * 3600
    unknown_recipient_ttl_s: int = 600
    unknown_user_codes: tuple[int, ...] = (60121,)
    apps: tuple[DingTalkApp, ...] = ()  # [[dingtalk.apps]]; empty: the single app of the fields above

    @property
    def all_apps(self) -> tuple[DingTalkApp, ...]:
        """Every configured app; without [[dingtalk.apps]] the one app of [dingtalk] itself, named DEFAULT_APP."""
        return self.apps or (DingTalkApp(DEFAULT_APP, self.app_key, self.app_secret, self.agent_id, self.base_url,
                                         self.qps, default=True),)

    @property
    def default_app(self) -> str | None:
        """The app of sources that name none: the only app, or the one marked `default`; None if there is none."""
        apps = self.all_apps
        if len(apps) == 1:
            return apps[0].name
        return next((a.name for a in apps if a.default), None)

    def app(self, name: str) -> DingTalkApp | None:
        return next((a for a in self.all_apps if a.name == name), None)


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
        found: StatusStyle = getattr(self, status)
        return found


@dataclass(frozen=True, slots=True)
class CardConfig:
    head_color: str = "FF1E7CF7"  # oa.head.bgcolor: 8 hex digits, no 0x
    head_text: str = "审批"  # replaced by the app name in work notifications
    on_revoked: str = "update"  # "update": grey status bar; "recall": recall the cards
    template: CardTemplate | None = None  # [card]'s template keys: every source's default (bridge.config_card)


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
    retention_days: float = 30.0  # journal, processed events and done jobs older than this are pruned; 0 keeps all
    prune_batch: int = 500  # rows of each kind per prune transaction (short, so webhooks never wait long)
    prune_every_s: float = 300.0  # how often the worker looks for rows past retention
    on_orphaned: str = "resend_distinct"  # a card DingTalk filtered as a duplicate: resend_distinct | mark
    # sends (and, apart, status-bar updates) one process has out at DingTalk at once: a kill -9 repeats up to that
    # many of each; one in flight makes at most 1 / (DingTalk's answer time) calls per second (docs/design.md)
    calls_in_flight: int = 1
    # the longest the all-in-one process's worker holds off deciding and sending while webhooks keep arriving and
    # keep a core busy on their own, so a burst is received at the receiver's own rate; 0: never (bridge.priority)
    intake_priority_s: float = 2.0


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    signature: str = "standard-webhooks"  # standard-webhooks | hmac-sha256 | token | none
    secrets: tuple[Secret, ...] = ()
    format: str = "canonical"  # canonical | mapping | dingtalk | feishu | wecom
    timestamp_tolerance_s: int = 300
    mapping: MappingConfig | None = None  # when format == "mapping"
    native: NativeConfig | None = None  # when format is dingtalk / feishu / wecom
    app: str | None = None  # the [[dingtalk.apps]] name its cards go out through; None: the default app
    card: CardTemplate | None = None  # [sources.card] over [card]; None: cards drawn from the event as it is


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
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

    def app_of(self, source: str) -> str | None:
        """The DingTalk app a source's cards are sent through now: its `app`, else the default app (also for a
        source no longer configured); None when there is no default."""
        found = self.source(source)
        return found.app if found is not None and found.app else self.dingtalk.default_app
