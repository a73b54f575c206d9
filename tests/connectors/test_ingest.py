"""The owned-community ingest endpoint against a real Redis and a real WebSocket client."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from connectors.ingest import IngestServer
from connectors.redis_streams import stream_key

TOKEN = "test-ingest-token"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def server(redis_url: str, key_prefix: str, r: redis.Redis) -> Iterator[IngestServer]:
    srv = IngestServer(token=TOKEN, redis_url=redis_url, prefix=key_prefix, partitions=4, port=0).start()
    yield srv
    srv.stop()


def _entries(r: redis.Redis, prefix: str) -> dict[str, list[tuple[bytes, dict[bytes, bytes]]]]:
    return {stream_key(prefix, n): r.xrange(stream_key(prefix, n)) for n in range(4)}


@pytest.mark.parametrize(
    "headers, query",
    [({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({"Authorization": f"Basic {TOKEN}"}, ""),
     ({}, "?token=wrong")],
)
def test_wrong_or_missing_token_is_refused(
    server: IngestServer, r: redis.Redis, key_prefix: str, headers: dict[str, str], query: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        with connect(server.url + query, additional_headers=headers, proxy=None) as ws:
            ws.send("{}")
    assert info.value.response.status_code == 401
    assert all(not entries for entries in _entries(r, key_prefix).values())


def test_thousand_frames_acked_and_stored(server: IngestServer, r: redis.Redis, key_prefix: str) -> None:
    frames = [orjson.dumps({"id": f"forum:{i}", "channel": "forum", "text": f"post {i}"}) for i in range(1000)]
    acks = []
    with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None) as ws:
        for frame in frames:
            ws.send(frame)
        for _ in frames:
            acks.append(orjson.loads(ws.recv(timeout=30)))
    assert [a["ack"] for a in acks] == list(range(1, 1001))
    stored = _entries(r, key_prefix)
    assert sum(len(v) for v in stored.values()) == 1000
    by_entry = {(key, eid.decode()): fields for key, entries in stored.items() for eid, fields in entries}
    # every ack names the entry holding exactly the frame it acknowledges
    for frame, ack in zip(frames, acks, strict=True):
        fields = by_entry[(ack["stream"], ack["entry"])]
        assert fields == {b"payload": frame, b"fmt": b"jsonl"}
    assert len({(a["stream"], a["entry"]) for a in acks}) == 1000


def test_query_token_and_empty_frames(server: IngestServer, r: redis.Redis, key_prefix: str) -> None:
    with connect(server.url + f"?token={TOKEN}", proxy=None) as ws:
        ws.send("   ")
        ws.send(b"\x00binary event")
        answers = [orjson.loads(ws.recv(timeout=10)) for _ in range(2)]
    assert answers[0] == {"nack": 1, "reason": "empty frame"}
    assert answers[1]["ack"] == 2
    stored = [f for entries in _entries(r, key_prefix).values() for _, f in entries]
    assert [f[b"payload"] for f in stored] == [b"\x00binary event"]


def test_a_token_is_required(redis_url: str) -> None:
    with pytest.raises(ValueError, match="PULSE_INGEST_TOKEN"):
        IngestServer(token="", redis_url=redis_url)


def _pulse(args: list[str], redis_url: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PULSE_INGEST_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url)
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, timeout=120)


def test_cli_pushes_jsonl_from_a_file_and_stdin(
    r: redis.Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    lines = [orjson.dumps({"id": f"forum:{i}"}) for i in range(50)]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines[:40]) + b"\n\n"))
    done = _pulse(["ingest", "--file", str(path), "--prefix", key_prefix, "--partitions", "2"], redis_url)
    assert done.returncode == 0, done.stderr
    done = _pulse(["ingest", "--prefix", key_prefix, "--partitions", "2", "--eof"], redis_url,
                  stdin=b"\r\n".join(lines[40:]))
    assert done.returncode == 0, done.stderr
    assert b"pushed 10 records" in done.stderr
    stored = [f[b"payload"] for n in range(2) for _, f in r.xrange(stream_key(key_prefix, n))]
    assert sorted(stored) == sorted(lines)
    assert r.exists(f"{key_prefix}in:eof")


def test_cli_errors_are_one_line(redis_url: str, key_prefix: str) -> None:
    done = _pulse(["ingest", "serve", "--prefix", key_prefix], redis_url)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "pulse: error: an ingest token is required: set PULSE_INGEST_TOKEN or pass --token"
    done = _pulse(["ingest", "--file", "/no/such/file.jsonl", "--prefix", key_prefix], redis_url)
    assert done.returncode == 2 and done.stderr.decode().strip() == "pulse: error: no such file: /no/such/file.jsonl"
    done = _pulse(["firehose", "serve", "--source", "redis://h:1/p:"], redis_url)
    assert done.returncode == 2 and "firehose serve streams sim, sim:SEED or file:PATH" in done.stderr.decode()


def test_a_full_stream_nacks_instead_of_dropping_unprocessed_events(
    redis_url: str, key_prefix: str, r: redis.Redis
) -> None:
    from connectors.redis_streams import RedisStreamSource

    srv = IngestServer(token=TOKEN, redis_url=redis_url, prefix=key_prefix, partitions=1, port=0,
                       max_backlog=5).start()
    try:
        frames = [orjson.dumps({"id": f"forum:{i}"}) for i in range(8)]
        with connect(srv.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None) as ws:
            for frame in frames:
                ws.send(frame)
            answers = [orjson.loads(ws.recv(timeout=10)) for _ in frames]
        assert [a.get("ack") for a in answers[:5]] == [1, 2, 3, 4, 5]
        assert [a.get("nack") for a in answers[5:]] == [6, 7, 8]
        assert all("backlog full" in a["reason"] and "retry later" in a["reason"] for a in answers[5:])
        key = stream_key(key_prefix, 0)
        assert [f[b"payload"] for _, f in r.xrange(key)] == frames[:5]  # nothing acknowledged was dropped
        # the flow's reader processes and trims what it acknowledged: the endpoint takes events again
        part = RedisStreamSource(redis_url, key_prefix, 1, trim_every_s=0).build_part("read", key, None)
        assert len(part.next_batch()) == 5
        part.snapshot()
        for _ in range(2):
            part.next_batch()
        part.close()
        assert r.xlen(key) == 0
        with connect(srv.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None) as ws:
            for frame in frames[5:]:
                ws.send(frame)
            assert all("ack" in orjson.loads(ws.recv(timeout=10)) for _ in frames[5:])
    finally:
        srv.stop()


def test_cli_push_stops_at_the_backlog_limit_with_one_line(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    lines = b"\n".join(orjson.dumps({"id": f"forum:{i}"}) for i in range(30))
    done = _pulse(["ingest", "--prefix", key_prefix, "--partitions", "1", "--max-backlog", "10"], redis_url,
                  stdin=lines)
    assert done.returncode == 1
    err = done.stderr.decode().strip()
    assert err.startswith("pulse: error: ") and "in:0 holds 0 entries, its backlog limit is 10" in err and "\n" not in err
    assert r.xlen(stream_key(key_prefix, 0)) == 0
