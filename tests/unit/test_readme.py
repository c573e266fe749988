"""The README and docs/ must not drift from the code: each test checks one thing a page claims.

Which page holds what: the state diagram is in docs/design.md, the native source examples in
docs/native-callbacks.md, the log events and metrics tables in docs/reference/, the test command in README.md.
"""

from __future__ import annotations

import argparse
import re
import tomllib
import unicodedata
from pathlib import Path

import pytest

from bridge import machine, openapi
from bridge.cli.main import build_parser
from bridge.metrics import Metrics
from bridge.records import Outcome

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
README_MAX_LINES = 220


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_first_cells(page: str) -> list[str]:
    """The first cell of every table row of a page (header and rule rows excluded)."""
    cells = []
    for line in page.splitlines():
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            cells.append(line.split("|")[1].strip())
    return cells


def test_state_diagram_matches_the_machine() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)```", text(DOCS / "design.md"), flags=re.S)
    assert blocks, "docs/design.md has no mermaid block"
    assert blocks[0].strip() == machine.transitions_mermaid().strip()


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    match = re.search(r"## Running the tests\n\n```sh\n(.*?)\n```", text(README), flags=re.S)
    assert match, "README has no 'Running the tests' command"
    install, _, run = match.group(1).partition(" && ")
    ci = text(ROOT / ".ci" / "run")
    assert install.replace("pip install", "").strip() in ci
    assert run.strip() in ci


@pytest.mark.parametrize("platform", ["dingtalk", "feishu", "wecom"])
def test_native_source_examples_are_the_tested_fixtures(platform: str) -> None:
    fixture = text(ROOT / "tests" / "fixtures" / f"native-{platform}.toml")
    block = fixture[fixture.index("[[sources]]"):].strip()
    first = block.split("\n[[sources]]")[0].strip()
    assert first in text(DOCS / "native-callbacks.md"), (
        f"docs/native-callbacks.md's {platform} example differs from tests/fixtures/native-{platform}.toml")


def logged_event_names() -> set[str]:
    """Every event name bridge logs: literal names passed to a logger, plus `event.<outcome>`."""
    call = re.compile(r"\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z_]+\.[a-z_.]+)\"")
    names = {m for path in (ROOT / "bridge").rglob("*.py") for m in call.findall(text(path))}
    return names | {f"event.{outcome}" for outcome in Outcome}


def documented_event_names() -> set[str]:
    names = set()
    for cell in table_first_cells(text(DOCS / "reference" / "logs.md")):
        names.update(re.findall(r"`([a-z_]+\.[a-z_.]+)`", cell))
    return names


def test_every_logged_event_is_in_the_log_reference() -> None:
    missing = logged_event_names() - documented_event_names()
    assert not missing, f"log events missing from docs/reference/logs.md: {sorted(missing)}"


def test_every_documented_log_event_is_logged() -> None:
    unknown = documented_event_names() - logged_event_names()
    assert not unknown, f"docs/reference/logs.md lists events bridge never logs: {sorted(unknown)}"


def test_the_metrics_table_is_what_bridge_registers() -> None:
    exposed = set()
    for family in Metrics().registry.collect():
        if not family.name.startswith("bridge_"):
            continue  # process_* and python_*: prometheus-client's collectors, named below the table
        exposed.add(family.name + {"counter": "_total", "info": "_info"}.get(family.type, ""))
    documented = {m for cell in table_first_cells(text(DOCS / "reference" / "metrics.md"))
                  for m in re.findall(r"`(bridge_[a-z_]+)`", cell)}
    assert documented == exposed, (f"undocumented: {sorted(exposed - documented)}; "
                                   f"documented but not registered: {sorted(documented - exposed)}")


def test_the_process_collectors_are_named_in_the_metrics_reference() -> None:
    page = text(DOCS / "reference" / "metrics.md")
    families = {f.name for f in Metrics().registry.collect() if not f.name.startswith("bridge_")}
    assert families and all(f"`{name}" in page for name in families), sorted(families)


def test_the_configuration_map_names_only_real_keys() -> None:
    example = text(ROOT / "config.example.toml")
    tomllib.loads(example)
    keys = set(re.findall(r"^#?\s*([a-z_]+)\s*=", example, flags=re.M))
    rows = [line for line in text(DOCS / "configuration.md").splitlines() if line.startswith("| `[")]
    assert rows, "docs/configuration.md has no sections table"
    for row in rows:
        for key in re.findall(r"`([a-z_]+)`", row.split("|")[2]):
            if key not in {"normal", "full", "update", "recall"}:
                assert key in keys, f"docs/configuration.md names key {key!r}, absent from config.example.toml"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in heading.strip().lower()
                   if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    page = re.sub(r"```.*?```", "", text(path), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", page, flags=re.M)}


def relative_links(path: Path) -> list[str]:
    page = re.sub(r"```.*?```", "", text(path), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", page)
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_something_that_exists(page: Path) -> None:
    for link in relative_links(page):
        target, _, fragment = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        assert file.exists(), f"{page.relative_to(ROOT)} links to {link}, which does not exist"
        if fragment and file.suffix == ".md":
            assert fragment in anchors(file), f"{page.relative_to(ROOT)} links to {link}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_page_names_exists(page: Path) -> None:
    """A module that moved (bridge/sqlite_store.py → bridge/store/sqlite.py) must not live on in the docs."""
    for path in re.findall(r"`((?:bridge|bench|tests)/[\w./*-]+)`", text(page)):
        assert list(ROOT.glob(path.rstrip("/"))), f"{page.relative_to(ROOT)} names {path}, which does not exist"


def test_the_readme_stays_short_and_links_every_page() -> None:
    readme = text(README)
    assert len(readme.splitlines()) <= README_MAX_LINES
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README's documentation table does not link docs/{page.name}"


def test_the_module_map_names_every_module() -> None:
    """docs/development.md maps bridge by folder: a flat module by its path, a folder's module in the folder's row."""
    rows = {}
    for line in text(DOCS / "development.md").splitlines():
        match = re.match(r"\| `(bridge/[\w/]*?)/?` \|", line)
        if match:
            rows[match.group(1)] = line
    page = text(DOCS / "development.md")
    missing = []
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py" or rel.parent == Path("bridge"):
            named = path.name == "__init__.py" or f"`{rel.as_posix()}`" in page
        else:
            named = f"`{path.name}`" in rows.get(rel.parent.as_posix(), "")
        if not named:
            missing.append(rel.as_posix())
    assert not missing, f"modules missing from docs/development.md's module map: {missing}"


def cli_rows() -> dict[str, str]:
    rows = {}
    for cell, line in zip(table_first_cells(text(DOCS / "reference" / "cli.md")),
                          [x for x in text(DOCS / "reference" / "cli.md").splitlines()
                           if x.startswith("|") and not re.match(r"\|\s*-", x)], strict=True):
        match = re.match(r"`bridge ([a-z-]+)", cell)
        if match:
            rows[match.group(1)] = line
    return rows


def test_the_cli_reference_has_every_command_and_option() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    rows = cli_rows()
    assert set(rows) == set(commands), f"docs/reference/cli.md commands differ from the parser: {sorted(rows)}"
    shared = text(DOCS / "reference" / "cli.md").split("| command")[0]  # --config and --sandbox, said once
    missing = []
    for name, sub in commands.items():
        for action in sub._actions:
            options = action.option_strings
            hidden = action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction)
            if options and not hidden and not any(
                    re.search(rf"`[^`]*{re.escape(o)}\b", rows[name] + shared) for o in options):
                missing.append(f"bridge {name} {options[-1]}")
    assert not missing, f"docs/reference/cli.md does not mention: {missing}"


def test_the_http_reference_has_every_route() -> None:
    documented = set()
    for cell in table_first_cells(text(DOCS / "reference" / "http-api.md")):
        match = re.match(r"`([A-Z]+) (/[^?` ]*)", cell)
        if match:
            documented.add((match.group(1), match.group(2)))
    served = {(method.upper(), path) for path, ops in openapi.document()["paths"].items() for method in ops
              if method in {"get", "post", "put", "patch", "delete"}}
    assert documented == served, (f"undocumented: {sorted(served - documented)}; "
                                  f"documented but not served: {sorted(documented - served)}")
