"""Checks that need a real component (PostgreSQL, Chromium) skip on a newcomer's machine that lacks it.

`.ci/run` sets BRIDGE_REQUIRE_REAL=1: there a missing component fails the test instead, so CI can never
pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os

import pytest


def missing(component: str, how: str) -> None:
    """Skip (or, under BRIDGE_REQUIRE_REAL=1, fail) a test whose real component is not available."""
    reason = f"needs {component}: {how}"
    if os.environ.get("BRIDGE_REQUIRE_REAL") == "1":
        pytest.fail(f"{reason} (BRIDGE_REQUIRE_REAL=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)
