"""Passwords never reach a message: the connection error and the CLI's one-line error mask them."""

from __future__ import annotations

import pytest
from pulse_testkit import pulse

from stream.redisconn import RedisUnavailable, connect, mask_secrets


@pytest.mark.parametrize("url, masked", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://user:p%40ss@host:6380", "rediss://user:***@host:6380"),
    ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
    ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_mask_secrets(url: str, masked: str) -> None:
    assert mask_secrets(url) == masked
    assert mask_secrets(f"error at {url}: refused") == f"error at {masked}: refused"


def test_connection_error_is_masked() -> None:
    with pytest.raises(RedisUnavailable) as err:
        connect("redis://:hunter2-secret@127.0.0.1:1/0")
    assert "hunter2" not in str(err.value) and "redis://:***@127.0.0.1:1/0" in str(err.value)


def test_cli_error_line_is_masked() -> None:
    proc = pulse("metrics", "--json", redis_url="redis://:hunter2-secret@127.0.0.1:1/0", prefix="x:", check=False,
                 timeout=60)
    assert proc.returncode == 2
    assert "hunter2" not in proc.stderr + proc.stdout and "***" in proc.stderr
