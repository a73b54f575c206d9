"""The engine's own health as Prometheus metrics: ``pulse run --metrics-port PORT`` (and ``pulse replay``).

What is exposed on ``http://HOST:PORT/metrics`` while the flow runs:

- ``bytewax_item_inp_count_total`` / ``bytewax_item_out_count_total`` ``{step_id}``: records into and out of
  every step of the flow (``social_pulse.read``, ``social_pulse.parse.flat_map_batch``, …,
  ``social_pulse.write_redis``). Bytewax counts them itself, per batch, in Rust; with its per-step batch
  durations (``bytewax_*_duration_seconds``). Bytewax's own web server serves the page (its dataflow API,
  switched on for the run), and adds the Python registry of ``prometheus_client``, where the metrics below
  live.
- ``pulse_records_total{source, outcome}``: records offered, accepted, dead letters and duplicates per source
  in this run (the flow's own counters, as they are written to Redis every ``flush_seconds``).
- ``pulse_dead_letters_total{source}``: items written to the dead-letter stream (malformed records, late
  records, refused labels, CRM refusals), by where they came from.
- ``pulse_sink_items_total{kind}``: items written to Redis by kind (window, fact, mention, alert, …).
- ``pulse_event_lag_seconds`` (histogram) and ``pulse_event_lag_newest_seconds`` (gauge): wall clock minus the
  event time of the newest mention of each batch the sink writes (a replay of old data lags by its age).
- ``pulse_redis_write_seconds`` (histogram): time of one sink batch's Redis pipeline (built and executed).
- ``pulse_open_incidents{kind, severity}``: live incidents (not resolved by the detector, not closed on the
  desk), read from Redis at each scrape.

Nothing here is written to Redis and nothing the flow writes depends on it: wall-clock time only feeds the
lag and latency figures. The hot path pays one call per sink batch (:func:`observe_sink_batch`), a no-op
unless :func:`enable` was called.

>>> from stream.schema import DeadLetter
>>> h = Health(CollectorRegistry())
>>> dead = DeadLetter(raw="x", reason="r", source="s", key="s:1")
>>> h.observe_sink_batch([("mention", b"{}", 1_000, "m1", b""), ("dlq", dead)], 0.002)
>>> h.registry.get_sample_value("pulse_dead_letters_total", {"source": "s"})
1.0
>>> h.registry.get_sample_value("pulse_sink_items_total", {"kind": "mention"})
1.0
>>> h.registry.get_sample_value("pulse_redis_write_seconds_count")
1.0
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.keys import Keys

__all__ = ["Health", "enable", "health", "observe_sink_batch", "serve"]

log = logging.getLogger(__name__)

#: Event-time lag buckets (seconds): a live flow is seconds behind, a replay of old data days or years.
LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400,
               365 * 86400, float("inf"))
#: Redis pipeline latency buckets (seconds).
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf"))
_OUTCOMES = ("offered", "accepted", "dead_letters", "duplicates")


class _RecordsCollector(Collector):
    """``pulse_records_total``: the flow's per-source outcome counters of this run (cumulative)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def update(self, source: str, counts: dict[str, int]) -> None:
        with self._lock:
            self._counts[source] = {k: int(counts.get(k, 0)) for k in _OUTCOMES}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("pulse_records", "Records per source and outcome in this run "
                                     "(offered, accepted, dead_letters, duplicates)", labels=["source", "outcome"])
        with self._lock:
            for source, counts in sorted(self._counts.items()):
                for outcome in _OUTCOMES:
                    family.add_metric([source, outcome], counts[outcome])
        yield family


class _IncidentsCollector(Collector):
    """``pulse_open_incidents``: live incidents per kind and severity, read from Redis at each scrape."""

    def __init__(self, redis_url: str, keys: Keys) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self._client: Any = None

    def collect(self) -> Iterator[Metric]:
        import redis

        from stream.incident_desk import read_incidents

        family = GaugeMetricFamily("pulse_open_incidents", "Live incidents (not resolved, not closed) by kind "
                                   "and severity", labels=["kind", "severity"])
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            live = Tally((i.kind, i.severity) for i in read_incidents(self._client, self.keys) if i.live)
        except redis.RedisError as exc:
            log.warning("open incidents not exposed: Redis: %s", exc)
            return
        for (kind, severity), n in sorted(live.items()):
            family.add_metric([kind, severity], n)
        yield family


class Health:
    """The flow's health metrics in a ``prometheus_client`` registry (see the module docs).

    ``redis_url`` and ``keys`` add the open incidents, read from Redis at each scrape.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY, redis_url: str | None = None,
                 keys: Keys | None = None) -> None:
        self.registry = registry
        self.sink_items = Counter("pulse_sink_items", "Items written to Redis by the flow's sink, by kind",
                                  ["kind"], registry=registry)
        self.dead_letters = Counter("pulse_dead_letters", "Items written to the dead-letter stream, by source",
                                    ["source"], registry=registry)
        self.lag = Histogram("pulse_event_lag_seconds", "Wall clock minus the event time of the newest mention of "
                             "each sink batch", buckets=LAG_BUCKETS, registry=registry)
        self.lag_newest = Gauge("pulse_event_lag_newest_seconds", "Event-time lag of the last sink batch with "
                                "mentions", registry=registry)
        self.redis_write = Histogram("pulse_redis_write_seconds", "Time of one sink batch's Redis pipeline "
                                     "(built and executed)", buckets=WRITE_BUCKETS, registry=registry)
        self.records = _RecordsCollector()
        registry.register(self.records)
        self.incidents: _IncidentsCollector | None = None
        if redis_url is not None and keys is not None:
            self.incidents = _IncidentsCollector(redis_url, keys)
            registry.register(self.incidents)

    def close(self) -> None:
        """Take every metric of this instance out of its registry."""
        for c in (self.sink_items, self.dead_letters, self.lag, self.lag_newest, self.redis_write, self.records,
                  self.incidents):
            if c is not None:
                self.registry.unregister(c)

    def observe_sink_batch(self, items: Iterable[Any], seconds: float) -> None:
        """One sink batch: its items by kind, dead letters by source, the newest mention's lag, its write time."""
        kinds: Tally[str] = Tally()
        newest = None
        for item in items:
            kind = item[0]
            kinds[kind] += 1
            if kind == "mention":
                if newest is None or item[2] > newest:
                    newest = item[2]
            elif kind == "dlq":
                self.dead_letters.labels(getattr(item[1], "source", "") or "unknown").inc()
            elif kind == "late":
                self.dead_letters.labels("flow").inc()
            elif kind == "stats":
                self.records.update(item[1], item[2])
        for kind, n in kinds.items():
            self.sink_items.labels(kind).inc(n)
        if newest is not None:
            lag = max(0.0, time.time() - newest / 1000)
            self.lag.observe(lag)
            self.lag_newest.set(lag)
        self.redis_write.observe(seconds)


_HEALTH: Health | None = None
_LOCK = threading.Lock()


def health() -> Health | None:
    """The process's health metrics, None unless :func:`enable` was called."""
    return _HEALTH


def enable(redis_url: str | None = None, keys: Keys | None = None) -> Health:
    """Start collecting the flow's health in this process (idempotent; the first call's Redis is kept)."""
    global _HEALTH
    with _LOCK:
        if _HEALTH is None:
            _HEALTH = Health(REGISTRY, redis_url, keys)
        return _HEALTH


def observe_sink_batch(items: list[Any], seconds: float) -> None:
    """Called by the Redis sink once per batch; does nothing unless health metrics are enabled."""
    h = _HEALTH
    if h is not None:
        h.observe_sink_batch(items, seconds)


def serve(port: int, data_dir: str | Path = ".pulse") -> None:
    """Expose Bytewax's per-step metrics and this registry on ``port`` for the next run of the flow.

    Bytewax's dataflow API serves ``/metrics`` (its own metrics and ``prometheus_client``'s registry) while
    the flow runs; it writes its description of the flow to ``data_dir/dataflow.json``. Raises ValueError when
    the port cannot be bound.
    """
    if not 0 < port < 65536:
        raise ValueError(f"--metrics-port: {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError as exc:
            raise ValueError(f"--metrics-port {port}: cannot listen there ({exc.strerror})") from None
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    os.environ["BYTEWAX_DATAFLOW_API_ENABLED"] = "1"
    os.environ["BYTEWAX_DATAFLOW_API_PORT"] = str(port)
    os.environ["BYTEWAX_DATAFLOW_API_CACHE_PATH"] = str(Path(data_dir).resolve())
    log.info("health metrics on http://0.0.0.0:%d/metrics while the flow runs", port)
