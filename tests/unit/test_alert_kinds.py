"""The journal_alerts index of both schemas holds exactly the AlertKind kinds: SQLite uses a partial index only
when the query repeats its condition literally, so the kinds are written out in the SQL, and this keeps the
enum, the indexes and the queries from drifting apart."""

from __future__ import annotations

import re
from importlib import resources

from bridge.records import AlertKind

KINDS = re.compile(r"journal_alerts\b.*?kind IN \(([^)]*)\)", re.S)


def kinds_in(*path: str) -> list[set[str]]:
    text = resources.files("bridge.store").joinpath("sql", *path).read_text()
    return [{k.strip().strip("'") for k in m.group(1).split(",")} for m in KINDS.finditer(text)]


def test_both_schemas_and_queries_name_the_alert_kinds() -> None:
    expected = {str(k) for k in AlertKind}
    for path in (("schema.sql",), ("queries.sql",), ("postgres", "schema.sql"), ("postgres", "queries.sql")):
        found = kinds_in(*path)
        assert found == [expected], path
