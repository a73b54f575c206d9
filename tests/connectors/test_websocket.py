"""WebSocket firehose server <-> WebSocketSource, in process and across a killed server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.records import RawRecord
from connectors.websocket import FirehoseServer, WebSocketSource, decode_frame, encode_frame

ROOT = Path(__file__).resolve().parents[2]


def _records(n: int) -> list[tuple[RawRecord, int | None]]:
    out: list[tuple[RawRecord, int | None]] = []
    for i in range(n):
        if i % 3 == 0:
            payload: bytes | dict[str, str] = orjson.dumps({"id": f"t:{i}", "text": "ça va?"})
        elif i % 3 == 1:
            payload = {"tweet_id": str(i), "text": "row"}
        else:
            payload = b'{"id": "t:%d", "text": "\xff\xfe broken utf-8"}' % i
        out.append((RawRecord("file:x", i, payload, "jsonl" if i % 3 != 1 else "twcs"), 1_700_000_000_000 + i))
    return out


def _run(source: WebSocketSource) -> list[RawRecord]:
    out: list[RawRecord] = []
    flow = Dataflow("ws_test")
    op.output("out", op.input("read", flow, source), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=100))
    return out


def test_streams_every_record_with_payload_intact() -> None:
    records = _records(3000)
    server = FirehoseServer(lambda: records, port=0, frame_records=100).start()
    try:
        out = _run(WebSocketSource(server.url, batch_size=500))
    finally:
        server.stop()
    assert [rec.offset for rec in out] == list(range(1, 3001))
    assert [rec.payload for rec in out] == [
        rec.payload for rec, _ in records
    ]  # bytes (even non-UTF-8) and dicts come back as they were
    assert [rec.fmt for rec in out] == [rec.fmt for rec, _ in records]
    assert {rec.source for rec in out} == {server.url}


def test_resume_after_an_id() -> None:
    records = _records(50)
    server = FirehoseServer(lambda: records, port=0).start()
    try:
        out = _run(WebSocketSource(server.url, start_after=40))
    finally:
        server.stop()
    assert [rec.offset for rec in out] == list(range(41, 51))


def test_source_waits_with_backoff_until_the_server_is_up() -> None:
    port = _free_port()
    records = _records(200)
    source = WebSocketSource(f"ws://127.0.0.1:{port}/", backoff_initial=0.05, backoff_max=0.2)
    part = source.build_part("read", source.url, None)
    try:
        assert part.next_batch() == []  # nobody listening yet: retrying in the background
        server = FirehoseServer(lambda: records, host="127.0.0.1", port=port).start()
        got = _drain(part)
        server.stop()
    finally:
        part.close()
    assert [rec.offset for rec in got] == list(range(1, 201))
    assert part.snapshot() == 200


def test_refused_handshake_fails_clearly() -> None:
    server = FirehoseServer(lambda: _records(5), port=0).start()
    source = WebSocketSource(server.url, start_after="not-a-number")
    part = source.build_part("read", server.url, None)
    try:
        with pytest.raises(RuntimeError, match="HTTP 400.*after must be a record id"):
            _drain(part)
        with pytest.raises(Exception) as info:  # the same failure stops a dataflow
            _run(source)
        assert "HTTP 400" in str(info.value.__cause__)
    finally:
        part.close()
        server.stop()


def test_frames_that_are_not_envelopes_pass_through_raw() -> None:
    items, ended = decode_frame(b"not json", "ws://h/", "jsonl")
    assert not ended and items[0][0] is None and items[0][1].payload == b"not json"
    items, _ = decode_frame(b'{"id": "twitter:1", "text": "bare mention"}', "ws://h/", "jsonl")
    assert items[0][0] is None and orjson.loads(items[0][1].payload)["id"] == "twitter:1"  # type: ignore[arg-type]
    items, _ = decode_frame(b'[{"id": 3, "payload_b64": "!!"}, 7]', "ws://h/", "jsonl")
    assert [seq for seq, _ in items] == [3, None]
    assert decode_frame(encode_frame([]), "ws://h/", "jsonl") == ([], False)


# -- the server process is SIGKILLed mid-stream and started again -------------------------------------
_SERVER = """
import asyncio, sys
from connectors.records import RawRecord
from connectors.websocket import FirehoseServer
n, port = int(sys.argv[1]), int(sys.argv[2])
records = [(RawRecord("file:x", i, b'{"id": "t:%d"}' % i, "jsonl"), 1_700_000_000_000 + i) for i in range(n)]
asyncio.run(FirehoseServer(lambda: records, port=port, speed=1.0).serve(lambda: print("ready", flush=True)))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(n: int, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(n), str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def _drain(part: object) -> list[RawRecord]:
    got: list[RawRecord] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            got += part.next_batch()  # type: ignore[attr-defined]
        except StopIteration:
            return got
        time.sleep(0.002)
    raise AssertionError(f"stream did not end; got {len(got)} records")


def test_server_killed_and_restarted_mid_stream_loses_nothing() -> None:
    n, port = 1500, _free_port()
    servers = [_start_server(n, port)]
    out: list[RawRecord] = []

    def kill_and_restart() -> None:
        deadline = time.monotonic() + 30
        while len(out) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait()
        time.sleep(0.3)  # the client sees the drop and retries with backoff meanwhile
        servers.append(_start_server(n, port))

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        flow = Dataflow("ws_kill")
        source = WebSocketSource(f"ws://127.0.0.1:{port}/", backoff_initial=0.05, backoff_max=0.5)
        op.output("out", op.input("read", flow, source), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(milliseconds=100))
    finally:
        killer.join()
        for proc in servers:
            proc.kill()
            proc.wait()
    assert len(servers) == 2  # the stream really was interrupted
    assert servers[0].returncode == -signal.SIGKILL
    offsets = [rec.offset for rec in out]
    assert sorted(set(offsets)) == list(range(1, n + 1))  # nothing lost
    assert len(offsets) == n  # and, resuming after the last id received, nothing repeated


# -- the whole flow: `pulse run --source ws://…` equals `pulse replay` on the same file, across a kill --------
def _pulse(*args: str, redis_url: str, **kw: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), REDIS_URL=redis_url)
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], env=env, cwd=ROOT, **kw)  # type: ignore[call-overload]


def _metrics(redis_url: str, prefix: str) -> dict[str, object]:
    proc = _pulse("metrics", "--json", "--prefix", prefix, redis_url=redis_url, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    doc = orjson.loads(out)
    doc.pop("generated_at")
    return doc  # type: ignore[no-any-return]


@pytest.mark.slow
def test_flow_over_killed_firehose_equals_replay(
    shared_data: Path, r: object, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    import redis as redis_lib

    assert isinstance(r, redis_lib.Redis)
    sample = shared_data / "twcs" / "twcs_sample.csv"
    port = _free_port()
    serve = ("firehose", "serve", "--source", f"file:{sample}", "--format", "twcs", "--speed", "14400",
             "--port", str(port), "--verbose")
    logs = [tmp_path / "server1.log", tmp_path / "server2.log"]
    server = _pulse(*serve, redis_url=redis_url, stderr=logs[0].open("wb"))
    time.sleep(1.0)  # let it bind; the flow would retry anyway
    run = _pulse("run", "--source", f"ws://127.0.0.1:{port}/", "--prefix", key_prefix, redis_url=redis_url)
    try:
        # the server paces the stream from the client's connection (about 12 s for the sample at this speed),
        # whatever the flow's speed: killed 3 s after the flow connected, it is mid-stream even on a loaded
        # machine, where the flow's first counts can reach Redis only after the whole stream was sent
        deadline = time.monotonic() + 90
        while "connected, after=" not in logs[0].read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3.0)
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(0.5)
        server = _pulse(*serve, redis_url=redis_url, stderr=logs[1].open("wb"))
        assert run.wait(timeout=120) == 0
    finally:
        run.kill()
        server.kill()
        server.wait()
    resumed = [int(line.rsplit("after=", 1)[1]) for line in logs[1].read_text().splitlines() if "connected, after=" in line]
    assert resumed and 0 < resumed[0] < 93, logs[1].read_text()  # really interrupted mid-stream

    replay_prefix = key_prefix + "replay:"
    proc = _pulse("replay", str(sample), "--format", "twcs", "--prefix", replay_prefix, "--no-progress",
                  redis_url=redis_url, stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=120) == 0
    over_ws, replayed = _metrics(redis_url, key_prefix), _metrics(redis_url, replay_prefix)
    assert over_ws["offered"] == replayed["offered"] == 93
    assert over_ws == replayed


def test_a_paced_firehose_shortens_a_silence_to_max_wait() -> None:
    """A record dated 1970 before 2024 data: at speed 3000 the next would come six days later; it comes after
    ``max_wait_s``, and the records after it keep their pace (1 s of event time: a third of a millisecond)."""
    t2024 = 1_704_067_200_000
    recs = [(RawRecord("file:x", 0, b'{"n": 0}', "jsonl"), 1_000),
            (RawRecord("file:x", 1, b'{"n": 1}', "jsonl"), t2024),
            (RawRecord("file:x", 2, b'{"n": 2}', "jsonl"), t2024 + 1_000)]
    server = FirehoseServer(lambda: recs, port=0, speed=3000.0, max_wait_s=0.5).start()
    part = WebSocketSource(server.url).build_part("read", "ws", None)
    try:
        started = time.monotonic()
        got: list[RawRecord] = []
        while len(got) < 3 and time.monotonic() - started < 20:
            got += part.next_batch()
        assert [r.payload for r in got] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert 0.4 < time.monotonic() - started < 15
    finally:
        part.close()
        server.stop()
    with pytest.raises(ValueError, match="max_wait_s"):
        FirehoseServer(lambda: recs, max_wait_s=-1)
