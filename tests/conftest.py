"""Fixtures that start or reach real services: a real Redis (REDIS_URL, else an embedded redis-server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.learning import flush_all
from stream.redisconn import connect, delete_prefix, ensure_redis_url

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
#: ``make test`` runs the suite in two pytest-xdist workers: each starts its own embedded server (when REDIS_URL is
#: unset), so one worker's exit never stops the server the other still uses.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# xdist workers export COLUMNS=80 / LINES=24; the CLI tests choose their own width (rich fixes a console's width
# from COLUMNS when it is created, at import), as a plain pytest run does.
if WORKER:
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server: ``REDIS_URL`` when set, else an embedded one under .pulse/test (one per
    xdist worker: .pulse/test-gw0, ...)."""
    return ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / (f"test-{WORKER}" if WORKER else "test"))


@pytest.fixture()
def key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix per test, so tests share the server without seeing each other's keys; every key
    under it is deleted afterwards (also what a ``pulse`` subprocess of the test wrote)."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    flush_all()  # the in-process flows' model hosts write what they still hold now, not into a deleted prefix later
    client = connect(redis_url)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


@pytest.fixture()
def r(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client on the real server (every key under this test's prefix is deleted afterwards by ``key_prefix``)."""
    client = connect(redis_url)
    yield client
    client.close()  # key_prefix deletes the keys


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data; tests that need it skip with a clear message without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture()
def write_jsonl(tmp_path: Path):
    """Write dicts (or raw bytes lines) to a JSONL file and return its path."""
    import orjson

    def write(rows: list, name: str = "mentions.jsonl") -> Path:
        path = tmp_path / name
        with path.open("wb") as fh:
            for row in rows:
                fh.write((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n")
        return path

    return write
