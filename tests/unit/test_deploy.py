"""The deployment kit in deploy/ is checked, not just shipped: alert rules and dashboard queries use only series
bridge really exports (with labels those series have), the systemd unit and the Dockerfile are parsed and
held to what docs/deployment.md promises (restart policy, hardening, secrets from an environment file, a
non-root user, a health check on /healthz). Nothing here needs a registry or a running daemon;
`systemd-analyze verify` runs where it exists.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bridge.cli import common
from bridge.config import ServerConfig
from bridge.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every series it scrapes
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "or", "and", "unless",
    "by", "without", "on", "ignoring", "bool", "offset", "label_values", "abs", "clamp_min", "time",
}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",),
            "summary": ("_sum", "_count", "")}


@functools.cache
def exported() -> dict[str, set[str]]:
    """Every series name bridge's /metrics can show, with the label names it carries."""
    m = Metrics()
    series: dict[str, set[str]] = {"up": set()}
    for value in vars(m).values():
        if isinstance(value, MetricWrapperBase):
            labels = set(value._labelnames)
            if value._type == "info":
                labels = {"version", "python", "store"}
            for suffix in SUFFIXES[value._type]:
                series[value._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in m.registry.collect():  # the process and platform collectors
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for each series an expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals say nothing about names
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations, [$__rate_interval] included
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    out: list[tuple[str, set[str]]] = []
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?", expr):
        name, matchers = match.group(1), match.group(2) or ""
        if name in PROMQL_WORDS and not matchers:
            continue
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        out.append((name, labels))
    return out


def check_expr(expr: str, where: str) -> None:
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where
    series = exported()
    found = selectors(expr)
    assert found, f"{where}: selects nothing: {expr}"
    for name, labels in found:
        assert name in series, f"{where}: {name} is not a series bridge exports ({expr})"
        unknown = labels - series[name] - SCRAPE_LABELS
        assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)}"


def test_the_checker_catches_a_wrong_name_and_a_wrong_label() -> None:
    check_expr('sum(rate(bridge_dingtalk_calls_total{code!="0"}[5m]))', "ok")
    with pytest.raises(AssertionError, match="not a series"):
        check_expr("bridge_jobs_dead > 0", "typo")
    with pytest.raises(AssertionError, match="no label"):
        check_expr('bridge_jobs{status="dead"} > 0', "label")


# --- Prometheus alert rules ----------------------------------------------------------------------------------
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_cover_what_on_call_needs() -> None:
    names = {r["alert"] for r in rules()}
    for needed in ("BridgeDeadJobs", "BridgeOrphanedNotices", "BridgeDingTalkErrorRate", "BridgeBacklogAge",
                   "BridgeNotReady", "BridgeDown"):
        assert needed in names


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_alert_rule_is_complete_and_uses_real_series(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    check_expr(rule["expr"], rule["alert"])


# --- Grafana dashboard ---------------------------------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return data


def test_dashboard_is_importable_json_with_unique_ids_and_no_overlaps() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    assert {v["name"] for v in d["templating"]["list"]} >= {"datasource", "job", "instance"}
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def test_dashboard_queries_use_real_series_and_show_the_key_ones() -> None:
    used: set[str] = set()
    for p in dashboard()["panels"]:
        assert p["title"] and p["targets"], p
        for t in p["targets"]:
            check_expr(t["expr"], p["title"])
            used |= {name for name, _ in selectors(t["expr"])}
    for key in ("bridge_jobs", "bridge_dingtalk_calls_total", "bridge_webhooks_received_total", "bridge_ready",
                "bridge_orphaned_notices", "bridge_oldest_pending_job_age_seconds", "process_resident_memory_bytes",
                "bridge_build_info"):
        assert key in used


# --- systemd unit --------------------------------------------------------------------------------------------
def unit() -> dict[str, list[tuple[str, str]]]:
    """The unit file's sections as (key, value) lists: systemd allows a key more than once."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in (DEPLOY / "bridge.service").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None and "=" in line, raw
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_restarts_on_failure_reads_secrets_from_a_file_and_is_hardened() -> None:
    s = unit()
    assert set(s) == {"Unit", "Service", "Install"}
    service = dict(s["Service"])
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(common.EXIT_USAGE)  # a bad configuration is not retried
    assert service["EnvironmentFile"].startswith("/etc/")
    start = service["ExecStart"].split()
    assert Path(start[0]).name == "dingbridge" and start[1] == "serve" and "--config" in start
    assert "check-config" in service["ExecStartPre"]
    assert float(service["TimeoutStopSec"].rstrip("s")) > ServerConfig().shutdown_timeout_s
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                 "PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
                 "ProtectKernelTunables": "yes", "UMask": "0077"}
    for key, value in hardening.items():
        assert service.get(key) == value, key
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert dict(s["Install"])["WantedBy"] == "multi-user.target"


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    dingbridge = str(Path(sys.executable).with_name("dingbridge"))
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the parsing test above still checks the unit")
    text = (DEPLOY / "bridge.service").read_text(encoding="utf-8")
    text = text.replace("/opt/bridge/bin/dingbridge", dingbridge).replace("EnvironmentFile=/", "EnvironmentFile=-/")
    (tmp_path / "bridge.service").write_text(text, encoding="utf-8")
    r = subprocess.run([analyze, "verify", str(tmp_path / "bridge.service")], capture_output=True, text=True,
                       timeout=60, check=False)
    problems = [line for line in r.stderr.splitlines() if "bridge.service" in line]
    assert r.returncode == 0 and not problems, r.stderr


# --- Dockerfile ----------------------------------------------------------------------------------------------
DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                       "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def instructions() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if raw.strip().startswith("#") and not pending:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_and_checks_healthz() -> None:
    steps = instructions()
    assert {word for word, _ in steps} <= DOCKER_INSTRUCTIONS
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    low = tuple(int(x) for x in wanted.removeprefix(">=").split("."))
    for i in froms:
        image = steps[i][1].split()[0]
        version = re.fullmatch(r"python:(\d+)\.(\d+)-slim", image)
        assert version and tuple(map(int, version.groups())) >= low, image
    final = steps[froms[-1]:]
    final_words = dict(final)
    assert final_words["USER"].split(":")[0] not in ("root", "0")
    port = final_words["EXPOSE"]
    health = final_words["HEALTHCHECK"]
    assert f"127.0.0.1:{port}/healthz" in health and "--interval=" in health and "--timeout=" in health
    assert json.loads(final_words["ENTRYPOINT"]) == ["dingbridge"]
    cmd = json.loads(final_words["CMD"])
    assert cmd[0] == "serve" and "--config" in cmd and cmd[cmd.index("--port") + 1] == port
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            *sources, _ = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), src


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    copied = {src for word, rest in instructions() if word == "COPY" and "--from" not in rest
              for src in rest.split()[:-1]}
    for src in copied:
        assert f"!{src.rstrip('/')}" in {line.rstrip("/") for line in ignore}, src
