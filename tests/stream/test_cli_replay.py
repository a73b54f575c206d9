"""`pulse replay` and `pulse metrics` as a user runs them, against a real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import polars as pl
import pytest
import redis
from pulse_testkit import PULSE, make_mentions, pulse

from stream.keys import Keys
from stream.metrics import totals


def _polars_first_response(path: Path) -> dict[str, dict[str, float]]:
    """First response per replying brand, computed independently of the engine with polars."""
    fmt = "%a %b %d %H:%M:%S %z %Y"
    df = pl.read_csv(path, infer_schema_length=0).with_columns(
        pl.col("created_at").str.strptime(pl.Datetime("ms", "UTC"), fmt).alias("t"))
    customers = df.filter(pl.col("inbound") == "True").select(pl.col("tweet_id").alias("mention_id"),
                                                             pl.col("t").alias("mention_t"))
    replies = (df.filter((pl.col("inbound") == "False") & pl.col("in_response_to_tweet_id").is_not_null())
               .select(pl.col("author_id").alias("brand"),
                       pl.col("in_response_to_tweet_id").str.split(",").list.first().alias("mention_id"),
                       pl.col("t").alias("reply_t")))
    first = (replies.join(customers, on="mention_id")
             .group_by("mention_id").agg(pl.col("reply_t").min(), pl.col("brand").sort_by("reply_t").first(),
                                         pl.col("mention_t").first())
             .with_columns(((pl.col("reply_t") - pl.col("mention_t")).dt.total_milliseconds().clip(0))
                           .cast(pl.Float64).alias("ms")))
    stats = first.group_by("brand").agg(pl.len().alias("count"), pl.col("ms").mean().alias("mean_ms"),
                                        pl.col("ms").quantile(0.5, "linear").alias("p50_ms"),
                                        pl.col("ms").quantile(0.9, "linear").alias("p90_ms"))
    return {row["brand"]: row for row in stats.to_dicts()}


def test_twcs_replay_first_response_equals_independent_polars(shared_data: Path, redis_url: str, key_prefix: str,
                                                              r: redis.Redis) -> None:
    path = shared_data / "twcs" / "twcs_sample.csv"
    run = pulse("replay", str(path), "--format", "twcs", "--speed", "0", redis_url=redis_url, prefix=key_prefix)
    assert "offered 93" in run.stderr
    doc = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    assert doc["offered"] == 93 and doc["accepted"] == 93 and doc["dead_letters"] == 0
    truth = _polars_first_response(path)
    assert truth, "the sample has brand replies"
    for brand, t in truth.items():
        fr = doc["brands"][brand]["first_response"]
        assert fr["count"] == t["count"], brand
        for name in ("mean_ms", "p50_ms", "p90_ms"):
            assert fr[name] == pytest.approx(t[name]), (brand, name)
    engine_brands = {b for b, v in doc["brands"].items() if v["first_response"]["count"]}
    assert engine_brands == set(truth)


def test_jsonl_replay_with_bad_lines(write_jsonl, redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    rows = make_mentions(200)
    bad = [b'{"id": "t', b"\xc3\x28 invalid utf8", orjson.dumps({"id": "y", "channel": "twitter", "brand": "b",
                                                                 "author": "a", "text": "x" * 1_000_001,
                                                                 "ts": "2024-01-01T00:00:00Z"})]
    path = write_jsonl(rows + bad + rows[:3])
    replay = pulse("replay", str(path), "--format", "jsonl", redis_url=redis_url, prefix=key_prefix)
    doc = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    assert (doc["offered"], doc["accepted"], doc["dead_letters"], doc["duplicates"]) == (len(rows) + 6, len(rows), 3, 3)
    where = sorted((f[b"reason"].decode().split(":")[0], f[b"origin"].decode()) for _, f in r.xrange(Keys(key_prefix).dlq))
    # each where it is in the file (the replay reads in event-time order: the offsets in the keys are not lines)
    n = len(rows)
    assert where == [("encoding", f"line {n + 2}"), ("json", f"line {n + 1}"), ("text", f"line {n + 3}")]
    listed = [line.strip() for line in replay.stderr.splitlines() if line.strip().startswith("line ")]
    assert [line.split(":")[0] for line in listed] == [f"line {n + 1}", f"line {n + 2}", f"line {n + 3}"]
    assert listed[0].startswith(f"line {n + 1}: json: malformed JSON")
    assert set(doc["brands"]) == {"acme", "globex"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "--bogus"], "No such option: --bogus"),
        (["replay", "/no/such/file.jsonl"], "no such file"),
        (["replay", "README.md", "--format", "xml"], "unknown format 'xml'"),
        (["metrics", "--since", "yesterday"], "--since: unparseable timestamp"),
        (["run", "--source", "kafka://x/y"], "unsupported source"),
    ],
)
def test_bad_cli_input_is_one_clear_line(args: list[str], needle: str, redis_url: str, key_prefix: str) -> None:
    proc = pulse(*args, redis_url=redis_url, prefix=key_prefix, check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unreachable_redis_is_one_clear_line(key_prefix: str) -> None:
    proc = pulse("metrics", "--json", redis_url="redis://127.0.0.1:1/0", prefix=key_prefix, check=False)
    assert proc.returncode != 0 and "cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_command_has_help() -> None:
    from typer.testing import CliRunner

    from stream.cli import app

    out = subprocess.run([*PULSE, "--help"], capture_output=True, text=True).stdout  # the installed entry point
    runner = CliRunner()
    for command in ("replay", "run", "metrics", "report", "dashboard", "demo"):
        assert command in out
        sub = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})  # the same app, without a process each
        assert sub.exit_code == 0 and "--redis-url" in sub.output, (command, sub.output)


def test_sigkill_replay_resumes_to_same_metrics(write_jsonl, tmp_path: Path, redis_url: str, key_prefix: str,
                                                r: redis.Redis) -> None:
    rows = make_mentions(12_000, step_ms=1_000)
    path = write_jsonl(rows + [b"{broken"] + rows[:10])
    env = {"PULSE_EPOCH_SECONDS": "0.2"}
    # The uninterrupted reference run, under its own prefix.
    ref_prefix = key_prefix + "ref:"
    pulse("replay", str(path), "--no-progress", redis_url=redis_url, prefix=ref_prefix, extra_env=env, timeout=300)
    reference = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=ref_prefix).stdout)
    # The same replay, killed with SIGKILL part way and started again with the same recovery dir.
    recovery = tmp_path / "recovery"
    cmd = [*PULSE, "replay", str(path), "--no-progress", "--recovery-dir", str(recovery)]
    full_env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, **env)
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    keys = Keys(key_prefix)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if totals(r, keys)["offered"] > 2_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the replay finished before it could be killed: make the input larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = totals(r, keys)["offered"]
    assert 0 < killed_at < len(rows) + 11
    pulse("replay", str(path), "--no-progress", "--recovery-dir", str(recovery), redis_url=redis_url,
          prefix=key_prefix, extra_env=env, timeout=300)
    resumed = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    for doc in (reference, resumed):
        doc.pop("generated_at")
    assert resumed == reference
    assert resumed["offered"] == len(rows) + 11


def test_sigterm_stops_an_endless_run_cleanly_even_when_delivered_twice(redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_FLUSH_SECONDS="0.2")
    proc = subprocess.Popen([*PULSE, "run", "--source", "sim", "--speed", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    keys = Keys(key_prefix)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and totals(r, keys)["offered"] < 500:
        assert proc.poll() is None
        time.sleep(0.1)
    # twice at once, as `timeout`, `make` or systemd deliver it (to the parent and the whole group, a moment apart): one stop
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "pulse: stopping" in stderr
    assert "Traceback" not in stderr and "panicked" not in stderr
    t = totals(r, keys)
    assert t["offered"] >= 500 and t["offered"] == t["accepted"] + t["dead_letters"] + t["duplicates"]


def test_an_edited_file_at_the_same_path_gets_its_own_dead_letters(write_jsonl, redis_url: str, key_prefix: str,
                                                                  r: redis.Redis) -> None:
    """Dead letters are appended once per record key and run: a replay of the same file adds none, an edited file
    (another run, whose records reuse the same keys) adds its own, so the stream holds what the counters count."""
    rows = make_mentions(20)
    path = write_jsonl([*rows, b"not json", {"id": "y", "channel": "twitter"}])
    dlq = Keys(key_prefix).dlq
    for _ in range(2):
        pulse("replay", str(path), redis_url=redis_url, prefix=key_prefix)
    assert r.xlen(dlq) == 2
    n = len(rows)
    path.write_bytes(path.read_bytes().replace(b"not json", b'{"id": "z", "channel": "twitter", "brand": 5}'))
    edited = pulse("replay", str(path), redis_url=redis_url, prefix=key_prefix)
    entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in r.xrange(dlq)]
    assert len(entries) == 4 and len({e["run"] for e in entries}) == 2
    assert [(e["origin"], e["reason"].split(":")[0]) for e in entries[2:]] == [(f"line {n + 1}", "brand"),
                                                                             (f"line {n + 2}", "brand")]
    listed = [line.strip() for line in edited.stderr.splitlines() if line.strip().startswith("line ")]
    assert listed[0].startswith(f"line {n + 1}: brand: expected a string")  # this run's, not the first file's
    doc = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    assert doc["dead_letters"] == 4 == len(entries)
