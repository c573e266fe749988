"""Shipped mapping presets: each one turns its system's fixture payloads into the right events, loads through
`format = "preset:NAME"`, and can be overridden key by key (issue 17, item 8)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge import config
from bridge.config import Config
from bridge.errors import ConfigError
from bridge.events import Status
from bridge.sources import presets
from bridge.sources.mapping import normalise, parse_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ENV = {"DINGTALK_APP_SECRET": "demo-app-secret", "OA_TOKEN": "oa-shared-token-0001",
       "GITHUB_WEBHOOK_SECRET": "gh-secret-0001"}  # fmt: skip
PRESETS = ("github", "jira", "kingdee", "landray", "seeyon", "weaver", "yonbip")
STATUSES = {"pending": Status.PENDING, "approved": Status.APPROVED, "rejected": Status.REJECTED,
            "revoked": Status.REVOKED, "deleted": Status.DELETED}  # fmt: skip
RECIPIENTS = {"weaver": ("lisi", "wangwu"), "seeyon": ("lisi",), "landray": ("lisi",), "yonbip": ("lisi",),
              "kingdee": ("lisi",), "github": ("hubot_dt", "monalisa"), "jira": ("mia", "lisi")}  # fmt: skip


def deliveries(name: str) -> dict[str, dict[str, Any]]:
    data = json.loads((FIXTURES / "presets" / f"{name}.json").read_text("utf-8"))
    assert data["_comment"]  # every fixture says where its shape comes from
    result: dict[str, dict[str, Any]] = data["deliveries"]
    return result


def load_cfg(**dingtalk: Any) -> Config:
    data = tomllib.loads((FIXTURES / "mapping-presets.toml").read_text("utf-8"))
    data["dingtalk"].update(dingtalk)
    return config.from_dict(data, env=ENV)


CASES = [(name, kind) for name in PRESETS for kind in deliveries(name)]


def test_every_shipped_preset_has_a_fixture_and_a_source() -> None:
    assert presets.names() == PRESETS
    assert tuple(sorted(s.name for s in load_cfg().sources)) == PRESETS
    for name in PRESETS:
        kinds = deliveries(name)
        assert "pending" in kinds and len(kinds) >= 3, name
        text = (Path(presets.__file__).parent / f"{name}.toml").read_text("utf-8")
        assert "System side:" in text and "Shape:" in text, name  # documented setup and source


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_preset_payloads_become_the_right_events(name: str, kind: str) -> None:
    source = load_cfg().source(name)
    assert source is not None and source.format == "mapping" and source.mapping.preset == name
    delivery = deliveries(name)[kind]
    e = normalise(source.mapping, name, delivery["body"], headers=delivery.get("headers", {}))
    assert e.status == STATUSES[kind]
    assert e.occurred_at.tzinfo is not None
    if kind == "pending":
        assert e.has_card_data, e
        assert e.recipients == RECIPIENTS[name]
        assert e.url is not None and e.url.startswith("https://")
    same = normalise(source.mapping, name, json.loads(json.dumps(delivery["body"])),
                     headers=delivery.get("headers", {}))
    assert same.event_id == e.event_id  # a redelivery is a duplicate


@pytest.mark.parametrize("name", PRESETS)
def test_every_delivery_of_a_preset_has_its_own_event_id_and_one_approval_id(name: str) -> None:
    source = load_cfg().source(name)
    assert source is not None
    got = [normalise(source.mapping, name, d["body"], headers=d.get("headers", {})) for d in deliveries(name).values()]
    assert len({e.event_id for e in got}) == len(got)
    assert len({e.approval_id for e in got}) == 1


def test_weaver_reads_local_date_and_time_fields_in_china_time() -> None:
    source = load_cfg().source("weaver")
    assert source is not None
    e = normalise(source.mapping, "weaver", deliveries("weaver")["pending"]["body"])
    assert e.occurred_at.isoformat() == "2026-11-29T02:00:00+00:00"
    assert e.title == "采购申请-张三-2026-11-29 (80231)"
    assert e.url == "https://oa.acme.cn/spa/workflow/static4form/index.html#/main/workflow/req?requestid=80231"


def test_github_takes_the_delivery_header_as_the_event_id_and_skips_teams() -> None:
    source = load_cfg().source("github")
    assert source is not None
    d = deliveries("github")["pending"]
    e = normalise(source.mapping, "github", d["body"], headers=d["headers"])
    assert e.event_id == d["headers"]["X-GitHub-Delivery"]
    assert e.approval_id == "acme/shop/runs/7012385911"
    assert e.title == "部署审批 acme/shop → production"


def test_a_preset_is_overridden_key_by_key() -> None:
    table = {"preset": "weaver", "fields": {"content": "mainTable.reason"}, "statuses": {"approved": ["archive/3"]}}
    cfg = parse_config(table, "m")
    assert dict(cfg.fields)["recipients"][0].text == "operators[*].loginid"  # kept from the preset
    assert dict(cfg.fields)["content"][0].text == "mainTable.reason"
    assert ("archive/3", Status.APPROVED) in cfg.statuses and ("submit/3", Status.APPROVED) not in cfg.statuses
    assert ("reject/0", Status.REJECTED) in cfg.statuses


def test_unknown_presets_and_bad_overrides_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"m\.preset: unknown preset 'weavr' \(shipped: github, jira, kingdee"):
        parse_config({"preset": "weavr"}, "m")
    with pytest.raises(ConfigError, match=r"m\.fields: unknown canonical field 'titel'"):
        parse_config({"preset": "github", "fields": {"titel": "x"}}, "m")
    data = tomllib.loads((FIXTURES / "mapping-presets.toml").read_text("utf-8"))
    data["sources"] = [{"name": "x", "format": "preset:nope", "signature": "none"}]
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        config.from_dict(data, env=ENV)
