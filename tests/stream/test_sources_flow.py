"""The full flow fed by real sources: a corrupted JSONL file, and Redis Streams killed mid-run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis
from pulse_testkit import PULSE, make_mentions, pulse, redis_source

from connectors.redis_streams import append_records, mark_eof
from stream.keys import Keys
from stream.metrics import totals


def _corrupt(lines: list[bytes], share: float, seed: int = 3) -> tuple[list[bytes], int]:
    """Corrupt ``share`` of the lines in three real-world ways; return the lines and how many are bad."""
    rng = random.Random(seed)
    out, bad = [], 0
    for line in lines:
        if rng.random() < share:
            bad += 1
            kind = rng.randrange(3)
            if kind == 0:
                line = line[: rng.randrange(1, len(line) - 1)]  # truncated
            elif kind == 1:
                line = line[:10] + b"\xff\xfe" + line[10:]  # invalid UTF-8
            else:
                d = orjson.loads(line)
                d.pop(rng.choice(["id", "brand", "text", "ts", "channel"]))
                line = orjson.dumps(d)  # a missing field
        out.append(line)
    return out, bad


def test_ten_percent_corrupted_jsonl_reconciles(write_jsonl, redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    rows = make_mentions(3_000)
    lines, bad = _corrupt([orjson.dumps(x) for x in rows], 0.10)
    assert 0.08 * len(rows) < bad < 0.12 * len(lines)
    path = write_jsonl(lines)
    pulse("replay", str(path), "--no-progress", redis_url=redis_url, prefix=key_prefix)
    keys = Keys(key_prefix)
    t = totals(r, keys)
    assert t["offered"] == len(lines)
    assert t["dead_letters"] == bad
    assert t["accepted"] == len(lines) - bad
    entries = r.xrange(keys.dlq)
    assert len(entries) == bad
    reasons = {f[b"reason"].decode().split(":")[0] for _, f in entries}
    assert reasons <= {"json", "encoding", "id", "brand", "text", "ts", "channel"}
    assert {"json", "encoding"} <= reasons
    assert all(f[b"raw"] for _, f in entries)


@pytest.mark.slow
def test_redis_streams_two_workers_sigkill_counts_every_record_once(
    write_jsonl, tmp_path: Path, redis_url: str, key_prefix: str, r: redis.Redis
) -> None:
    rows = make_mentions(8_000, step_ms=1_000)
    payloads = [orjson.dumps(x) for x in rows]
    # The reference: the same records replayed from a file.
    ref = key_prefix + "ref:"
    pulse("replay", str(write_jsonl(rows)), "--no-progress", redis_url=redis_url, prefix=ref)
    reference = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=ref).stdout)
    # The same records in 4 input streams, consumed by 2 workers, killed mid-run and restarted.
    append_records(r, key_prefix, payloads, partitions=4)
    mark_eof(r, key_prefix)
    recovery = tmp_path / "recovery"
    source = redis_source(redis_url, key_prefix)
    args = ["run", "--source", source, "--bounded", "--workers", "2", "--recovery-dir", str(recovery)]
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_EPOCH_SECONDS="0.2")
    proc = subprocess.Popen([*PULSE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    keys = Keys(key_prefix)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and totals(r, keys)["offered"] < 2_000:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert totals(r, keys)["offered"] < len(rows)
    pulse(*args, redis_url=redis_url, prefix=key_prefix, extra_env={"PULSE_EPOCH_SECONDS": "0.2"}, timeout=300)
    resumed = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    assert resumed["offered"] == len(rows) and resumed["accepted"] == len(rows)
    assert resumed["duplicates"] == 0
    # Four partitions read at their own pace are not in event-time order: records behind the watermark
    # are counted `late` (and still aggregated); every other figure equals the in-order replay.
    for doc in (resumed, reference):
        for brand in doc["brands"].values():
            brand.pop("late")
            for channel in brand["channels"].values():
                channel.pop("late")
    _diff(resumed["brands"], reference["brands"])
    assert resumed["brands"] == reference["brands"]
    pending = sum(r.xpending(k, "pulse")["pending"] for k in (f"{key_prefix}in:{n}" for n in range(4)))
    assert pending == 0


def _diff(a: dict, b: dict, path: str = "") -> None:
    for k in set(a) | set(b):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            _diff(x, y, f"{path}.{k}")
        elif x != y:
            print(f"DIFF {path}.{k}: {x} != {y}")
