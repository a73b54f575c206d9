"""Throughput of the full flow: dense and sparse streams of the same mentions, real files, and a bare baseline.

Prints one ``name=value`` line per figure:

- ``passthrough_per_s``: the records through a bare map -> key -> stateful_map flow (the baseline);
- ``dense_per_s`` / ``sparse_per_s`` (and ``listening_`` without the CRM step): the *same* mentions (texts,
  authors, replies) through the whole flow into a real Redis, once packed into one hour of event time
  (dense) and once spread over 500 brands x 3 channels and 18 months in bursts (sparse, as real brand
  streams are); ``sparse_dense_ratio``: sparse_per_s / dense_per_s (target >= 0.8);
- ``airline_per_s``, ``twcs_sample_per_s``: the real files of ``../shared/data/`` through the same flow;
- ``sparse_9mo_per_s`` / ``sparse_36mo_per_s`` (part ``span``): the sparse stream spread over 9 and 36 months
  instead of 18, with the CRM; ``span_36_9_ratio``: their ratio (1.0 when the cost of a mention does not follow
  the event time between mentions);
- per run with the CRM, the work its event time reaches (``*_alerts``: alert states appended, SLA and spike;
  ``*_sla_breaches``, ``*_cases_expired``, ``*_cases_resolved``: the timers' work; a stream packed into one hour
  reaches none of it);
- each ``*_ratio`` to the baseline; ``peak_rss_mb``.

Run: ``.venv/bin/python benchmarks/throughput.py [--mentions 100000] [--only dense,sparse,span,real]``. Uses
``REDIS_URL`` or an embedded redis-server under ``.pulse/bench`` (not the demo's), under unique key prefixes
that are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
import orjson
import redis
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.files import read_records  # noqa: E402
from connectors.records import RawRecord  # noqa: E402
from crm.keys import CrmKeys  # noqa: E402
from stream.flow import build_flow  # noqa: E402
from stream.keys import Keys  # noqa: E402
from stream.metrics import totals  # noqa: E402
from stream.redisconn import connect, delete_prefix, ensure_redis_url  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.sinks import RedisSink  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
START = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR, DAY = 3_600_000, 86_400_000
_TEXTS = ("my router keeps dropping wifi since this morning, any fix?", "love the new app update, great job",
          "@support still waiting for my refund, this is the third time i ask", "is the outage fixed yet???",
          "thanks for the quick help yesterday", "why was my card charged twice", "the game lags in ranked again",
          "can i change my flight to tomorrow", "worst customer service ever", "new feature looks neat")


class _DropPartition(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


class DropSink(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DropPartition:
        return _DropPartition()


def passthrough(records: list[RawRecord]) -> float:
    flow = Dataflow("passthrough")
    s = op.input("read", flow, TestingSource(records, batch_size=1000))
    m = op.map("touch", s, lambda r: r)
    k = op.key_on("key", m, lambda r: str(r.offset % 256))
    out = op.stateful_map("count", k, lambda state, r: ((state or 0) + 1, r))
    op.output("drop", out, DropSink())
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started


def full_flow(records: list[RawRecord], url: str, prefix: str, crm: bool = True) -> float:
    settings = Settings(prefix=prefix, crm=crm)
    flow = build_flow(TestingSource(records, batch_size=1000), settings, RedisSink(url, Keys(prefix), settings),
                      redis_url=url)
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started


def conversations(n: int, seed: int = 7, days: int = 548) -> list[dict]:
    """``n`` mentions (about a fifth of them brand replies) of 500 brands x 3 channels, in bursts.

    Each series gets a few bursts at random moments of ``days`` (18 months); a burst is a handful of mentions minutes
    apart, some answered by the brand within the hour. ``ts`` is the sparse time; ``order`` its rank.
    """
    rng = random.Random(seed)
    span = days * DAY
    series = [(f"brand{b:03d}", ch) for b in range(500) for ch in ("twitter", "facebook", "forum")]
    rows: list[dict] = []
    while len(rows) < n:
        brand, channel = rng.choice(series)
        t = START + rng.randrange(span)
        for _ in range(rng.randint(1, 12)):
            t += rng.randint(5_000, 15 * 60_000)
            i = len(rows)
            rows.append({"id": f"{channel}:{i}", "channel": channel, "brand": brand, "author": f"u{rng.randrange(20_000)}",
                         "text": rng.choice(_TEXTS), "ts": t})
            if rng.random() < 0.25:
                rows.append({"id": f"{channel}:r{i}", "channel": channel, "brand": brand, "author": f"{brand}_care",
                             "text": "we're on it, please DM us", "ts": t + rng.randint(60_000, HOUR),
                             "from_brand": True, "in_reply_to": f"{channel}:{i}"})
    rows = rows[:n]
    rows.sort(key=lambda r: r["ts"])
    return rows


def as_records(rows: list[dict], source: str, dense: bool) -> list[RawRecord]:
    """The rows in their order; ``dense`` packs their times into one hour (same order, same gaps' ranks)."""
    out = []
    step = HOUR // max(1, len(rows))
    for i, row in enumerate(rows):
        if dense:
            row = dict(row, ts=START + i * step)
        out.append(RawRecord(source, i, orjson.dumps(row), "jsonl"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=100_000, help="mentions in each stream (default 100000)")
    parser.add_argument("--only", default="dense,sparse,span,real",
                        help="comma-separated parts to run: dense, sparse, span (sparse over 9 and 36 months), "
                             "real (default all)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    client = connect(url)
    rows = conversations(args.mentions)
    runs: list[tuple[str, list[RawRecord], bool]] = []
    if "dense" in parts:
        runs += [("dense", as_records(rows, "bench:dense", True), True),
                 ("listening_dense", as_records(rows, "bench:dense", True), False)]
    if "sparse" in parts:
        runs += [("sparse", as_records(rows, "bench:sparse", False), True),
                 ("listening_sparse", as_records(rows, "bench:sparse", False), False)]
    if "span" in parts:
        runs += [("sparse_9mo", as_records(conversations(args.mentions, days=274), "bench:s9", False), True),
                 ("sparse_36mo", as_records(conversations(args.mentions, days=1096), "bench:s36", False), True)]
    if "real" in parts:
        if DATA.is_dir():
            runs += [("airline", read_records(DATA / "airline" / "Tweets.csv", "csv",
                                              ROOT / "connectors" / "mappings" / "airline.toml"), True),
                     ("twcs_sample", read_records(DATA / "twcs" / "twcs_sample.csv", "twcs"), True)]
        else:
            print(f"# {DATA} is absent: no real-file figures", file=sys.stderr)
    results: dict[str, float] = {}
    work: dict[str, dict[str, int]] = {}
    prefixes: list[str] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("passthrough", total=len(runs) + 1)
        base_s = passthrough(as_records(rows, "bench:base", True))
        progress.update(task, advance=1)
        for name, records, crm in runs:
            progress.update(task, description=name)
            prefix = f"bench:{uuid.uuid4().hex[:8]}:"
            prefixes.append(prefix)
            seconds = full_flow(records, url, prefix, crm=crm)
            counted = totals(client, Keys(prefix))
            assert counted["offered"] == len(records), (name, counted)
            results[name] = len(records) / seconds
            if crm:
                work[name] = reached(client, prefix)
            progress.update(task, advance=1)
    for prefix in prefixes:
        _drop(client, prefix)
    n = len(rows)
    print(f"mentions={n}")
    print(f"passthrough_per_s={n / base_s:.0f}")
    for name, rate in results.items():
        print(f"{name}_per_s={rate:.0f}")
        print(f"{name}_ratio={rate / (n / base_s):.5f}")
    for name, counts in work.items():
        for what, value in counts.items():
            print(f"{name}_{what}={value}")
    if "sparse_9mo" in results and "sparse_36mo" in results:
        print(f"span_36_9_ratio={results['sparse_36mo'] / results['sparse_9mo']:.3f}")
    for kind in ("", "listening_"):
        if f"{kind}dense" in results and f"{kind}sparse" in results:
            print(f"{kind}sparse_dense_ratio={results[f'{kind}sparse'] / results[f'{kind}dense']:.3f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def reached(client: redis.Redis, prefix: str) -> dict[str, int]:
    """The work a run's event time reached: alert states appended, and the CRM timers' breaches and closed cases."""
    stats = {k.decode(): int(v) for k, v in client.hgetall(CrmKeys(prefix).cases_stats).items()}
    return {"alerts": int(client.xlen(Keys(prefix).alerts)), "sla_breaches": stats.get("sla_breaches", 0),
            "cases_expired": stats.get("expired", 0), "cases_resolved": stats.get("resolved", 0)}


def _drop(client: redis.Redis, prefix: str) -> None:
    delete_prefix(client, prefix)


if __name__ == "__main__":
    main()
