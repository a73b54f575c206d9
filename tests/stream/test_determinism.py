"""Results are a function of the input alone, and runs add up (issue: numbers that never drift).

Every case replays real or simulated files with ``pulse replay`` into a real Redis and compares
``pulse metrics --json`` (without ``generated_at``) with one reference run of the whole file:

- the same file twice, and at another ``--speed``: identical;
- killed with SIGKILL part way and resumed with the same recovery directory: identical;
- its odd rows, then its even rows, in two processes: identical (first responses too: a mention in one
  run and its reply in the next still match; on the Customer Support on Twitter sample a question
  whose answer is in the other file moves to the brand that answered it).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis
from pulse_testkit import PULSE, pulse, stored_values

from connectors.simulator import World
from stream.keys import Keys
from stream.metrics import totals
from stream.redisconn import delete_prefix

ENV = {"PULSE_CRM": "false", "PULSE_EPOCH_SECONDS": "0.2"}


def _metrics(redis_url: str, prefix: str) -> dict:
    doc = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=prefix).stdout)
    doc.pop("generated_at")
    return doc


def _replay(path: Path, fmt: str, redis_url: str, prefix: str, *extra: str) -> None:
    pulse("replay", str(path), "--format", fmt, "--no-progress", *extra, redis_url=redis_url, prefix=prefix,
          extra_env=ENV, timeout=300)


def _drop(r: redis.Redis, prefix: str) -> None:
    delete_prefix(r, prefix)


@pytest.fixture(scope="module")
def module_redis(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    prefixes: list[str] = []

    def new_prefix() -> str:
        prefixes.append(f"test:{uuid.uuid4().hex[:12]}:")
        return prefixes[-1]

    yield client, new_prefix
    for p in prefixes:
        _drop(client, p)
    client.close()


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated traffic with agents' replies: 5,000 mentions over 95 minutes of three brands."""
    world = World(seed=11, start=datetime(2024, 3, 4, 6, 40, tzinfo=UTC))
    path = tmp_path_factory.mktemp("sim") / "sim.jsonl"
    with path.open("wb") as fh:
        for rec in world.events(limit=5000, kinds={"mention"}):
            fh.write(orjson.dumps(rec.payload) + b"\n")
    return path


@pytest.fixture(scope="module")
def sim_reference(sim_file: Path, redis_url: str, module_redis) -> tuple[dict, str]:
    client, new_prefix = module_redis
    prefix = new_prefix()
    _replay(sim_file, "jsonl", redis_url, prefix)
    doc = _metrics(redis_url, prefix)
    assert doc["accepted"] == 5000 and sum(b["first_response"]["count"] for b in doc["brands"].values()) > 300
    return doc, prefix


def test_replayed_twice_and_at_another_speed_the_metrics_are_identical(sim_file: Path, sim_reference, redis_url: str,
                                                                      module_redis) -> None:
    reference, prefix = sim_reference
    _replay(sim_file, "jsonl", redis_url, prefix)  # the same input again: idempotent
    assert _metrics(redis_url, prefix) == reference
    paced = module_redis[1]()
    _replay(sim_file, "jsonl", redis_url, paced, "--speed", "6000")  # 95 event minutes in about a second
    assert _metrics(redis_url, paced) == reference


def test_dead_letters_keep_their_ids_and_order_whatever_the_speed(sim_file: Path, redis_url: str, module_redis,
                                                                  tmp_path: Path) -> None:
    """The dead-letter stream's ids follow its last entry, not the server's clock: the same file with bad lines in
    it, replayed as fast as possible and paced, gives the same entries under the same ids (the time each was received
    apart: that is the one wall-clock field, for the operator)."""
    lines = sim_file.read_bytes().splitlines()[:600]
    bad = [b'{"id": "broken", "channel": ', b'{"id": "x1", "brand": "acme", "text": "no channel", "ts": 1}', b"[1, 2]"]
    path = tmp_path / "with_bad.jsonl"
    path.write_bytes(b"\n".join(lines[:100] + bad[:1] + lines[100:300] + bad[1:] + lines[300:]) + b"\n")
    client, new_prefix = module_redis
    dumps = []
    for speed in ("0", "3000"):
        prefix = new_prefix()
        _replay(path, "jsonl", redis_url, prefix, "--speed", speed)
        stored = stored_values(client, prefix)  # without the wall-clock ts_received
        dumps.append((stored["dlq"], stored["dlq:marks"]))
    assert [i for i, _ in dumps[0][0]] == [b"0-1", b"0-2", b"0-3"]
    assert dumps[0] == dumps[1]


def test_killed_and_resumed_the_metrics_are_identical(sim_file: Path, sim_reference, redis_url: str, module_redis,
                                                      tmp_path: Path) -> None:
    reference, _ = sim_reference
    client, new_prefix = module_redis
    prefix = new_prefix()
    recovery = tmp_path / "recovery"
    cmd = [*PULSE, "replay", str(sim_file), "--no-progress", "--speed", "1500", "--recovery-dir", str(recovery)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix, **ENV),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and totals(client, Keys(prefix))["offered"] < 500:
        time.sleep(0.05)
    assert proc.poll() is None, "the replay finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < totals(client, Keys(prefix))["offered"] < 5000
    _replay(sim_file, "jsonl", redis_url, prefix, "--recovery-dir", str(recovery))
    assert _metrics(redis_url, prefix) == reference


def _split_jsonl(path: Path, out: Path) -> tuple[Path, Path]:
    lines = path.read_bytes().splitlines(keepends=True)
    odd, even = out / "odd.jsonl", out / "even.jsonl"
    odd.write_bytes(b"".join(lines[0::2]))
    even.write_bytes(b"".join(lines[1::2]))
    return odd, even


def _split_csv(path: Path, out: Path) -> tuple[Path, Path]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    files = []
    for name, part in (("odd.csv", body[0::2]), ("even.csv", body[1::2])):
        with (out / name).open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([header, *part])
        files.append(out / name)
    return files[0], files[1]


def test_odd_rows_then_even_rows_add_up_to_the_whole_simulated_file(sim_file: Path, sim_reference, redis_url: str,
                                                                   module_redis, tmp_path: Path) -> None:
    reference, _ = sim_reference
    prefix = module_redis[1]()
    odd, even = _split_jsonl(sim_file, tmp_path)
    _replay(odd, "jsonl", redis_url, prefix)
    _replay(even, "jsonl", redis_url, prefix)
    assert _metrics(redis_url, prefix) == reference


def test_odd_rows_then_even_rows_add_up_to_the_whole_twcs_sample(shared_data: Path, redis_url: str, module_redis,
                                                                tmp_path: Path) -> None:
    sample = shared_data / "twcs" / "twcs_sample.csv"
    new_prefix = module_redis[1]
    whole = new_prefix()
    _replay(sample, "twcs", redis_url, whole)
    reference = _metrics(redis_url, whole)
    odd, even = _split_csv(sample, tmp_path)
    for first, second in ((odd, even), (even, odd)):
        prefix = new_prefix()
        _replay(first, "twcs", redis_url, prefix)
        _replay(second, "twcs", redis_url, prefix)
        assert _metrics(redis_url, prefix) == reference
