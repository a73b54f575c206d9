"""Alert push over a real WebSocket, fed by a real Redis stream and pub/sub."""

from __future__ import annotations

import time

import orjson
import redis
from websockets.sync.client import connect as ws_connect

from stream.alert_push import AlertPushServer
from stream.keys import Keys
from stream.schema import Alert
from stream.sinks import RedisWriter


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
            deadline = time.monotonic() + 5
            got = None
            while got is None and time.monotonic() < deadline:
                writer.write([("alert", _alert(2))])  # publish until the relay has subscribed
                try:
                    got = orjson.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
            assert got is not None and got["id"] == "spike:acme:twitter:2" and got["observed"] == 42
    finally:
        server.stop()
    assert r.xlen(keys.alerts) == 2
