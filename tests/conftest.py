"""Shared test set-up.

aioresponses 0.7.9 builds `aiohttp.ClientResponse` without the `stream_writer` argument that aiohttp 3.14
requires, so every mocked request fails with a TypeError. This shim supplies it; on older aiohttp it does
nothing.
"""

from __future__ import annotations

import inspect
from unittest.mock import Mock

import aiohttp
import aioresponses.core as _aioresponses_core
import pytest

from bridge.clock import FakeClock

if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:

    class _CompatClientResponse(aiohttp.ClientResponse):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            kwargs.setdefault("stream_writer", Mock(output_size=0))
            super().__init__(*args, **kwargs)

    _aioresponses_core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
