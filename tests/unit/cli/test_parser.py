"""`bridge --help` is complete: every command a description and an example, every option a help text that
names its default; nothing the user may pass is hidden."""

from __future__ import annotations

import argparse

import pytest

from bridge.cli import main
from bridge.cli.helptext import EXAMPLES, SUMMARIES


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = main.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_summary_and_examples_and_nothing_else_does() -> None:
    commands = _commands()
    assert set(commands) == set(SUMMARIES) == set(EXAMPLES) - {"bridge"}
    for name, p in commands.items():
        assert p.description and p.epilog and p.epilog.startswith("examples:\n"), name
        assert f"bridge {name}" in p.epilog, name


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_every_option_has_help_naming_its_default(name: str) -> None:
    p = _commands()[name]
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        valued = action.option_strings and not isinstance(action, argparse._StoreTrueAction)
        if valued and not action.required:
            assert "default" in action.help, (name, action.dest, action.help)


def test_sandbox_and_config_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exc:
        main.build_parser().parse_args(["serve", "--sandbox", "--config", "x.toml"])
    assert exc.value.code == 2
