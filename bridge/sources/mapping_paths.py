"""Paths into a sender's JSON for mapped sources: JMESPath, with the older dotted form still read as before.

A path is compiled once, at config load. `approvers[*].userId`, `reviewers[*].reviewer.login`, filters
(`tasks[?state=='open'].assignee`) and functions are JMESPath (https://jmespath.org). Paths written before
JMESPath (`event.items[0].id`, keys with dashes or Chinese characters such as `表单.金额`) are plain
dotted names with list indexes; when such a path is not valid JMESPath, or uses no JMESPath operator, it is
walked step by step exactly as it always was. So every config that loaded before still means the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge import events
from bridge.templating import JMESPathSyntax, compile_jmespath, compiled

_SEGMENT = re.compile(r"([^.\[\]\s]+)((?:\[\d+\])*)")  # the pre-JMESPath grammar, unchanged
_PLAIN_NAME = re.compile(r"[^.\[\]\s|&!=<>(){}'\"`@*,:?]+")  # a name in which JMESPath sees no operator
_INDEX = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Path:
    """A checked path: `steps` for the dotted form (walked directly); no steps means a JMESPath expression,
    compiled at parse time and kept by bridge.templating."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: object) -> Path:
        """Raises ValueError saying what is wrong with the path."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"expected a path string, got {events.kind_of(text)}")
        steps = _dotted(text)
        if steps is not None and all(isinstance(s, int) or _PLAIN_NAME.fullmatch(s) for s in steps):
            return cls(text, steps)
        try:
            compile_jmespath(text)
            return cls(text, ())
        except JMESPathSyntax as exc:
            if steps is not None:  # valid before JMESPath: keep its old meaning
                return cls(text, steps)
            raise ValueError(f"bad path {text!r}: {exc.reason} at character {exc.offset + 1}; use JMESPath "
                             "(https://jmespath.org), like event.items[0].id or approvers[*].userId") from None

    @property
    def is_projection(self) -> bool:
        """True when the path can give a list of matches (a JMESPath expression rather than a dotted path)."""
        return not self.steps

    def get(self, doc: object) -> object | None:
        """The value at this path, or None when nothing is there (JSON null and an empty match count as none)."""
        if not self.steps:
            value = compiled(self.text).search(doc)
            return None if value == [] else value
        for step in self.steps:
            if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
                doc = doc[step]
            elif isinstance(step, str) and isinstance(doc, dict):
                doc = doc.get(step)
            else:
                return None
        return doc


def _dotted(text: str) -> tuple[str | int, ...] | None:
    steps: list[str | int] = []
    for part in text.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            return None
        steps.append(m.group(1))
        steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
    return tuple(steps)
