"""The DingTalk apps of the configuration: `[[dingtalk.apps]]` tables, or today's single unnamed `[dingtalk]` app.

Why it exists apart from bridge.config: a group company has several orgs (or several agents in one org), each a
DingTalk app with its own credentials, token and 20 calls/s; sources choose theirs with `app = "NAME"`. The rules
that tie the two sections together (every `app` names a configured app, names and app keys are unique, a source
without `app` needs a default app) are checked here, each problem naming its dotted key.

Without `[[dingtalk.apps]]` the `[dingtalk]` table's own app_key / app_secret / agent_id are the one app, named
`default` (DEFAULT_APP), exactly as before apps existed. With them, those three keys belong in each entry; an
entry's `base_url` and `qps` default to [dingtalk]'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bridge.config_model import DEFAULT_APP, DingTalkApp, SourceConfig
from bridge.errors import ConfigError
from bridge.secret import Secret, resolve_secret
from bridge.tomltable import Table, kind

__all__ = ["APP_KEYS", "APP_NAME", "DEFAULT_APP", "apps", "check_sources", "secret"]

APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a label value and a word in logs, like source names
APP_KEYS = ("name", "app_key", "app_secret", "agent_id", "qps", "base_url", "default")
PER_APP = ("app_key", "app_secret", "agent_id")  # in [dingtalk] itself only when it is the one app


def secret(t: Table, name: str, env: Mapping[str, str], *, required: bool) -> Secret | None:
    """A secret key of `t`: inline or ``env:NAME``, never empty."""
    if name not in t.data:
        if required:
            raise t.fail(name, "required (a secret inline, or 'env:NAME')")
        return None
    value = resolve_secret(t.data[name], f"{t.file}: {t.path(name)}", env)
    if not value.reveal():
        raise t.fail(name, "must not be empty")
    return value


def apps(t: Table, env: Mapping[str, str], *, base_url: str, qps: float) -> tuple[DingTalkApp, ...]:
    """The apps of the [dingtalk] table `t`: () when it has no [[dingtalk.apps]] (then its own keys are the one
    app, see `DingTalkConfig.all_apps`), after checking those keys; else every entry, checked."""
    if "apps" not in t.data:
        t.text("app_key")
        secret(t, "app_secret", env, required=True)
        t.integer("agent_id")
        return ()
    for name in PER_APP:
        if name in t.data:
            raise t.fail(name, "with [[dingtalk.apps]] every app has its own: move it into its [[dingtalk.apps]] "
                               "entry")
    raw = t.data["apps"]
    if not isinstance(raw, list) or not raw or not all(isinstance(entry, dict) for entry in raw):
        raise t.fail("apps", f"expected one or more [[dingtalk.apps]] tables, got {kind(raw)}")
    found: list[DingTalkApp] = []
    for i, entry in enumerate(raw):
        found.append(_app(Table(entry, f"dingtalk.apps[{i}]", t.file, f"[[dingtalk.apps]] #{i + 1}"), env,
                          found, base_url=base_url, qps=qps))
    defaults = [i for i, a in enumerate(found) if a.default]
    if len(defaults) > 1:
        raise ConfigError(f"{t.file}: dingtalk.apps[{defaults[1]}].default: only one app may be the default; "
                          f"app {found[defaults[0]].name!r} already is")
    return tuple(found)


def _app(a: Table, env: Mapping[str, str], before: Sequence[DingTalkApp], *, base_url: str,
         qps: float) -> DingTalkApp:
    a.only(APP_KEYS)
    name = a.text("name", pattern=APP_NAME, shape="^[a-z0-9][a-z0-9_-]{0,63}$")
    a.label = f"{a.label} ({name!r})"
    if any(b.name == name for b in before):
        raise a.fail("name", f"duplicate app name {name!r}")
    app_key = a.text("app_key")
    same = next((b for b in before if b.app_key == app_key), None)
    if same is not None:
        raise a.fail("app_key", f"app {same.name!r} has the same app_key: one DingTalk app is one entry")
    app_secret = secret(a, "app_secret", env, required=True)
    assert app_secret is not None
    default = a.raw("default", False)
    if not isinstance(default, bool):
        raise a.fail("default", f"expected true or false, got {kind(default)}")
    return DingTalkApp(name=name, app_key=app_key, app_secret=app_secret, agent_id=a.integer("agent_id"),
                       base_url=a.url("base_url", base_url), qps=a.number("qps", qps), default=default)


def check_sources(sources: Sequence[SourceConfig], known: Sequence[DingTalkApp], default: str | None,
                  file: str) -> list[ConfigError]:
    """Every source's `app` names a configured app; a source without one needs a default app."""
    names = [a.name for a in known]
    problems = []
    for i, source in enumerate(sources):
        if source.app is not None and source.app not in names:
            problems.append(ConfigError(
                f"{file}: sources[{i}].app: source {source.name!r} names the unknown app {source.app!r}; "
                f"configured apps: {', '.join(names)}" + ("" if len(known) > 1 or known[0].name != DEFAULT_APP
                                                          else " (the single [dingtalk] app needs no `app`)")))
        elif source.app is None and default is None:
            problems.append(ConfigError(
                f"{file}: sources[{i}].app: source {source.name!r} names no app and there are {len(known)} "
                f"apps ({', '.join(names)}) with none marked default = true: set app = \"NAME\""))
    return problems
