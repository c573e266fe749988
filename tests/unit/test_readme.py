"""The README must not drift from the code: the state diagram and the test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from bridge import machine

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_state_diagram_matches_the_machine() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no mermaid block"
    assert blocks[0].strip() == machine.transitions_mermaid().strip()


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    match = re.search(r"## Running the tests\n\n```sh\n(.*?)\n```", README, flags=re.S)
    assert match, "README has no 'Running the tests' command"
    install, _, run = match.group(1).partition(" && ")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install.replace("pip install", "").strip() in ci
    assert run.strip() in ci


def test_native_source_examples_are_the_tested_fixtures() -> None:
    for platform in ("dingtalk", "feishu", "wecom"):
        text = (ROOT / "tests" / "fixtures" / f"native-{platform}.toml").read_text(encoding="utf-8")
        block = text[text.index("[[sources]]"):].strip()
        first = block.split("\n[[sources]]")[0].strip()
        assert first in README, f"README's {platform} example differs from tests/fixtures/native-{platform}.toml"
