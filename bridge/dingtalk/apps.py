"""The DingTalk client of every configured app, and which app a source or a card goes through.

Why it exists: each DingTalk app (an org of a group company, or another agent) has its own credentials, access
token and 20 calls/s per endpoint, and a userid means something only inside its org. So bridge holds one
`Client` per app (`[[dingtalk.apps]]`, or the single `[dingtalk]` app named "default"), each with its own token
and rate limiter. A new card goes out through its source's app; the app that sent a card is stored on its notice,
so its updates, recall and progress checks go back to that app even after the source moved to another one.
Cards stored before apps existed (no app on the notice) belong to the default app.

Each app's client reports to an observer bound to the app's name: the metrics get an `app` label, and
`AppStats` keeps the per-app figures `bridge status` and the admin API's GET /apps show.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bridge import errors
from bridge.config_model import DEFAULT_APP, Config

if TYPE_CHECKING:
    import aiohttp

    from bridge.clock import Clock
    from bridge.dingtalk.client import Client, TokenRegistry
    from bridge.dingtalk.fleetlimit import SlotSource
    from bridge.records import Notice

__all__ = ["DEFAULT_APP", "AppCallObserver", "AppClients", "AppStats", "is_throttle_code"]

C = TypeVar("C")

_THROTTLE_HTTP = frozenset({"http_403", "http_429"})  # the IP-ban page answers


def is_throttle_code(code: str) -> bool:
    """Whether a call's result code (bridge.errors.DingTalkError.code) says DingTalk throttled it: 900xx (but
    90020, not a limit), or the IP-ban page."""
    if code in _THROTTLE_HTTP:
        return True
    return code.isdigit() and 90000 <= int(code) <= 90999 and code != "90020"


class AppCallObserver(Protocol):
    """The DingTalk call hooks with the app's name (bridge.metrics.Metrics implements it)."""

    def call_finished(self, call: str, code: str, seconds: float, app: str = DEFAULT_APP) -> None: ...

    def token_refreshed(self, app: str = DEFAULT_APP) -> None: ...


@dataclass
class AppStats:
    """Calls this process made through one app since it started: all, failed, throttled (and token fetches)."""

    calls: int = 0
    errors: int = 0
    throttled: int = 0
    tokens: int = 0


class _Bound:
    """A client's CallObserver for one app: counts into its AppStats and labels the metrics with the app."""

    def __init__(self, app: str, stats: AppStats, inner: AppCallObserver | None) -> None:
        self.app, self.stats, self.inner = app, stats, inner

    def call_finished(self, call: str, code: str, seconds: float) -> None:
        self.stats.calls += 1
        if code != "0":
            self.stats.errors += 1
            if is_throttle_code(code):
                self.stats.throttled += 1
        if self.inner is not None:
            self.inner.call_finished(call, code, seconds, app=self.app)

    def token_refreshed(self) -> None:
        self.stats.tokens += 1
        if self.inner is not None:
            self.inner.token_refreshed(app=self.app)


class AppClients(Generic[C]):
    """name → the client of each app; `for_source` / `for_notice` pick the app of a new or an existing card."""

    def __init__(self, clients: Mapping[str, C], cfg: Config, stats: Mapping[str, AppStats] | None = None) -> None:
        if not clients:
            raise ValueError("at least one DingTalk app is needed")
        self._clients = dict(clients)
        self.cfg = cfg
        self.stats = {name: (stats or {}).get(name) or AppStats() for name in self._clients}

    @classmethod
    def same(cls, client: C, cfg: Config) -> AppClients[C]:
        """Every configured app served by one client (tests inject one fake or simulator client)."""
        return cls({a.name: client for a in cfg.dingtalk.all_apps}, cfg)

    @staticmethod
    def from_config(session: aiohttp.ClientSession, cfg: Config, *, clock: Clock | None = None,
                    observer: AppCallObserver | None = None, tokens: TokenRegistry | None = None,
                    slots: SlotSource | None = None) -> AppClients[Client]:
        """One Client per configured app, each with its own token and rate limiter (with `slots`, PostgreSQL,
        each app's limiter is shared by the whole fleet: bridge.dingtalk.fleetlimit)."""
        from bridge.dingtalk.client import Client

        d = cfg.dingtalk
        stats = {a.name: AppStats() for a in d.all_apps}
        clients = {a.name: Client(session, app_key=a.app_key, app_secret=a.app_secret, agent_id=a.agent_id,
                                  base_url=a.base_url, qps=a.qps, timeout_s=d.timeout_s, clock=clock,
                                  observer=_Bound(a.name, stats[a.name], observer), tokens=tokens, app=a.name,
                                  slots=slots)
                   for a in d.all_apps}
        return AppClients(clients, cfg, stats)

    def __iter__(self) -> Iterator[tuple[str, C]]:
        return iter(self._clients.items())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def get(self, name: str) -> C:
        try:
            return self._clients[name]
        except KeyError:
            raise errors.BridgeError(f"no DingTalk app {name!r} is configured (apps: {', '.join(self._clients)})"
                                     ) from None

    def figures(self, clock: Clock) -> list[dict[str, Any]]:
        """Each app as GET /apps and `bridge status` show it: who it is (no secret), its token's last success and
        failure (UTC), and this process's calls, errors and throttled calls through it since start."""
        now, mono = clock.now(), clock.monotonic()

        def at(value: object) -> str | None:
            return (now - timedelta(seconds=mono - value)).isoformat() if isinstance(value, int | float) else None

        out = []
        for name, client in self._clients.items():
            app = self.cfg.dingtalk.app(name)
            stats = self.stats[name]
            ok_at, failed_at = getattr(client, "last_token_ok_at", None), getattr(client, "last_token_error_at", None)
            out.append({
                "name": name, "default": name == self.cfg.dingtalk.default_app,
                "app_key": app.app_key if app else None, "agent_id": app.agent_id if app else None,
                "base_url": app.base_url if app else None, "qps": app.qps if app else None,
                "sources": [s.name for s in self.cfg.sources if self.cfg.app_of(s.name) == name],
                "token": {"ok": not (failed_at is not None and (ok_at is None or failed_at > ok_at)),
                          "last_ok_at": at(ok_at), "last_error_at": at(failed_at)},
                "calls": stats.calls, "errors": stats.errors, "throttled": stats.throttled, "tokens": stats.tokens,
            })
        return out

    def app_of_source(self, source: str) -> str:
        """The app a source's new cards go out through (config: its `app`, else the default app)."""
        name = self.cfg.app_of(source)
        if name is None:
            raise errors.BridgeError(f"source {source!r} has no DingTalk app: give it app = \"NAME\" or mark an "
                                     "app default = true")
        return name

    def app_of_notice(self, notice: Notice) -> str:
        """The app of an existing card: the one stored on it at its send; a card not sent yet goes through its
        source's app; a card sent before apps were stored belongs to the default app."""
        if notice.app:
            return notice.app
        if notice.task_id is None:
            return self.app_of_source(notice.source)
        return self.cfg.dingtalk.default_app or self.app_of_source(notice.source)
