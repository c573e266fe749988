"""Several DingTalk apps: [[dingtalk.apps]], each source's `app`, and today's single [dingtalk] app unchanged."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge import config
from bridge.cli import config_show
from bridge.config import DEFAULT_APP, Secret
from bridge.errors import ConfigError
from tests.unit.test_config import WHSEC, build, minimal

HR_SECRET, SALES_SECRET = "hr-app-secret-0123456789", "sales-app-secret-0123456789"
ENV = {"HR_APP_SECRET": HR_SECRET, "SALES_APP_SECRET": SALES_SECRET}


def two_apps(*sources: dict[str, Any], hr: dict[str, Any] | None = None, **dingtalk: Any) -> dict[str, Any]:
    return {
        "dingtalk": {"qps": 10, **dingtalk, "apps": [
            {"name": "hr", "app_key": "dinghr", "app_secret": "env:HR_APP_SECRET", "agent_id": 1001, **(hr or {})},
            {"name": "sales", "app_key": "dingsales", "app_secret": "env:SALES_APP_SECRET", "agent_id": 2002,
             "qps": 5, "base_url": "http://127.0.0.1:8789/"},
        ]},
        "sources": list(sources) or [{"name": "erp", "secret": WHSEC, "app": "hr"}],
    }


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(data, ENV if env is None else env)
    return info.value.messages


def test_the_single_dingtalk_table_is_the_one_app_named_default() -> None:
    cfg = build(minimal())
    [app] = cfg.dingtalk.all_apps
    assert (app.name, app.app_key, app.agent_id, app.default) == (DEFAULT_APP, "dingkey", 42, True)
    assert cfg.dingtalk.default_app == DEFAULT_APP and cfg.app_of("erp") == DEFAULT_APP
    assert cfg.dingtalk.apps == ()  # nothing new is stored: the fields are what they always were


def test_two_apps_each_source_on_its_own() -> None:
    cfg = build(two_apps({"name": "erp", "secret": WHSEC, "app": "hr"},
                         {"name": "crm", "secret": WHSEC, "app": "sales"}), ENV)
    hr, sales = cfg.dingtalk.all_apps
    assert (hr.name, hr.agent_id, hr.qps, hr.base_url, hr.app_secret) == \
        ("hr", 1001, 10.0, "https://oapi.dingtalk.com", Secret(HR_SECRET))  # qps and base_url from [dingtalk]
    assert (sales.qps, sales.base_url, sales.app_secret) == (5.0, "http://127.0.0.1:8789", Secret(SALES_SECRET))
    assert (cfg.app_of("erp"), cfg.app_of("crm")) == ("hr", "sales")
    assert cfg.dingtalk.default_app is None


def test_a_source_without_app_takes_the_default_app() -> None:
    cfg = build(two_apps({"name": "erp", "secret": WHSEC}, hr={"default": True}), ENV)
    assert cfg.dingtalk.default_app == "hr" and cfg.app_of("erp") == "hr"


@pytest.mark.parametrize(("data", "key", "words"), [
    (two_apps({"name": "erp", "secret": WHSEC, "app": "hrr"}), "sources[0].app", "unknown app 'hrr'"),
    (two_apps({"name": "erp", "secret": WHSEC}), "sources[0].app", "none marked default = true"),
    (two_apps(hr={"name": "sales"}), "dingtalk.apps[1].name", "duplicate app name 'sales'"),
    (two_apps(hr={"app_key": "dingsales"}), "dingtalk.apps[1].app_key", "app 'hr' has the same app_key"),
    (two_apps(app_key="dinghr"), "dingtalk.app_key", "move it into its [[dingtalk.apps]] entry"),
    (two_apps(hr={"agent": 1}), "agent", "[[dingtalk.apps]] #1"),
    (two_apps(hr={"default": "yes"}), "dingtalk.apps[0].default", "true or false"),
    (two_apps(hr={"name": "HR"}), "dingtalk.apps[0].name", "must match"),
    ({**minimal(), "sources": [{"name": "erp", "secret": WHSEC, "app": "hr"}]}, "sources[0].app",
     "the single [dingtalk] app needs no `app`"),
])
def test_app_problems_name_their_key(data: dict[str, Any], key: str, words: str) -> None:
    found = problems(data)
    assert any(key in p and words in p for p in found), found


def test_two_defaults_are_refused() -> None:
    data = two_apps({"name": "erp", "secret": WHSEC}, hr={"default": True})
    data["dingtalk"]["apps"][1]["default"] = True
    assert any("dingtalk.apps[1].default: only one app may be the default; app 'hr' already is" in p
               for p in problems(data))


def test_an_unset_app_secret_is_named() -> None:
    assert any("SALES_APP_SECRET is not set" in p for p in problems(two_apps(), {"HR_APP_SECRET": HR_SECRET}))


def test_config_show_masks_every_apps_secret() -> None:
    cfg = build(two_apps({"name": "erp", "secret": WHSEC, "app": "hr"}), ENV)
    shown = str(config_show.summary(cfg)) + config_show.describe(cfg)
    assert HR_SECRET not in shown and SALES_SECRET not in shown
    assert "hr" in config_show.describe(cfg) and "agent_id 2002" in config_show.describe(cfg)


def test_the_sandbox_is_one_default_app() -> None:
    cfg = config.sandbox("http://127.0.0.1:9", "/tmp/x.db")
    assert [a.name for a in cfg.dingtalk.all_apps] == [DEFAULT_APP]


def test_the_documented_two_app_example_loads() -> None:
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page.split("## Several DingTalk apps", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, flags=re.S)
    assert block is not None
    env = {"DINGTALK_HR_SECRET": HR_SECRET, "DINGTALK_SALES_SECRET": SALES_SECRET, "OA_WEBHOOK_SECRET": WHSEC,
           "CRM_WEBHOOK_SECRET": WHSEC}
    cfg = config.from_dict(tomllib.loads(block.group(1)), env=env)
    assert [(a.name, a.qps) for a in cfg.dingtalk.all_apps] == [("hr", 20.0), ("sales", 10.0)]
    assert (cfg.app_of("oa"), cfg.app_of("crm")) == ("hr", "sales")
