"""Fixtures that start or reach real services: a real Redis (REDIS_URL, else an embedded redis-server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.redisconn import connect, ensure_redis_url

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server: ``REDIS_URL`` when set, else an embedded one under .pulse/test."""
    return ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "test")


@pytest.fixture()
def key_prefix() -> str:
    """A unique key prefix per test, so tests share the server without seeing each other's keys."""
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture()
def r(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client on the real server; every key under this test's prefix is deleted afterwards."""
    client = connect(redis_url)
    yield client
    batch = []
    for key in client.scan_iter(match=key_prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)
    client.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data; tests that need it skip with a clear message without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def make_mentions(n: int, *, brands: tuple[str, ...] = ("acme", "globex"), channels: tuple[str, ...] = ("twitter", "forum"),
                  start_ms: int = 1_704_103_200_000, step_ms: int = 7_000, reply_every: int = 3) -> list[dict]:
    """A deterministic conversation log: customer mentions (every other one a query) and brand replies.

    Every ``reply_every``-th customer mention gets a reply from its brand ``(i % 50 + 1)`` minutes later.
    """
    out: list[dict] = []
    for i in range(n):
        brand, channel = brands[i % len(brands)], channels[(i // len(brands)) % len(channels)]
        ts = start_ms + i * step_ms
        out.append({"id": f"{channel}:{i}", "channel": channel, "brand": brand, "author": f"user{i % 97}",
                    "text": "how do I reset my router?" if i % 2 else "love the new app, great job",
                    "ts": ts})
        if i % reply_every == 0:
            out.append({"id": f"{channel}:r{i}", "channel": channel, "brand": brand, "author": f"{brand}_care",
                        "text": "we're on it, please DM us", "ts": ts + (i % 50 + 1) * 60_000, "from_brand": True,
                        "in_reply_to": f"{channel}:{i}"})
    out.sort(key=lambda d: d["ts"])
    return out


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
