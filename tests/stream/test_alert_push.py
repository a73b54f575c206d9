"""Alert push over a real WebSocket, fed by a real Redis stream and pub/sub."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis
from pulse_testkit import load_benchmark
from websockets.sync.client import connect as ws_connect

from stream.alert_push import AlertPushServer
from stream.keys import Keys
from stream.schema import Alert
from stream.sinks import RedisWriter

faults = load_benchmark("faults")


def _alert(n: int) -> Alert:
    return Alert(id=f"spike:acme:twitter:{n}", kind="spike", brand="acme", channel="twitter", topic=None,
                 window_start="2024-01-01T00:00:00+00:00", observed=40 + n, expected=5.0, score=0.99,
                 severity="high", sample_ids=("twitter:1",), top_terms=("outage",))


def test_backlog_then_live_alerts_reach_a_client(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    writer = RedisWriter(r, keys)
    writer.write([("alert", _alert(1))])
    writer.write([("alert", _alert(1))])  # the same alert again is not appended twice
    server = AlertPushServer(redis_url, keys, port=0).start()
    try:
        with ws_connect(server.url, open_timeout=5) as ws:
            first = orjson.loads(ws.recv(timeout=5))
            assert first["id"] == "spike:acme:twitter:1" and first["top_terms"] == ["outage"]
            # written once, right after the backlog: the client joined the relay level with it, nothing in between
            writer.write([("alert", _alert(2))])
            got = orjson.loads(ws.recv(timeout=10))
            assert got["id"] == "spike:acme:twitter:2" and got["observed"] == 42
    finally:
        server.stop()
    assert r.xlen(keys.alerts) == 2


def test_alerts_written_as_redis_returns_reach_clients_once(tmp_path: Path, key_prefix: str) -> None:
    """Redis restarts: the flow's sink writes what it held back the moment Redis answers, before the relay's backoff
    has brought it back; those alerts still reach connected clients (the relay resumes the stream after the last
    entry it sent), and a state written twice (a replay) is sent once."""
    server = faults.PrivateRedis(tmp_path / "redis")
    server.start()
    keys = Keys(key_prefix)
    push = None
    try:
        push = AlertPushServer(server.url, keys, port=0).start()
        with ws_connect(push.url, open_timeout=5) as ws:
            client = redis.Redis.from_url(server.url)
            RedisWriter(client, keys).write([("alert", _alert(1))])
            assert orjson.loads(ws.recv(timeout=10))["id"] == "spike:acme:twitter:1"
            client.close()
            server.stop()
            time.sleep(0.5)  # the relay has lost Redis and is backing off
            server.start()
            client = redis.Redis.from_url(server.url)
            writer = RedisWriter(client, keys)
            writer.write([("alert", _alert(2)), ("alert", _alert(3))])
            writer.write([("alert", _alert(3))])  # written again: appended once, sent once
            got = [orjson.loads(ws.recv(timeout=15))["id"] for _ in range(2)]
            assert got == ["spike:acme:twitter:2", "spike:acme:twitter:3"]
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.5)
            client.close()
    finally:
        if push is not None:
            push.stop()
        server.stop()
