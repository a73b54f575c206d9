"""Outbox (idempotent by reply id) and webhook delivery against a real local HTTP server and Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import redis
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.outbox import Outbox, OutboxItem, OutboxSink, outbox_key
from connectors.webhook import (
    SIGNATURE_HEADER,
    OutboxRelay,
    Webhook,
    WebhookSink,
    verify_signature,
)

SECRET = b"webhook-secret"


@dataclass
class Receiver:
    """A real HTTP endpoint: fails the first ``fail_first`` requests with ``fail_status``."""

    fail_first: int = 0
    fail_status: int = 503
    attempts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    accepted: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k: v for k, v in self.headers.items()}
            with lock:
                rec.attempts.append((body, headers))
                fail = len(rec.attempts) <= rec.fail_first
                if not fail:
                    rec.accepted.append((body, headers))
            self.send_response(rec.fail_status if fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _webhook(url: str, attempts: int = 5) -> Webhook:
    return Webhook(url, SECRET, max_attempts=attempts, backoff_initial=0.01, backoff_max=0.05, timeout=5)


def test_fails_twice_then_delivered_once_with_a_valid_signature(receiver: Receiver) -> None:
    receiver.fail_first = 2
    item = OutboxItem.of("reply-1", "twitter", {"to": "bob", "text": "Sorry! DM us your order number."})
    result = _webhook(receiver.url).deliver(item)
    assert result.ok and result.attempts == 3 and result.status == 200
    assert len(receiver.attempts) == 3
    assert len(receiver.accepted) == 1
    body, headers = receiver.accepted[0]
    assert body == item.body
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify_signature(b"other-secret", body, headers[SIGNATURE_HEADER])
    assert headers["X-Pulse-Delivery"] == "reply-1"
    assert headers["X-Pulse-Channel"] == "twitter"


def test_sink_dead_letters_what_finally_fails(
    receiver: Receiver, r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    receiver.fail_first = 10**6
    items = [OutboxItem.of(f"reply-{i}", "forum", {"n": i}) for i in range(3)]
    flow = Dataflow("webhook_dlq")
    op.output("deliver", op.input("replies", flow, TestingSource(items)),
              WebhookSink(_webhook(receiver.url, attempts=3), redis_url, key_prefix))
    run_main(flow)
    assert len(receiver.attempts) == 9 and not receiver.accepted
    dlq = r.xrange(f"{key_prefix}dlq")
    assert len(dlq) == 3
    fields = dlq[0][1]
    assert set(fields) == {b"raw", b"reason", b"source", b"key", b"ts_received"}
    assert fields[b"raw"] == items[0].body
    assert fields[b"source"] == b"webhook:forum"
    assert fields[b"key"] == b"outbox:forum:reply-0"
    assert fields[b"reason"].startswith(b"gave up after 3 attempts: HTTP 503")


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 1, 400
    result = _webhook(receiver.url).deliver(OutboxItem.of("reply-x", "email", {"x": 1}))
    assert not result.ok and result.attempts == 1 and result.reason == "HTTP 400 Bad Request"


def test_unreachable_endpoint_is_retried_then_reported() -> None:
    result = _webhook("http://127.0.0.1:9/hook", attempts=2).deliver(OutboxItem.of("r", "forum", {}))
    assert not result.ok and result.attempts == 2 and "unreachable" in (result.reason or "")


def test_outbox_is_idempotent_by_reply_id(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    outbox = Outbox(r, key_prefix)
    first = outbox.append(OutboxItem.of("reply-1", "twitter", {"text": "hello"}))
    again = outbox.append(OutboxItem.of("reply-1", "twitter", {"text": "hello"}))
    assert first is not None and again is None
    # the Bytewax sink, fed the same replies twice (a replay after a restart), queues each once
    items = [OutboxItem.of(f"reply-{i}", "facebook" if i % 2 else "twitter", {"i": i}) for i in range(10)]
    flow = Dataflow("outbox")
    op.output("queue", op.input("replies", flow, TestingSource(items + items)), OutboxSink(redis_url, key_prefix))
    run_main(flow)
    assert r.xlen(outbox_key(key_prefix, "facebook")) == 5
    assert r.xlen(outbox_key(key_prefix, "twitter")) == 6  # reply-1 was queued before
    entries = r.xrange(outbox_key(key_prefix, "facebook"))
    assert [OutboxItem.from_fields(f).reply_id for _, f in entries] == [f"reply-{i}" for i in (1, 3, 5, 7, 9)]
    assert orjson.loads(OutboxItem.from_fields(entries[0][1]).body) == {"i": 1}


def test_relay_delivers_the_outbox_and_acks(receiver: Receiver, r: redis.Redis, key_prefix: str) -> None:
    receiver.fail_first = 1
    outbox = Outbox(r, key_prefix)
    outbox.append_many(OutboxItem.of(f"reply-{i}", "forum", {"i": i}) for i in range(4))
    relay = OutboxRelay(r, key_prefix, "forum", _webhook(receiver.url))
    stats = relay.run_once()
    assert (stats.delivered, stats.dead) == (4, 0)
    assert [h["X-Pulse-Delivery"] for _, h in receiver.accepted] == [f"reply-{i}" for i in range(4)]
    assert r.xpending(outbox_key(key_prefix, "forum"), "webhook")["pending"] == 0
    assert relay.run_once(block_ms=10) == type(stats)(0, 0)
