"""The outbox contract on a real Redis: one entry per reply id, exactly ARCHITECTURE's fields."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import polars as pl
import pytest
import redis
from pulse_testkit import PULSE, free_ports, pulse

from connectors.outbox import (
    ENCODING,
    OUTBOX_FIELDS,
    OutboxMessage,
    outbox_key,
    read_messages,
    write_message,
    write_messages,
)
from connectors.webhook import sign, verify_signature
from crm import CrmProcessor, CrmSettings, RuleSet, import_customers, make_store
from crm.sla import iso_ms
from stream.service_desk import answer_case

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
MIN = 60_000


def test_a_message_is_queued_once_with_the_contract_fields(r: redis.Redis, key_prefix: str) -> None:
    m = OutboxMessage(reply_id="r-1", kind="reply", channel="twitter", brand="acme", in_reply_to="twitter:1",
                      case_id="C-twitter:1", customer_id="C-1001", agent="ann", text="on it!",
                      ts="2024-01-01T10:05:00+00:00")
    assert write_message(r, key_prefix, m) is True
    assert write_message(r, key_prefix, m) is False  # a retried write is a no-op
    entries = r.xrange(outbox_key(key_prefix, "twitter"))
    assert len(entries) == 1
    assert [k.decode() for k in entries[0][1]] == list(OUTBOX_FIELDS)
    assert read_messages(r, key_prefix, "twitter") == [m]


def test_batch_writes_report_which_were_new(r: redis.Redis, key_prefix: str) -> None:
    a = OutboxMessage(reply_id="n-1", kind="notice", channel="forum", text="We know about the outage.")
    b = OutboxMessage(reply_id="w-1", kind="webhook", channel="webhook", url="https://example.com/hook")
    assert write_message(r, key_prefix, a)
    ids = write_messages(r, key_prefix, [a, b])
    assert ids[0] is None and ids[1] is not None
    assert [m.reply_id for m in read_messages(r, key_prefix, "webhook")] == ["w-1"]


# -- end to end: CRM -> outbox -> `pulse outbox relay` -> a receiver checking the signature -----------------------
SECRET = "s3cret"  # the README's receiver uses this secret


@dataclass
class ReadmeReceiver:
    """The receiver printed in the README, run as is (only its port changed) in a child process."""

    url: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def deliveries(self, n: int, timeout: float = 30) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return [(line.split(" ", 1)[0], orjson.loads(line.split(" ", 1)[1])) for line in self.lines]


def _readme_receiver_code(port: int) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after = readme.split("A receiver, in ten lines", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    assert '"127.0.0.1", 8080' in code
    return code.replace('"127.0.0.1", 8080', f'"127.0.0.1", {port}')


@pytest.fixture()
def readme_receiver() -> Iterator[ReadmeReceiver]:
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-c", _readme_receiver_code(port)], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    rec = ReadmeReceiver(f"http://127.0.0.1:{port}/", proc)

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            rec.lines.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield rec
    proc.kill()
    proc.wait()


def _relay(*args: str, redis_url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    return pulse("outbox", "relay", *args, "--secret", SECRET, "--once", "--backoff", "0.05",
                 redis_url=redis_url, prefix=prefix)


def _post(url: str, body: bytes, signature: str) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"X-Pulse-Signature": signature})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_an_agent_reply_reaches_the_receiver_signed_whole_and_once(
    readme_receiver: ReadmeReceiver, r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    store = make_store(r, key_prefix)
    settings = CrmSettings(prefix=key_prefix, auto_tick_ms=0)
    proc = CrmProcessor(store, settings=settings, outbox=ENCODING)
    import_customers(store, pl.DataFrame({"customer_id": ["C-1001"], "name": ["Bob"], "twitter": ["bob"]}), now_ms=T0)
    for i, author in ((1, "bob"), (2, "eve")):
        proc.process({"id": f"twitter:{i}", "channel": "twitter", "brand": "acme", "author": author,
                      "text": "where is my parcel?", "ts": iso_ms(T0 + i * 1000), "intent": "query"})
    # the two writers agents use: the CLI, and the service function behind the Service desk page
    sent = pulse("crm", "reply", "C-twitter:1", "--text", "Sorry Bob, it ships today", "--agent", "ann",
                 redis_url=redis_url, prefix=key_prefix)
    said = " ".join(sent.stdout.split())
    assert said.startswith("reply r:C-twitter:1:") and f"sent to {key_prefix}outbox:twitter in reply to twitter:1" in said
    dm = answer_case(store, settings, "C-twitter:2", text="Please DM us your order number", private=True,
                     agent="ann", now_ms=T0 + 5 * MIN)
    relayed = _relay("--channel", "twitter", "--url", readme_receiver.url, redis_url=redis_url, prefix=key_prefix)
    assert "delivered 2, dead-lettered 0" in relayed.stderr
    (id1, body1), (id2, body2) = readme_receiver.deliveries(2)
    # the receiver verified each signature (it answers 401 otherwise) and got the whole message
    assert body1["reply_id"] == id1 and id1.startswith("r:C-twitter:1:")
    assert {k: body1[k] for k in ("kind", "channel", "brand", "in_reply_to", "case_id", "customer_id", "agent",
                                  "text")} == {
        "kind": "reply", "channel": "twitter", "brand": "acme", "in_reply_to": "twitter:1", "case_id": "C-twitter:1",
        "customer_id": "C-1001", "agent": "ann", "text": "Sorry Bob, it ships today"}
    assert (id2, body2) == (dm["reply"]["reply_id"], dm["reply"])
    assert body2["kind"] == "dm_request" and body2["customer_id"] == "p:twitter:eve"
    # delivered once: a second relay run finds nothing left, a retried reply is not queued again
    pulse("crm", "reply", "C-twitter:1", "--text", "Sorry Bob, it ships today", "--agent", "ann",
          redis_url=redis_url, prefix=key_prefix)
    again = _relay("--channel", "twitter", "--url", readme_receiver.url, redis_url=redis_url, prefix=key_prefix)
    assert "delivered 0, dead-lettered 0" in again.stderr and len(readme_receiver.lines) == 2
    # what the receiver refuses: a forged signature, an altered body, a replay of an old request
    body = orjson.dumps(body1)
    assert _post(readme_receiver.url, body, sign(body, "not-the-secret")) == 401
    assert _post(readme_receiver.url, body + b" ", sign(body, SECRET)) == 401
    assert _post(readme_receiver.url, body, sign(body, SECRET, timestamp=int(time.time()) - 3600)) == 401
    assert _post(readme_receiver.url, body, sign(body, SECRET)) == 204
    assert r.xlen(f"{key_prefix}dlq") == 0


def test_a_rule_webhook_goes_from_the_crm_to_its_own_url(
    readme_receiver: ReadmeReceiver, r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    rules = RuleSet.from_toml(f"""
[[rule]]
name = "outage"
[rule.when]
mention.text = {{ matches = "\\\\bdown\\\\b" }}
[[rule.then]]
webhook = {{ url = "{readme_receiver.url}incidents", event = "outage_report" }}
""")
    proc = CrmProcessor(make_store(r, key_prefix), rules, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0),
                        outbox=ENCODING)
    proc.process({"id": "forum:7", "channel": "forum", "brand": "acme", "author": "zoe", "text": "the app is down",
                  "ts": iso_ms(T0), "intent": "query"})
    relayed = _relay("--channel", "webhook", redis_url=redis_url, prefix=key_prefix)  # no --url: each its own
    assert "delivered 1, dead-lettered 0" in relayed.stderr
    [(delivery, body)] = readme_receiver.deliveries(1)
    assert delivery == body["reply_id"] == "hook:outage:forum:7"
    assert body["kind"] == "webhook" and body["url"] == readme_receiver.url + "incidents"
    assert body["case_id"] == "C-forum:7" and body["customer_id"] == "p:forum:zoe"
    event = orjson.loads(body["text"])
    assert event["event"] == "outage_report" and event["mention"]["text"] == "the app is down"


def test_a_relay_killed_between_delivery_and_ack_loses_nothing(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    n = 6
    write_messages(r, key_prefix, [OutboxMessage(reply_id=f"reply-{i}", kind="reply", channel="forum", brand="acme",
                                                 in_reply_to=f"forum:{i}", text=f"answer {i}") for i in range(n)])
    seen: list[str] = []
    relay: dict[str, subprocess.Popen[bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert verify_signature(body, self.headers["X-Pulse-Signature"], SECRET)
            delivery = self.headers["X-Pulse-Delivery"]
            seen.append(delivery)
            if delivery == "reply-2" and seen.count("reply-2") == 1:
                # the receiver has the message; the relay dies before it can acknowledge it
                os.kill(relay["proc"].pid, signal.SIGKILL)
                relay["proc"].wait()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_WEBHOOK_SECRET=SECRET)
    try:
        relay["proc"] = subprocess.Popen([*PULSE, "outbox", "relay", "--channel", "forum", "--url", url], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert relay["proc"].wait(timeout=60) == -signal.SIGKILL
        key = f"{key_prefix}outbox:forum"
        assert r.xpending(key, "relay")["pending"] >= 1  # reply-2 was received but never acknowledged
        done = pulse("outbox", "relay", "--channel", "forum", "--url", url, "--once", redis_url=redis_url,
                     prefix=key_prefix, extra_env={"PULSE_WEBHOOK_SECRET": SECRET})
        assert "dead-lettered 0" in done.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert seen[:3] == ["reply-0", "reply-1", "reply-2"]
    assert seen.count("reply-2") == 2  # re-sent after the restart, with the same delivery id
    assert sorted(set(seen)) == [f"reply-{i}" for i in range(n)]  # nothing lost
    assert len(seen) == n + 1  # and nothing else repeated
    assert r.xpending(key, "relay")["pending"] == 0 and r.xlen(f"{key_prefix}dlq") == 0


def test_relay_cli_errors_are_one_line(redis_url: str, key_prefix: str) -> None:
    import typer
    from typer.testing import CliRunner

    from stream.cli.connectors import register

    app = typer.Typer()
    register(app)
    env = {"REDIS_URL": redis_url, "PULSE_PREFIX": key_prefix, "PULSE_WEBHOOK_SECRET": ""}
    for args, message in (
        (["--channel", "twitter", "--url", "http://x/"], "a webhook secret is required"),
        (["--channel", "twitter", "--secret", "k"], "--url is required for --channel twitter"),
        (["--channel", "twitter", "--secret", "k", "--url", "ftp://x/"], "webhook URL must be http:// or https://"),
    ):
        done = CliRunner().invoke(app, ["outbox", "relay", *args], env=env)
        assert done.exit_code == 2, done.output
        err = done.stderr.strip()
        assert err.startswith("pulse: error: ") and message in err and len(err.splitlines()) == 1


def test_the_crm_names_the_same_keys_and_lifetimes_as_the_contract() -> None:
    from connectors.outbox import OUTBOX_MAXLEN, SENT_MARK_SECONDS, WEBHOOK_CHANNEL, OutboxEncoding, sent_key
    from crm import OutboxEncoder
    from crm.keys import KEEP_LINKS_SECONDS, CrmKeys
    from crm.outbox import WEBHOOK_CHANNEL as CRM_WEBHOOK_CHANNEL

    keys = CrmKeys("p:")
    assert keys.outbox("forum") == outbox_key("p:", "forum") and keys.outbox_sent("r-1") == sent_key("p:", "r-1")
    assert keys.webhooks == outbox_key("p:", WEBHOOK_CHANNEL) and CRM_WEBHOOK_CHANNEL == WEBHOOK_CHANNEL
    assert KEEP_LINKS_SECONDS == SENT_MARK_SECONDS  # the CRM's Lua sets the same once-per-reply-id mark
    assert isinstance(ENCODING, OutboxEncoder) and isinstance(OutboxEncoding(), OutboxEncoder)
    assert ENCODING.maxlen == OUTBOX_MAXLEN


def test_crm_writes_are_capped_like_the_contract(r: redis.Redis, key_prefix: str) -> None:
    class Tiny:
        maxlen = 10

        def encode(self, message):  # type: ignore[no-untyped-def]
            return ENCODING.encode(message)

    store = make_store(r, key_prefix)
    proc = CrmProcessor(store, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0), outbox=Tiny())
    for i in range(300):
        proc.process({"id": f"forum:{i}", "channel": "forum", "brand": "acme", "author": f"u{i}", "text": "help?",
                      "ts": iso_ms(T0 + i * 1000), "intent": "query"})
        proc.reply(f"C-forum:{i}", text="on it", now_ms=T0 + i * 1000 + 500)
    assert r.xlen(outbox_key(key_prefix, "forum")) < 300  # MAXLEN ~ trims whole nodes: about the cap, never all
    assert read_messages(r, key_prefix, "forum", count=1)[0].in_reply_to == "forum:299"


def test_the_crm_appends_to_streams_with_the_same_id_rule_as_the_connectors() -> None:
    """crm/ and connectors/ do not import each other: the CRM keeps its own copy of the Lua that gives a stream entry
    the id after the stream's last one; the two must stay the same."""
    from connectors.redis_streams import XADD_NEXT_LUA
    from crm import _lua

    assert _lua._XADD_NEXT == XADD_NEXT_LUA
    assert "'XADD'" not in _lua.COMMIT.replace(XADD_NEXT_LUA, "")  # every append of a commit goes through it
