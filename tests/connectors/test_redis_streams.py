"""RedisStreamSource against a real Redis: batches, acks after outputs, pending reclaim, 2 workers, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import redis
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, run_main

from connectors.records import RawRecord
from connectors.redis_streams import (
    BacklogFull,
    RedisStreamSource,
    acknowledged_upto,
    append_records,
    eof_key,
    mark_eof,
    stream_key,
    trim_acknowledged,
)

ROOT = Path(__file__).resolve().parents[2]


def _payloads(n: int) -> list[bytes]:
    return [orjson.dumps({"id": f"t:{i}", "text": f"mention {i}"}) for i in range(n)]


def _pending(r: redis.Redis, prefix: str, partitions: int, group: str = "pulse") -> int:
    return sum(r.xpending(stream_key(prefix, n), group)["pending"] for n in range(partitions))


class _CountingPartition(StatelessSinkPartition[RawRecord]):
    def __init__(self, url: str, prefix: str) -> None:
        self._r = redis.Redis.from_url(url)
        self._prefix = prefix

    def write_batch(self, items: list[RawRecord]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for rec in items:
            payload_id = orjson.loads(rec.payload)["id"]  # type: ignore[arg-type]
            pipe.sadd(f"{self._prefix}seen", payload_id)
            pipe.hincrby(f"{self._prefix}deliveries", payload_id, 1)
        pipe.execute()


class CountingSink(DynamicSink[RawRecord]):
    """A test sink in Redis: the set of ids seen (idempotent) and how often each was delivered."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(self.url, self.prefix)


def _slow(rec: RawRecord) -> RawRecord:
    time.sleep(0.002)
    return rec


def build_flow(url: str, prefix: str, partitions: int, slow: bool = False, trim_every_s: float = 30.0) -> Dataflow:
    """The flow the subprocess tests run with ``python -m bytewax.run``."""
    flow = Dataflow("redis_streams_test")
    source = RedisStreamSource(url, prefix, partitions, stop="eof", batch_size=50 if slow else 1000,
                               trim_every_s=trim_every_s)
    records = op.input("read", flow, source)
    if slow:
        records = op.map("slow_down", records, _slow)
    op.output("count", records, CountingSink(url, prefix))
    return flow


def test_reads_every_entry_once_and_acks_all(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    payloads = _payloads(2500)
    added = append_records(r, key_prefix, payloads, partitions=4)
    assert len(added) == 2500
    assert {key for key, _ in added} == {stream_key(key_prefix, n) for n in range(4)}
    mark_eof(r, key_prefix)

    out: list[RawRecord] = []
    flow = Dataflow("read_all")
    op.output("out", op.input("read", flow, RedisStreamSource(redis_url, key_prefix, 4, stop="eof")),
              TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=50))

    assert sorted(rec.payload for rec in out) == sorted(payloads)
    assert {(rec.source, rec.offset) for rec in out} == {(f"redis:{k}", i) for k, i in added}
    assert all(rec.fmt == "jsonl" for rec in out)
    assert _pending(r, key_prefix, 4) == 0


def test_unacked_entries_are_reclaimed_after_a_crash(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    payloads = _payloads(300)
    append_records(r, key_prefix, payloads, partitions=1)
    source = RedisStreamSource(redis_url, key_prefix, 1, batch_size=100, stop="drained")
    # A first run reads two batches and dies before any epoch closed: nothing acked.
    crashed = source.build_part("read", stream_key(key_prefix, 0), None)
    first = crashed.next_batch() + crashed.next_batch()
    assert len(first) == 200
    assert _pending(r, key_prefix, 1) == 200

    out: list[RawRecord] = []
    flow = Dataflow("reclaim")
    op.output("out", op.input("read", flow, source), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=50))

    # The 200 pending entries come back first (XAUTOCLAIM), in order, then the 100 never read.
    assert [rec.offset for rec in out[:200]] == [rec.offset for rec in first]
    assert sorted(rec.payload for rec in out) == sorted(payloads)
    assert _pending(r, key_prefix, 1) == 0


def test_ack_waits_for_the_epoch_to_close(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    append_records(r, key_prefix, _payloads(50), partitions=1)
    part = RedisStreamSource(redis_url, key_prefix, 1).build_part("read", stream_key(key_prefix, 0), None)
    batch = part.next_batch()
    assert len(batch) == 50
    assert part.next_batch() == []
    assert _pending(r, key_prefix, 1) == 50  # emitted, outputs not known to be done: not acked
    assert part.snapshot() == batch[-1].offset  # epoch closes: sealed
    assert _pending(r, key_prefix, 1) == 50
    part.next_batch()  # Bytewax calls this only once outputs finished that epoch
    assert _pending(r, key_prefix, 1) == 0
    part.close()


def test_resume_state_replays_after_the_snapshot(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    append_records(r, key_prefix, _payloads(30), partitions=1)
    source = RedisStreamSource(redis_url, key_prefix, 1, batch_size=10, stop="drained")
    key = stream_key(key_prefix, 0)
    part = source.build_part("read", key, None)
    a = part.next_batch()
    snap = part.snapshot()
    b = part.next_batch()  # acks a; b is emitted in an epoch whose snapshot was never committed
    part.snapshot()
    part.next_batch()  # acks b too: its outputs were written, but recovery restores the state at `snap`
    assert _pending(r, key_prefix, 1) == 10
    resumed = source.build_part("read", key, snap)
    again = resumed.next_batch()
    assert [rec.offset for rec in again] == [rec.offset for rec in b]
    rest = resumed.next_batch()
    assert len(rest) == 10 and rest[0].offset > b[-1].offset  # type: ignore[operator]
    assert a[-1].offset == snap
    resumed.close()
    part.close()


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        RedisStreamSource("redis://localhost", "p:", 0)
    with pytest.raises(ValueError, match="stop must be"):
        RedisStreamSource("redis://localhost", "p:", 1, stop="later")  # type: ignore[arg-type]


_RUNNER = """
import sys
from datetime import timedelta
from pathlib import Path
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from test_redis_streams import build_flow
url, prefix, recovery, slow = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
cli_main(build_flow(url, prefix, 4, slow=slow, trim_every_s=0.1), workers_per_process=2,
         epoch_interval=timedelta(milliseconds=200),
         recovery_config=RecoveryConfig(Path(recovery)) if recovery else None)
"""


def _run_cluster(redis_url: str, prefix: str, recovery: Path | None, slow: bool) -> subprocess.Popen[bytes]:
    """Two Bytewax workers in a child process (``cli_main``, as ``python -m bytewax.run -w 2``)."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{Path(__file__).parent}")
    cmd = [sys.executable, "-c", _RUNNER, redis_url, prefix, str(recovery or ""), "1" if slow else "0"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_workers_four_partitions_exactly_once(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    append_records(r, key_prefix, _payloads(2000), partitions=4)
    mark_eof(r, key_prefix)
    proc = _run_cluster(redis_url, key_prefix, None, slow=False)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    deliveries = r.hgetall(f"{key_prefix}deliveries")
    assert len(deliveries) == 2000
    assert set(deliveries.values()) == {b"1"}
    assert _pending(r, key_prefix, 4) == 0


def test_sigkill_and_restart_with_recovery_loses_nothing(
    r: redis.Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    total = 3000
    append_records(r, key_prefix, _payloads(total), partitions=4)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "2"], check=True, cwd=ROOT)
    proc = _run_cluster(redis_url, key_prefix, recovery, slow=True)
    deadline = time.monotonic() + 60
    while r.scard(f"{key_prefix}seen") < total // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen_at_kill = r.scard(f"{key_prefix}seen")
    assert 0 < seen_at_kill < total
    assert _pending(r, key_prefix, 4) > 0  # in flight when killed, not acked

    mark_eof(r, key_prefix)
    proc = _run_cluster(redis_url, key_prefix, recovery, slow=False)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert r.scard(f"{key_prefix}seen") == total
    deliveries = {int(v) for v in r.hgetall(f"{key_prefix}deliveries").values()}
    assert min(deliveries) == 1  # every record reached the sink; re-deliveries only around the kill
    assert _pending(r, key_prefix, 4) == 0
    assert r.exists(eof_key(key_prefix))
    # the readers trimmed what they had acknowledged (every 0.1 s here) while killed and restarted
    assert sum(r.xlen(stream_key(key_prefix, n)) for n in range(4)) < total


def _drain(part) -> list[RawRecord]:  # type: ignore[no-untyped-def]
    """Read what a partition has as Bytewax would: each batch in its own epoch, acked on the next call."""
    out: list[RawRecord] = []
    while True:
        batch = part.next_batch()
        part.snapshot()
        if not batch:
            part.next_batch()  # acks the last epoch (and trims)
            return out
        out += batch


def test_readers_trim_only_what_every_group_acknowledged(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    key = stream_key(key_prefix, 0)
    added = append_records(r, key_prefix, _payloads(1000), partitions=1)
    ids = [eid for _, eid in added]
    assert acknowledged_upto(r, key) is None and trim_acknowledged(r, key) == 0  # no consumer yet: keep all
    # another consumer group (an archiver, say) has read 600 entries and acknowledged 500 of them
    r.xgroup_create(key, "archive", id="0")
    got = r.xreadgroup("archive", "a", {key: ">"}, count=600)[0][1]
    r.xack(key, "archive", *[eid for eid, _ in got[:500]])
    part = RedisStreamSource(redis_url, key_prefix, 1, batch_size=100, trim_every_s=0).build_part("read", key, None)
    assert len(_drain(part)) == 1000 and _pending(r, key_prefix, 1) == 0
    # the flow acknowledged everything, the archive only up to entry 500: nothing from there on is gone
    left = [eid.decode() for eid, _ in r.xrange(key)]
    assert left[-500:] == ids[500:]
    assert len(left) < 700  # the acknowledged head is trimmed (``~``: whole nodes of up to 100 entries)
    # once the archive catches up, the next trims take the rest (applied one trim interval late)
    rest = r.xreadgroup("archive", "a", {key: ">"}, count=1000)[0][1]
    r.xack(key, "archive", *[eid for eid, _ in got[500:] + rest])
    for _ in range(2):
        _drain(part)
    assert r.xlen(key) <= 100
    part.close()


def test_a_group_created_later_is_never_trimmed_past(r: redis.Redis, key_prefix: str) -> None:
    key = stream_key(key_prefix, 0)
    append_records(r, key_prefix, _payloads(500), partitions=1)
    r.xgroup_create(key, "pulse", id="$")  # started late: only new entries are its business
    point = acknowledged_upto(r, key)
    r.xgroup_create(key, "replay", id="0")  # a new reader of the whole history appears
    assert trim_acknowledged(r, key, point) == 0 and r.xlen(key) == 500


def test_producers_refuse_to_pile_up_more_than_the_backlog(r: redis.Redis, key_prefix: str) -> None:
    with pytest.raises(BacklogFull) as info:
        append_records(r, key_prefix, _payloads(250), partitions=1, chunk=40, max_backlog=100)
    assert info.value.pushed == 80 and r.xlen(stream_key(key_prefix, 0)) == 80  # whole chunks only
    assert "holds 80 entries, its backlog limit is 100: start the flow or let it catch up" in str(info.value)
    added = append_records(r, key_prefix, _payloads(20), partitions=1, chunk=40, max_backlog=100)
    assert len(added) == 20 and r.xlen(stream_key(key_prefix, 0)) == 100
