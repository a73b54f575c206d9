"""`pulse replay --metrics-port`: the engine's health scraped over HTTP while a small flow runs."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pulse_testkit import PULSE, free_ports, make_mentions, pulse

from stream.health import Health
from stream.keys import Keys
from stream.metrics import totals
from stream.schema import Alert


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_replay_exposes_records_per_step_dead_letters_lag_and_write_latency(
        write_jsonl, redis_url: str, key_prefix: str, r: redis.Redis, tmp_path: Path) -> None:
    rows: list = make_mentions(40, step_ms=100)  # 40 mentions and their replies within ~50 minutes
    rows += [b"{not json", b'{"id": "x"}', b"[1, 2]"]  # three dead letters
    offered = len(rows)
    last = {"id": "twitter:last", "channel": "twitter", "brand": "acme", "author": "late_user", "text": "hello",
            "ts": max(row["ts"] for row in rows if isinstance(row, dict)) + 30 * 86_400_000}
    path = write_jsonl([*rows, last])
    # paced at 600x: everything but the last mention within ~5 s, the last one 72 minutes after the one before
    # it (--max-wait lifts the default 10 s cap on a wait: a loaded machine may take longer than that to reach
    # the scrape), so the first part's counters can be scraped while the flow still runs; then it is killed
    port = free_ports(1)[0]
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_FLUSH_SECONDS="0.1",
               PULSE_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([*PULSE, "replay", str(path), "--speed", "600", "--max-wait", "7200", "--no-progress",
                             "--metrics-port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        samples: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                samples = _scrape(port)
            except (urllib.error.URLError, ConnectionError):
                samples = {}
            if _value(samples, "pulse_records_total", outcome="offered") >= offered:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the replay ended before it was scraped: {proc.communicate()[1]}"
        source = f"file:{path.resolve()}"
        assert _value(samples, "pulse_records_total", source=source, outcome="offered") == offered
        assert _value(samples, "pulse_records_total", source=source, outcome="dead_letters") == 3
        assert _value(samples, "pulse_records_total", source=source, outcome="accepted") == offered - 3
        # Bytewax's own per-step counts: every record offered went into the flow and through parse
        assert _value(samples, "bytewax_item_out_count_total", step_id="social_pulse.read") == offered
        assert _value(samples, "bytewax_item_inp_count_total", step_id="social_pulse.parse.flat_map_batch") == offered
        assert _value(samples, "bytewax_item_inp_count_total", step_id="social_pulse.write_redis") > 0
        assert _value(samples, "pulse_dead_letters_total") == 3
        assert _value(samples, "pulse_sink_items_total", kind="dlq") == 3
        assert _value(samples, "pulse_redis_write_seconds_count") > 0
        assert _value(samples, "pulse_event_lag_seconds_count") > 0
        # event time is 2024: the lag is the data's age, over a year
        assert _value(samples, "pulse_event_lag_newest_seconds") > 365 * 86400
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert totals(r, Keys(key_prefix))["offered"] == offered  # what was scraped is what the flow wrote
    assert (tmp_path / "data" / "dataflow.json").is_file()


def test_busy_metrics_port_is_a_one_line_error(write_jsonl, redis_url: str, key_prefix: str) -> None:
    import socket

    path = write_jsonl(make_mentions(4))
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        run = pulse("replay", str(path), "--no-progress", "--metrics-port", str(port), redis_url=redis_url,
                    prefix=key_prefix, check=False)
    assert run.returncode == 2
    assert f"--metrics-port {port}: cannot listen there" in run.stderr
    assert "Traceback" not in run.stderr


def test_open_incidents_are_read_from_redis_at_each_scrape(redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    from stream.sinks import RedisWriter

    keys = Keys(key_prefix)
    writer = RedisWriter(r, keys)
    base = dict(kind="spike", brand="acme", channel="twitter", topic=None, window_start="2024-01-01T10:00:00+00:00",
                observed=40, expected=6.0, score=0.99, severity="high", sample_ids=(), top_terms=("outage",))
    writer.write([("alert", Alert(id="spike:a", **base, message="open: acme twitter at 40")),
                  ("alert", Alert(id="spike:b", **base, message="resolved: acme twitter back to 6"))])
    h = Health(CollectorRegistry(), redis_url, keys)
    assert h.registry.get_sample_value("pulse_open_incidents", {"kind": "spike", "severity": "high"}) == 1
    writer.write([("alert", Alert(id="spike:c", **{**base, "severity": "low"}, message="open: again"))])
    assert h.registry.get_sample_value("pulse_open_incidents", {"kind": "spike", "severity": "low"}) == 1
    h.close()


@pytest.mark.parametrize("kind", ["dlq", "late"])
def test_dead_letters_counted_per_batch(kind: str) -> None:
    from stream.schema import DeadLetter

    h = Health(CollectorRegistry())
    item = ("dlq", DeadLetter(raw="x", reason="bad", source="file:a", key="file:a:1")) if kind == "dlq" else \
        ("late", "acme", "twitter", "m1", 1_000)
    h.observe_sink_batch([item, item, ("windows", "acme", "twitter", [("m", 0, {}, [], True)])], 0.01)
    source = "file:a" if kind == "dlq" else "flow"
    assert h.registry.get_sample_value("pulse_dead_letters_total", {"source": source}) == 2
    assert h.registry.get_sample_value("pulse_sink_items_total", {"kind": "windows"}) == 1
    assert h.registry.get_sample_value("pulse_redis_write_seconds_sum") == pytest.approx(0.01)
