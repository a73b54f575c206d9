"""Outbound and inbound edges: the outbox relay's deliveries/s and the ingest endpoint's frames/s.

Run: ``.venv/bin/python benchmarks/outbox.py [--messages N] [--frames M]`` (``REDIS_URL`` if set, else an
embedded redis-server). Prints one ``name=value`` line per figure, each beside a baseline measured in the same
process on the same machine:

- ``relay_deliveries_per_s``: messages queued with ``write_messages``, delivered by ``OutboxRelay`` (signed,
  acknowledged one by one) to a local HTTP receiver; baseline: the same signed POSTs sent straight from a
  loop (``plain_posts_per_s``), so ``relay_vs_plain_posts`` is what reading, signing and acking costs.
- ``ingest_endpoint_frames_per_s``: JSON frames through the WebSocket ingest endpoint (token, backlog check,
  acks); baseline: the same payloads appended with pipelined XADDs (``append_records_per_s``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.ingest import IngestServer  # noqa: E402
from connectors.outbox import OutboxMessage, write_messages  # noqa: E402
from connectors.redis_streams import append_records  # noqa: E402
from connectors.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, OutboxRelay, Webhook, sign  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402

SECRET = b"bench-secret"


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _messages(n: int) -> list[OutboxMessage]:
    return [OutboxMessage(reply_id=f"r-{i}", kind="reply", channel="twitter", brand="acme", in_reply_to=f"twitter:{i}",
                          case_id=f"C-twitter:{i}", customer_id="C-1", agent="ann", text="Sorry! We are on it " * 3,
                          ts="2024-05-01T10:05:00+00:00") for i in range(n)]


def bench_relay(client, n: int) -> None:  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    msgs = _messages(n)
    t = time.perf_counter()
    for m in msgs:
        body = m.to_json()
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET), DELIVERY_HEADER: m.reply_id})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
    plain = n / (time.perf_counter() - t)
    prefix = f"bench:outbox:{uuid.uuid4().hex[:8]}:"
    write_messages(client, prefix, msgs)
    relay = OutboxRelay(client, prefix, "twitter", Webhook(url, SECRET, timeout=10))
    t = time.perf_counter()
    stats = relay.drain()
    relayed = n / (time.perf_counter() - t)
    assert stats.delivered == n, stats
    server.shutdown()
    _clean(client, prefix)
    print(f"plain_posts_per_s={plain:.0f}")
    print(f"relay_deliveries_per_s={relayed:.0f}")
    print(f"relay_vs_plain_posts={relayed / plain:.2f}")


def bench_ingest(client, redis_url: str, n: int) -> None:  # type: ignore[no-untyped-def]
    from websockets.sync.client import connect as ws_connect

    frames = [orjson.dumps({"id": f"forum:{i}", "channel": "forum", "brand": "acme", "author": f"u{i % 97}",
                            "text": "the app crashes on start " * 3, "ts": 1_714_557_600_000 + i}) for i in range(n)]
    prefix = f"bench:ingest:{uuid.uuid4().hex[:8]}:"
    t = time.perf_counter()
    append_records(client, prefix, frames, partitions=4)
    appended = n / (time.perf_counter() - t)
    _clean(client, prefix)
    server = IngestServer(token="bench", redis_url=redis_url, prefix=prefix, partitions=4, port=0).start()
    try:
        with ws_connect(server.url, additional_headers={"Authorization": "Bearer bench"}, proxy=None) as ws:
            t = time.perf_counter()
            for f in frames:
                ws.send(f)
            for _ in frames:
                assert b'"ack"' in ws.recv(timeout=60).encode()
            endpoint = n / (time.perf_counter() - t)
    finally:
        server.stop()
    _clean(client, prefix)
    print(f"append_records_per_s={appended:.0f}")
    print(f"ingest_endpoint_frames_per_s={endpoint:.0f}")
    print(f"ingest_endpoint_vs_append_records={endpoint / appended:.2f}")


def _clean(client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="outbox messages the relay delivers")
    parser.add_argument("--frames", type=int, default=50_000, help="frames sent to the ingest endpoint")
    args = parser.parse_args()
    redis_url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    client = connect(redis_url)
    bench_relay(client, args.messages)
    bench_ingest(client, redis_url, args.frames)


if __name__ == "__main__":
    main()
