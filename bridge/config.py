"""Configuration: TOML loaded once, at the edge, into frozen dataclasses.

Why it exists: every other module takes its settings as an explicit, immutable `Config` (or one section of
it) and never reads files or the environment itself. `load()` reads the file once at start-up and validates
it strictly: an unknown key, a wrong type, a bad URL, a missing required value or an unset environment
variable is a `ConfigError` naming the file and the dotted key (`bridge.toml: dingtalk.agent_id: ...`), so
a typo fails at start-up instead of silently falling back to a default.

Secrets (app secret, admin token, webhook secrets) are given inline or as ``env:NAME``; they are wrapped in
`bridge.secret.Secret`, which masks itself in repr, str, logs, summaries and error messages (showing a
configuration is `bridge.cli.config_show`). The dataclasses live in `bridge.config_model` and are re-exported
here, the import path everyone uses. `config.example.toml` at the top of the repository documents every key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, TypeVar

from bridge import config_apps, config_card, config_sources
from bridge.config_model import (
    DEFAULT_APP,
    AdminConfig,
    CardConfig,
    Config,
    DingTalkApp,
    DingTalkConfig,
    ServerConfig,
    SourceConfig,
    StatusesConfig,
    StatusStyle,
    StorageConfig,
    WorkerConfig,
)
from bridge.errors import ConfigError
from bridge.records import OrphanPolicy
from bridge.secret import ENV_NAME, Secret, resolve_secret
from bridge.tomltable import Table, unknown

T = TypeVar("T")

__all__ = [
    "DEFAULT_APP",
    "AdminConfig",
    "CardConfig",
    "Config",
    "DingTalkApp",
    "DingTalkConfig",
    "Secret",
    "ServerConfig",
    "SourceConfig",
    "StatusStyle",
    "StatusesConfig",
    "StorageConfig",
    "WorkerConfig",
    "from_dict",
    "load",
    "override_server",
    "resolve_secret",
    "sandbox",
]


# --- loading -------------------------------------------------------------------------------------------------

SYNCHRONOUS = ("normal", "full")
MIN_ADMIN_TOKEN_CHARS = 16
MAX_BODY_BYTES = 16 * 1024 * 1024  # bodies are read into memory; no approval webhook comes near this
SECTIONS = ("server", "admin", "storage", "dingtalk", "statuses", "card", "worker", "sources")

# The fixed, documented, NOT secret key of the sandbox's "demo" source (base64 of "demo-secret-for-the-sandbox").
SANDBOX_WEBHOOK_SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1zYW5kYm94"


_secret = config_apps.secret


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file. `env` (default os.environ) resolves ``env:NAME`` secrets."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {type(exc).__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _build(data, path.resolve(), os.environ if env is None else env, str(path))


def from_dict(data: dict[str, Any], *, path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed TOML document (env defaults to os.environ). Relative storage paths are
    taken from `path`'s directory; errors name `path`, or "<config>" without one."""
    return _build(data, path, os.environ if env is None else env, str(path) if path is not None else "<config>")


def _build(data: dict[str, Any], path: Path | None, env: Mapping[str, str], file: str) -> Config:
    """Check every section, collecting each one's first problem, so one run reports them all."""
    problems: list[ConfigError] = []

    def attempt(check: Callable[[], T]) -> T | None:
        try:
            return check()
        except ConfigError as exc:
            problems.extend(ConfigError(m) for m in exc.messages)
            return None

    top = Table(data, "", file, "the top level")
    for name in top.data:
        if name not in SECTIONS:
            problems.append(unknown(name, SECTIONS, "section", f"the top level ({file})"))
    server = attempt(lambda: _server(top.table("server", "[server]"), env))
    admin = attempt(lambda: _admin(top.table("admin", "[admin]"), server or ServerConfig()))
    sources = attempt(lambda: config_sources.sources(data, file, server or ServerConfig(), env, attempt))
    sections = (
        attempt(lambda: _storage(top.table("storage", "[storage]"), path, env)),
        attempt(lambda: _dingtalk(top.table("dingtalk", "[dingtalk]"), env)),
        attempt(lambda: config_card.statuses(top.table("statuses", "[statuses]"))),
        attempt(lambda: config_card.card(top.table("card", "[card]"))),
        attempt(lambda: _worker(top.table("worker", "[worker]"))),
    )
    storage, dingtalk, statuses, card, worker = sections
    if dingtalk is not None and sources is not None:
        problems.extend(config_apps.check_sources(sources, dingtalk.all_apps, dingtalk.default_app, file))
    if sources is not None and card is not None and statuses is not None:
        sources = config_card.with_templates(data, file, sources, card, statuses, attempt)
    problems.extend(_unset_env(data, file, env, problems))
    if problems or server is None or admin is None or sources is None or None in sections:
        messages = list(dict.fromkeys(p.message for p in problems))
        raise ConfigError(messages=messages or [f"{file}: invalid configuration"])
    assert storage and dingtalk and statuses and card and worker  # narrowed: every section was checked
    cfg = Config(server=server, admin=admin, storage=storage, dingtalk=dingtalk, statuses=statuses, card=card,
                 worker=worker, sources=tuple(sources), path=path)
    _check_lease(cfg, file)
    return cfg


def _unset_env(data: object, file: str, env: Mapping[str, str], found: list[ConfigError], key: str = ""
               ) -> list[ConfigError]:
    """Every ``env:NAME`` in the file whose variable is unset and not reported yet, so a newcomer learns all
    the variables to set in one run (a section stops at its first problem)."""
    out: list[ConfigError] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _unset_env(v, file, env, found, f"{key}.{k}" if key else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _unset_env(v, file, env, found + out, f"{key}[{i}]")
    elif isinstance(data, str) and data.startswith("env:"):
        name = data[len("env:"):]
        said = f"environment variable {name} is not set"
        if ENV_NAME.fullmatch(name) and name not in env and not any(said in p.message for p in found):
            out.append(ConfigError(f"{file}: {key}: {said}"))
    return out


def _check_lease(cfg: Config, file: str) -> None:
    """A job may take a token fetch, its call and one retry after a token refresh: if that can outlast its
    lease, the store hands the job to a second worker while the first is still calling DingTalk."""
    worst = 3 * cfg.dingtalk.timeout_s
    if cfg.worker.lease_s <= worst:
        raise ConfigError(
            f"{file}: worker.lease_s: must be more than 3 x dingtalk.timeout_s ({worst:g} s), so a job's lease "
            f"outlasts its slowest DingTalk calls; got {cfg.worker.lease_s:g}"
        )


def _server(t: Table, env: Mapping[str, str]) -> ServerConfig:
    t.only(f.name for f in dataclasses.fields(ServerConfig))
    d = ServerConfig()
    token = _secret(t, "admin_token", env, required=False)
    if token is not None and len(token.reveal()) < MIN_ADMIN_TOKEN_CHARS:
        raise t.fail("admin_token", f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters (a random string)")
    return ServerConfig(
        host=t.text("host", d.host),
        port=t.integer("port", d.port, low=0, high=65535),
        max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, low=1024, high=MAX_BODY_BYTES),
        admin_token=token,
        shutdown_timeout_s=t.number("shutdown_timeout_s", d.shutdown_timeout_s, open_low=False),
        # Upper bounds: past them a limit no longer protects anything.
        header_timeout_s=t.number("header_timeout_s", d.header_timeout_s, high=120),
        body_timeout_s=t.number("body_timeout_s", d.body_timeout_s, high=600),
        idle_timeout_s=t.number("idle_timeout_s", d.idle_timeout_s, high=3600),
        max_connections=t.integer("max_connections", d.max_connections, low=8, high=65536),
        max_future_s=t.integer("max_future_s", d.max_future_s, low=0, high=366 * 24 * 3600),
        max_age_days=t.integer("max_age_days", d.max_age_days, high=100 * 366),
    )


def _admin(t: Table, server: ServerConfig) -> AdminConfig:
    t.only(f.name for f in dataclasses.fields(AdminConfig))
    d = AdminConfig()
    port = t.integer("port", None, low=0, high=65535) if "port" in t.data else None
    if port is not None and port != 0 and port == server.port:
        raise t.fail("port", f"must differ from server.port ({server.port}): the admin API gets its own listener")
    hosts = t.raw("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise t.fail("allowed_hosts", "expected a list of host names (Host header values, e.g. 'bridge.internal')")
    return AdminConfig(host=t.text("host", d.host), port=port, allowed_hosts=tuple(h.strip().lower() for h in hosts))


_PG_URL = re.compile(r"^postgres(?:ql)?://(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@[^/]+/[^/?#]+(?:\?.*)?$")


def _storage(t: Table, config_path: Path | None, env: Mapping[str, str]) -> StorageConfig:
    t.only(f.name for f in dataclasses.fields(StorageConfig) if f.name != "password")
    d = StorageConfig()
    where = Path(t.text("path", d.path)).expanduser()
    if not where.is_absolute() and config_path is not None:
        where = config_path.parent / where
    url = t.text("url") if "url" in t.data else d.url
    password_env = t.text("password_env", d.password_env)
    password = None
    if url:
        match = _PG_URL.match(url)
        if match is None:
            raise t.fail("url", "must look like postgresql://USER@HOST:PORT/DATABASE")
        if match["password"]:
            raise t.fail("url", f"must not contain a password: set it in the environment variable {password_env}")
        if env.get(password_env):
            password = Secret(env[password_env])
    return StorageConfig(
        path=str(where), synchronous=t.text("synchronous", d.synchronous, choices=SYNCHRONOUS), url=url,
        password_env=password_env, password=password, pool_size=t.integer("pool_size", d.pool_size, low=1, high=200),
    )


def _dingtalk(t: Table, env: Mapping[str, str]) -> DingTalkConfig:
    t.only(f.name for f in dataclasses.fields(DingTalkConfig))
    d = DingTalkConfig()
    base_url, qps = t.url("base_url", d.base_url), t.number("qps", d.qps)
    apps = config_apps.apps(t, env, base_url=base_url, qps=qps)  # (): [dingtalk]'s own keys are the one app
    secret = _secret(t, "app_secret", env, required=False)
    return DingTalkConfig(
        base_url=base_url,
        app_key=t.text("app_key") if not apps else d.app_key,
        app_secret=secret or d.app_secret,
        agent_id=t.integer("agent_id") if not apps else d.agent_id,
        qps=qps,
        timeout_s=t.number("timeout_s", d.timeout_s),
        # DingTalk's own limits are the upper bounds: past them the calls fail.
        recall_window_s=t.integer("recall_window_s", d.recall_window_s, high=d.recall_window_s),
        update_window_s=t.integer("update_window_s", d.update_window_s, high=d.update_window_s),
        status_bar_max_userids=t.integer("status_bar_max_userids", d.status_bar_max_userids,
                                         high=d.status_bar_max_userids),
        recipient_ttl_s=t.integer("recipient_ttl_s", d.recipient_ttl_s),
        unknown_recipient_ttl_s=t.integer("unknown_recipient_ttl_s", d.unknown_recipient_ttl_s, low=0),
        unknown_user_codes=_codes(t, "unknown_user_codes", d.unknown_user_codes),
        apps=apps,
    )


def _codes(t: Table, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A list of DingTalk errcodes (integers)."""
    raw = t.raw(name, list(default))
    if not isinstance(raw, list) or any(isinstance(c, bool) or not isinstance(c, int) for c in raw):
        raise t.fail(name, f"must be a list of DingTalk errcodes (integers), got {raw!r}")
    return tuple(raw)


def _worker(t: Table) -> WorkerConfig:
    fields = dataclasses.fields(WorkerConfig)
    t.only(f.name for f in fields)
    d = WorkerConfig()
    values: dict[str, Any] = {
        "on_orphaned": t.text("on_orphaned", d.on_orphaned, choices=tuple(OrphanPolicy)),
        "retention_days": t.number("retention_days", d.retention_days, low=0.0, open_low=False),
        "intake_priority_s": t.number("intake_priority_s", d.intake_priority_s, low=0.0, open_low=False,
                                      high=60.0),
    }
    for f in fields:
        if f.name in values:
            continue
        default = getattr(d, f.name)
        values[f.name] = t.integer(f.name, default) if isinstance(default, int) else t.number(f.name, default)
    if values["retry_cap_s"] < values["retry_base_s"]:
        raise t.fail("retry_cap_s", f"must be at least worker.retry_base_s ({values['retry_base_s']:g})")
    if values["calls_in_flight"] > values["concurrency"]:
        raise t.fail("calls_in_flight", f"must be at most worker.concurrency ({values['concurrency']}); "
                                        f"got {values['calls_in_flight']}")
    return WorkerConfig(**values)


def override_server(cfg: Config, *, host: str | None = None, port: int | None = None) -> Config:
    """`cfg` with the listen address replaced (`--host` / `--port`), re-checking what depends on it: an
    unsigned source (signature = "none") must not become reachable off loopback."""
    server = dataclasses.replace(cfg.server, host=cfg.server.host if host is None else host,
                                 port=cfg.server.port if port is None else port)
    for i, source in enumerate(cfg.sources):
        if source.signature == "none" and not server.on_loopback:
            raise config_sources.unsigned_off_loopback(str(cfg.path or "<config>"), f"sources[{i}].signature",
                                                       server.host)
    return dataclasses.replace(cfg, server=server)


def sandbox(base_url: str, storage_path: str, admin_token: str | None = None) -> Config:
    """The built-in configuration of `bridge serve --sandbox`: the simulator's demo app and one canonical
    "demo" source signed with the public SANDBOX_WEBHOOK_SECRET. No file, no environment.

    The admin API needs a token even here (it is never open, not even on loopback): a fresh random one
    unless `admin_token` is given; `bridge serve --sandbox` prints it."""
    return from_dict(
        {
            "server": {"host": "127.0.0.1", "admin_token": admin_token or token_urlsafe(24)},
            "storage": {"path": storage_path},
            "dingtalk": {"base_url": base_url, "app_key": "dingdemoappkey", "app_secret": "demo-app-secret",
                         "agent_id": 1000001},
            "sources": [{"name": "demo", "signature": "standard-webhooks", "secret": SANDBOX_WEBHOOK_SECRET,
                         "format": "canonical"}],
        },
        env={},
    )
