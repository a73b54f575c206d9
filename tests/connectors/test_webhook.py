"""Signed delivery of outbox messages: signatures, retries, dead letters, the relay, against a real HTTP server
and a real Redis."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.outbox import OutboxMessage, outbox_key, write_messages
from connectors.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    OutboxRelay,
    Webhook,
    sign,
    verify_signature,
)

SECRET = b"webhook-secret"
T = 1_700_000_000


@dataclass
class Receiver:
    """A real HTTP endpoint: answers ``fail_status`` to the first ``fail_first`` requests, then ``ok_status``."""

    fail_first: int = 0
    fail_status: int = 503
    ok_status: int = 200
    extra_headers: dict[str, str] = field(default_factory=dict)
    attempts: list[tuple[bytes, dict[str, str], str]] = field(default_factory=list)
    accepted: list[tuple[bytes, dict[str, str], str]] = field(default_factory=list)
    url: str = ""
    base: str = ""


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = dict(self.headers.items())
            with lock:
                rec.attempts.append((body, headers, self.path))
                fail = len(rec.attempts) <= rec.fail_first
                if not fail:
                    rec.accepted.append((body, headers, self.path))
            self.send_response(rec.fail_status if fail else rec.ok_status)
            for k, v in (rec.extra_headers if fail else {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.base = f"http://127.0.0.1:{server.server_address[1]}"
    rec.url = rec.base + "/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _webhook(url: str | None, attempts: int = 5, **kw: object) -> tuple[Webhook, list[float]]:
    waits: list[float] = []
    hook = Webhook(url, SECRET, max_attempts=attempts, backoff_initial=0.25, backoff_max=1.0, timeout=5, jitter=0,
                   sleep=waits.append, **kw)  # type: ignore[arg-type]
    return hook, waits


def _reply(i: int | str, channel: str = "twitter", **kw: str) -> OutboxMessage:
    d = {"reply_id": f"reply-{i}", "kind": "reply", "channel": channel, "brand": "acme", "in_reply_to": f"{channel}:{i}",
         "case_id": f"C-{channel}:{i}", "customer_id": "C-1001", "agent": "ann", "text": f"Sorry! ({i})",
         "ts": "2024-05-01T10:05:00+00:00", **kw}
    return OutboxMessage.from_dict(d)


# -- signatures ---------------------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"text":"hi"}'
    expected = hmac.new(SECRET, f"{T}.".encode() + body, hashlib.sha256).hexdigest()  # computed independently
    assert sign(body, SECRET, timestamp=T) == f"t={T},v1={expected}"
    assert verify_signature(body, f"t={T},v1={expected}", SECRET, now=T + 299)


def test_verify_rejects_replays_forgeries_and_garbage() -> None:
    body = b'{"reply_id":"r-1"}'
    header = sign(body, SECRET, timestamp=T)
    assert verify_signature(body, header, SECRET, now=T)
    assert verify_signature(body.decode(), header, SECRET.decode(), now=T)  # str or bytes alike
    assert not verify_signature(body, header, SECRET, now=T + 301)  # replayed after the tolerance
    assert not verify_signature(body, header, SECRET, now=T - 301)  # stamped in the future
    assert verify_signature(body, header, SECRET, tolerance_s=3600, now=T + 3000)
    assert not verify_signature(body + b" ", header, SECRET, now=T)  # tampered body
    assert not verify_signature(body, header, b"other", now=T)
    forged_t = header.replace(f"t={T}", f"t={T + 1000}")  # a fresh timestamp on an old signature
    assert not verify_signature(body, forged_t, SECRET, now=T + 1000)
    for bad in (None, "", "t=,v1=", f"t={T}", "v1=abc", f"t=soon,v1={header[-64:]}", "garbage", ",,,",
                f"t={T},v1=", f"v0={header[-64:]},t={T}"):
        assert verify_signature(body, bad, SECRET, now=T) is False, bad


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    body = b"{}"
    header = sign(body, [b"new", b"old"], timestamp=T)
    assert header.count("v1=") == 2
    assert verify_signature(body, header, b"new", now=T) and verify_signature(body, header, b"old", now=T)
    assert not verify_signature(body, header, b"neither", now=T)


@settings(max_examples=200, deadline=None, database=None)
@given(body=st.binary(max_size=300), secret=st.binary(min_size=1, max_size=40), t=st.integers(0, 2**40),
       flip=st.integers(0, 10**6))
def test_signatures_hold_for_any_body_and_secret(body: bytes, secret: bytes, t: int, flip: int) -> None:
    header = sign(body, secret, timestamp=t)
    assert verify_signature(body, header, secret, now=t)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        assert not verify_signature(tampered, header, secret, now=t)
    assert not verify_signature(body, header, secret + b"x", now=t)


# -- one delivery -------------------------------------------------------------------------------------------
def test_fails_twice_then_delivered_once_signed_with_a_stable_delivery_id(receiver: Receiver) -> None:
    receiver.fail_first = 2
    hook, waits = _webhook(receiver.url)
    msg = _reply(1)
    result = hook.deliver(msg)
    assert result.ok and result.attempts == 3 and result.status == 200
    assert waits == [0.25, 0.5]  # exponential backoff, deterministic without jitter
    assert len(receiver.attempts) == 3 and len(receiver.accepted) == 1
    assert {h[DELIVERY_HEADER] for _, h, _ in receiver.attempts} == {"reply-1"}
    body, headers, _ = receiver.accepted[0]
    assert verify_signature(body, headers[SIGNATURE_HEADER], SECRET)
    assert not verify_signature(body, headers[SIGNATURE_HEADER], b"other-secret")
    assert headers["X-Pulse-Channel"] == "twitter" and headers["X-Pulse-Kind"] == "reply"
    assert headers["Content-Type"] == "application/json"
    # the body carries what the channel's poster needs: text, channel, case, customer, reply id
    assert orjson.loads(body) == msg.to_dict()
    assert orjson.loads(body)["text"] == "Sorry! (1)" and orjson.loads(body)["case_id"] == "C-twitter:1"


def test_backoff_is_capped_and_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 10**6, 503
    hook, waits = _webhook(receiver.url, attempts=5)
    assert not hook.deliver(_reply(1)).ok
    assert waits == [0.25, 0.5, 1.0, 1.0]  # capped at backoff_max
    receiver.attempts.clear()
    receiver.fail_first, receiver.fail_status, receiver.extra_headers = 1, 429, {"Retry-After": "1"}
    hook, waits = _webhook(receiver.url)
    assert hook.deliver(_reply(2)).ok and waits == [1.0]


def test_jitter_spreads_waits_within_its_band() -> None:
    values = iter([0.0, 1.0, 0.5])
    hook = Webhook("http://127.0.0.1:9/", SECRET, backoff_initial=1.0, backoff_max=60, jitter=0.2,
                   rng=lambda: next(values))
    assert [round(hook.backoff(n), 6) for n in (1, 2, 3)] == [0.8, 2.4, 4.0]


def test_client_errors_and_redirects_are_not_retried(receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 1, 400
    hook, waits = _webhook(receiver.url)
    result = hook.deliver(_reply("x"))
    assert not result.ok and result.attempts == 1 and result.reason == "HTTP 400 Bad Request" and waits == []
    receiver.attempts.clear()
    receiver.fail_first, receiver.fail_status, receiver.extra_headers = 1, 302, {"Location": receiver.base + "/x"}
    result = hook.deliver(_reply("y"))
    assert not result.ok and result.status == 302 and len(receiver.attempts) == 1  # never re-sent elsewhere


def test_unreachable_endpoint_is_retried_then_reported() -> None:
    hook, waits = _webhook("http://127.0.0.1:9/hook", attempts=2)
    result = hook.deliver(_reply("r"))
    assert not result.ok and result.attempts == 2 and "unreachable" in (result.reason or "") and waits == [0.25]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        Webhook("ftp://x", SECRET)
    with pytest.raises(ValueError, match="secret"):
        Webhook("http://x", b"")
    with pytest.raises(ValueError, match="jitter"):
        Webhook("http://x", SECRET, jitter=1.5)


# -- the relay ---------------------------------------------------------------------------------------------------
def _dlq(r: redis.Redis, prefix: str) -> list[dict[bytes, bytes]]:
    return [f for _, f in r.xrange(f"{prefix}dlq")]


def test_relay_delivers_in_order_acks_and_dead_letters_final_failures(
    receiver: Receiver, r: redis.Redis, key_prefix: str
) -> None:
    write_messages(r, key_prefix, [_reply(i, "forum") for i in range(4)])
    hook, _ = _webhook(receiver.url, attempts=3)
    relay = OutboxRelay(r, key_prefix, "forum", hook)
    stats = relay.drain()
    assert (stats.delivered, stats.dead) == (4, 0)
    assert [h[DELIVERY_HEADER] for _, h, _ in receiver.accepted] == [f"reply-{i}" for i in range(4)]
    assert r.xpending(outbox_key(key_prefix, "forum"), "relay")["pending"] == 0
    assert relay.run_once(block_ms=10).handled == 0
    # a receiver that keeps failing: the message goes to the dead-letter stream with its reason, acked once
    receiver.fail_first = 10**6
    write_messages(r, key_prefix, [_reply(9, "forum")])
    assert relay.drain().dead == 1
    [dead] = _dlq(r, key_prefix)
    assert set(dead) == {b"raw", b"reason", b"source", b"key", b"ts_received"}
    assert orjson.loads(dead[b"raw"])["reply_id"] == "reply-9"
    assert dead[b"reason"].startswith(b"gave up after 3 attempts: HTTP 503")
    assert dead[b"source"] == b"relay:forum" and dead[b"key"] == b"outbox:forum:reply-9"
    assert r.xpending(outbox_key(key_prefix, "forum"), "relay")["pending"] == 0


def test_rule_webhooks_go_to_their_own_urls(receiver: Receiver, r: redis.Redis, key_prefix: str) -> None:
    hooks = [OutboxMessage(reply_id=f"hook:r:{i}", kind="webhook", channel="webhook", url=f"{receiver.base}/rule/{i}",
                           text=orjson.dumps({"event": "outage_report", "n": i}).decode()) for i in range(3)]
    write_messages(r, key_prefix, hooks)
    hook, _ = _webhook(None)
    stats = OutboxRelay(r, key_prefix, "webhook", hook).drain()
    assert stats.delivered == 3
    assert [path for _, _, path in receiver.accepted] == ["/rule/0", "/rule/1", "/rule/2"]
    for body, headers, _ in receiver.accepted:
        assert verify_signature(body, headers[SIGNATURE_HEADER], SECRET)
        assert headers["X-Pulse-Kind"] == "webhook"
        assert orjson.loads(orjson.loads(body)["text"])["event"] == "outage_report"


def test_what_cannot_be_delivered_is_dead_lettered_not_lost(receiver: Receiver, r: redis.Redis, key_prefix: str) -> None:
    key = outbox_key(key_prefix, "forum")
    r.xadd(key, {"id": "legacy-1", "data": "{}"})  # not an outbox message
    write_messages(r, key_prefix, [_reply(1, "forum")])
    hook, _ = _webhook(None)  # no URL for a reply
    stats = OutboxRelay(r, key_prefix, "forum", hook).drain()
    assert (stats.delivered, stats.dead) == (0, 2)
    reasons = sorted(f[b"reason"].decode() for f in _dlq(r, key_prefix))
    assert reasons[0].startswith("no URL to deliver to") and reasons[1].startswith("not an outbox message")
    assert r.xpending(key, "relay")["pending"] == 0 and not receiver.attempts


def test_a_relay_that_died_with_work_in_flight_is_taken_over(receiver: Receiver, r: redis.Redis, key_prefix: str) -> None:
    write_messages(r, key_prefix, [_reply(i, "forum") for i in range(5)])
    hook, _ = _webhook(receiver.url)

    class CrashAfterDelivery(Webhook):
        def deliver(self, message: OutboxMessage):  # type: ignore[no-untyped-def]
            result = hook.deliver(message)
            if message.reply_id == "reply-2":
                raise SystemExit("killed between the receiver's 2xx and the ack")
            return result

    crashing = CrashAfterDelivery(receiver.url, SECRET)
    with pytest.raises(SystemExit):
        OutboxRelay(r, key_prefix, "forum", crashing, consumer="host-a").drain()
    assert r.xpending(outbox_key(key_prefix, "forum"), "relay")["pending"] == 3  # reply-2 .. reply-4
    # another host's relay takes over what host-a left pending
    stats = OutboxRelay(r, key_prefix, "forum", hook, consumer="host-b", claim_idle_ms=0).drain()
    assert stats.delivered == 3
    seen = [h[DELIVERY_HEADER] for _, h, _ in receiver.accepted]
    assert seen == ["reply-0", "reply-1", "reply-2", "reply-2", "reply-3", "reply-4"]  # reply-2 twice, same id
    assert sorted(set(seen)) == [f"reply-{i}" for i in range(5)]
    assert r.xpending(outbox_key(key_prefix, "forum"), "relay")["pending"] == 0
