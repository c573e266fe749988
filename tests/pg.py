"""A fresh PostgreSQL database for the tests of one session, created from BRIDGE_TEST_POSTGRES_URL and dropped
after. Tests that need it call `database_url()`; where PostgreSQL (or its driver) is missing they skip with a
reason saying how to get it, or fail under BRIDGE_REQUIRE_REAL=1 (see tests.real)."""

from __future__ import annotations

import os
import uuid

from tests.real import missing

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOW = ("run PostgreSQL 15+ and point BRIDGE_TEST_POSTGRES_URL at a superuser connection "
       f"(default {DEFAULT_URL}); install the driver with pip install -e '.[postgres]'")
TABLES = "inbox, deciding, approvals, notices, jobs, audit, journal, probe, tokens, rate_slots, recipients"


def admin_url() -> str:
    return os.environ.get("BRIDGE_TEST_POSTGRES_URL", DEFAULT_URL)


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


class PgDatabase:
    """One database per test session (created on first use). `reset()` empties every bridge table."""

    def __init__(self) -> None:
        self.name = f"bridge_test_{uuid.uuid4().hex[:10]}"
        self.url: str | None = None
        self.error: str | None = None

    def get(self) -> str:
        if self.url is None and self.error is None:
            try:
                import psycopg
            except ImportError:
                self.error = "the psycopg driver is not installed"
            else:
                try:
                    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=3) as conn:
                        conn.execute(f'CREATE DATABASE "{self.name}"'.encode())
                    self.url = with_database(admin_url(), self.name)
                except psycopg.Error as exc:
                    self.error = f"PostgreSQL at {admin_url()} is unreachable: {str(exc).strip()[:160]}"
        if self.url is None:
            missing("PostgreSQL", f"{self.error}; {HOW}")
        assert self.url is not None
        return self.url

    def reset(self) -> None:
        import psycopg

        assert self.url is not None
        with psycopg.connect(self.url, autocommit=True) as conn:
            present = {r[0] for r in conn.execute(b"SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            tables = [t for t in TABLES.split(", ") if t in present]
            if tables:
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE".encode())

    def drop(self) -> None:
        if self.url is None:
            return
        import psycopg

        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'.encode())
        self.url = None
