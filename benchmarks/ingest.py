"""Ingest throughput: records/s through each source alone into a drop sink, and the full flow fed by each.

Run: ``.venv/bin/python benchmarks/ingest.py [--records N] [--flow-records M]``
(``REDIS_URL`` if set, else an embedded redis-server). Prints one ``name=value`` line per figure;
every source is compared with a Bytewax ``TestingSource`` of the same records measured in the same
process (``*_vs_testing_source``). The WebSocket firehose server runs in a child process (as a
vendor's would), so it does not share the dataflow's interpreter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.files import FileSource  # noqa: E402
from connectors.records import RawRecord  # noqa: E402
from connectors.redis_streams import RedisStreamSource, append_records, stream_key  # noqa: E402
from connectors.websocket import WebSocketSource  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402

EPOCH = timedelta(seconds=1)


class _Clock:
    """Counts what reached the sink and when the last item arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0


class _DropPartition(StatelessSinkPartition[object]):
    def __init__(self, clock: _Clock) -> None:
        self._clock = clock

    def write_batch(self, items: list[object]) -> None:
        self._clock.count += len(items)
        self._clock.last = time.perf_counter()


class DropSink(DynamicSink[object]):
    """Discards everything; only counts."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DropPartition:
        return _DropPartition(self.clock)


def _mention(i: int) -> bytes:
    return orjson.dumps({
        "id": f"twitter:{i}", "channel": "twitter", "brand": "acme", "author": f"user{i % 5000}",
        "text": f"@acme my order #{i} still has not arrived, third time I ask. any update??",
        "ts": f"2024-05-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "in_reply_to": None, "from_brand": False,
    })


def measure(source: Source[RawRecord], expected: int) -> tuple[float, float]:
    """(records/s until the last record reached the sink, wall seconds of the whole run)."""
    clock = _Clock()
    flow = Dataflow("ingest_bench")
    op.output("drop", op.input("read", flow, source), DropSink(clock))
    start = time.perf_counter()
    run_main(flow, epoch_interval=EPOCH)
    wall = time.perf_counter() - start
    if clock.count != expected:
        raise SystemExit(f"expected {expected} records, the sink saw {clock.count}")
    return expected / (clock.last - start), wall


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_firehose(path: Path, n: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from connectors.records import RawRecord\n"
        "from connectors.websocket import FirehoseServer\n"
        f"lines = open({str(path)!r}, 'rb').read().splitlines()[:{n}]\n"
        "recs = [(RawRecord('file', i, line, 'jsonl'), None) for i, line in enumerate(lines)]\n"
        f"server = FirehoseServer(lambda: recs, port={port})\n"
        "asyncio.run(server.serve(lambda: print('ready', flush=True)))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise SystemExit("the firehose server did not start")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per source-alone run")
    parser.add_argument("--flow-records", type=int, default=20_000,
                        help="records per full-flow run (0 skips the full flow)")
    args = parser.parse_args()
    n = args.records
    url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    client = connect(url)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    lines = [_mention(i) for i in range(max(n, args.flow_records))]
    jsonl = tmp / "mentions.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    print(f"records={n}")

    # baseline: the same records from memory, in batches of 1000 like the sources under test
    base, _ = measure(TestingSource([RawRecord("mem", i, ln, "jsonl") for i, ln in enumerate(lines[:n])], 1000), n)
    print(f"testing_source_records_per_s={base:.0f}")

    sub = tmp / "sub.jsonl"
    sub.write_bytes(b"\n".join(lines[:n]) + b"\n")
    rate, _ = measure(FileSource(sub, "jsonl"), n)
    print(f"file_records_per_s={rate:.0f}")
    print(f"file_vs_testing_source={rate / base:.2f}")

    port = _free_port()
    server = _start_firehose(jsonl, n, port)
    try:
        rate, _ = measure(WebSocketSource(f"ws://127.0.0.1:{port}/"), n)
    finally:
        server.kill()
        server.wait()
    print(f"ws_records_per_s={rate:.0f}")
    print(f"ws_vs_testing_source={rate / base:.2f}")

    try:
        t0 = time.perf_counter()
        append_records(client, prefix, lines[:n], partitions=4)
        print(f"redis_streams_append_records_per_s={n / (time.perf_counter() - t0):.0f}")
        rate, wall = measure(RedisStreamSource(url, prefix, 4, stop="drained"), n)
        pending = sum(client.xpending(stream_key(prefix, k), "pulse")["pending"] for k in range(4))
        if pending:
            raise SystemExit(f"{pending} entries left unacked")
        print(f"redis_streams_records_per_s={rate:.0f}")
        print(f"redis_streams_wall_incl_final_ack_s={wall:.2f}")
        print(f"redis_streams_vs_testing_source={rate / base:.2f}")
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)

    try:
        if args.flow_records:
            _full_flow(url, client, lines[: args.flow_records], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _full_flow(url: str, client: object, lines: list[bytes], tmp: Path) -> None:
    """The whole Social Pulse flow fed by each source (same records), records/s end to end."""
    from stream.runner import run_flow
    from stream.settings import Settings

    m = len(lines)
    print(f"flow_records={m}")
    path = tmp / "flow.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    rates: dict[str, float] = {}

    def timed(name: str, make_source: object, prefix: str) -> None:
        settings = Settings.load({"prefix": prefix, "redis_url": url}, env={}, config_path=None)
        start = time.perf_counter()
        run_flow(make_source(), settings, url)  # type: ignore[operator]
        rate = m / (time.perf_counter() - start)
        print(f"flow_{name}_records_per_s={rate:.0f}")
        if name == "testing_source":
            rates["base"] = rate
        else:
            print(f"flow_{name}_vs_testing_source={rate / rates['base']:.2f}")
        for key in client.scan_iter(match=prefix + "*", count=1000):  # type: ignore[attr-defined]
            client.delete(key)  # type: ignore[attr-defined]

    # warm-up (imports, model loading) so the first timed run does not pay for it
    warm = Settings.load({"prefix": f"benchflow:{uuid.uuid4().hex[:8]}:", "redis_url": url}, env={},
                         config_path=None)
    run_flow(TestingSource([RawRecord("warm", i, ln, "jsonl") for i, ln in enumerate(lines[:2000])], 1000), warm,
             url)
    for key in client.scan_iter(match=warm.prefix + "*", count=1000):  # type: ignore[attr-defined]
        client.delete(key)  # type: ignore[attr-defined]
    timed("testing_source", lambda: TestingSource([RawRecord("mem", i, ln, "jsonl") for i, ln in enumerate(lines)], 1000),
          f"benchflow:{uuid.uuid4().hex[:8]}:")
    timed("file", lambda: FileSource(path, "jsonl"), f"benchflow:{uuid.uuid4().hex[:8]}:")
    port = _free_port()
    server = _start_firehose(path, m, port)
    try:
        timed("ws", lambda: WebSocketSource(f"ws://127.0.0.1:{port}/"), f"benchflow:{uuid.uuid4().hex[:8]}:")
    finally:
        server.kill()
        server.wait()
    prefix = f"benchflow:{uuid.uuid4().hex[:8]}:"
    append_records(client, prefix, lines, partitions=4)  # type: ignore[arg-type]
    timed("redis_streams", lambda: RedisStreamSource(url, prefix, 4, stop="drained"), prefix)


if __name__ == "__main__":
    main()
