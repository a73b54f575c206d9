"""Fixtures of the dashboard tests: one demo-like dataset per session, read by many page tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_seed import clean_prefix, seeded_demo_like

from stream.redisconn import connect


@pytest.fixture(scope="session")
def demo_like(redis_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A prefix with the demo-like dataset (read only: tests that act use their own copy, see ``demo_copy``)."""
    with seeded_demo_like(redis_url) as data:
        yield data


@pytest.fixture()
def demo_copy(redis_url: str, demo_like: tuple[str, list[dict[str, Any]]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A private copy of the demo-like dataset under a new prefix, for tests that act on it."""
    source, rows = demo_like
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    client = connect(redis_url)
    for key in client.scan_iter(match=source + "*", count=1000):
        client.copy(key, prefix + key.decode()[len(source):])
    yield prefix, rows
    clean_prefix(client, prefix)
    client.close()
