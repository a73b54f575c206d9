"""Server-side render time of every dashboard page (AppTest) on 7 days of minute windows, 5 brands x 6 channels.

The dataset: the CRM of the simulated world (1,000 customers, the demo's agents and KB), a few thousand
simulated mentions through the real flow (cases, churn scores, latest mentions, prequential metrics), then
7 days of per-minute windows (with hour and day roll-ups, author HyperLogLogs and first response times) for
5 brands x 6 channels written through the flow's own Redis writer (``stream.sinks.RedisWriter``): 302,400
minute windows. Two spike incidents and two model checkpoints complete it.

Each page is run by Streamlit's ``AppTest`` with the sidebar filters (defaults: all brands, last hour), its
query caches cleared before every run, so every figure is a refresh that reads Redis; the figure is the median
of ``--runs`` runs (after one warm-up run). ``{page}_ms`` is the server-side render: the page script's own
time (filters, Redis reads, figures, charts and tables built); ``{page}_apptest_ms`` adds AppTest's harness
(``apptest_empty_ms`` is that harness on a page that draws one title). The baseline, measured in the same
process, is the plain pipelined read of the data a default view needs — one ``HGETALL`` per minute window of
the last hour of all 30 brand × channel pairs (``stream.metrics.windows_between``); ``{page}_ratio`` = page /
baseline. Every page (and wall view) is timed again with the time filter on the last 7 days
(``{page}_7d_ms``; ``worst_default_ms`` and ``worst_7d_ms`` are the slowest of each); the pages that follow the
time filter also over 24 h. Prints one ``name=value`` line per figure (milliseconds).

Run: ``.venv/bin/python benchmarks/dashboard.py [--runs 5] [--days 7]``. Uses ``REDIS_URL`` or an embedded
redis-server under ``.pulse/bench``, under a unique key prefix that is deleted afterwards (``--keep`` keeps
it, ``--reuse PREFIX`` times the pages again on it; ``--pages`` picks pages).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from bytewax.testing import TestingSource, run_main  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from connectors.simulator import CHANNELS, World  # noqa: E402
from models import registry  # noqa: E402
from stream.demo_setup import seed_demo_crm  # noqa: E402
from stream.flow import build_flow  # noqa: E402
from stream.keys import GRANULARITIES, Keys  # noqa: E402
from stream.metrics import windows_between  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402
from stream.schema import Alert  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.sinks import RedisSink, RedisWriter  # noqa: E402
from stream.sketch import bucket_of  # noqa: E402

EXTRA_BRANDS = ("acme", "globex")
PAGES = ("command_centre", "incidents_page", "service_page", "customers_page", "channels_page", "reports_page",
         "models_page", "audit_page")
WALL_VIEWS = ("now", "incidents", "channels", "desk")
#: pages that follow the time filter, timed again over longer ranges (minutes)
RANGED = ("command_centre", "channels_page", "reports_page")
#: The key that signs the benchmark's model checkpoints (the flow's and the dashboard's, through PULSE_MODEL_KEY).
MODEL_KEY = "bench-dashboard-model-key"
RUNNER = """
import sys
import time
sys.path.insert(0, {root!r})
import streamlit as st
from dashboard.data import DashboardSettings
from dashboard.filters import filter_panel
from dashboard import {page}
started = time.perf_counter()
settings = DashboardSettings.from_env()
with st.sidebar:
    filters = filter_panel(settings)
{page}.render(settings, filters)
st.session_state["bench_ms"] = (time.perf_counter() - started) * 1000
"""
EMPTY = """
import time
import streamlit as st
started = time.perf_counter()
st.title("Empty")
st.session_state["bench_ms"] = (time.perf_counter() - started) * 1000
"""


def build_dataset(url: str, prefix: str, days: int, mentions: int) -> dict[str, Any]:
    """Fill ``prefix``; returns counts."""
    client = connect(url)
    keys = Keys(prefix)
    world = World(seed=7)
    seed_demo_crm(url, prefix, world, int(world.start.timestamp() * 1000))
    records = list(world.events(limit=mentions, kinds={"mention"}))
    run_main(build_flow(TestingSource(records, batch_size=1000),
                        Settings(prefix=prefix, flush_seconds=0.2, model_key=MODEL_KEY),
                        RedisSink(url, Keys(prefix)), redis_url=url))
    brands = sorted(b.decode() for b in client.smembers(keys.brands)) + list(EXTRA_BRANDS)
    newest = max(int(s) for b in brands for c in CHANNELS
                 for _, s in client.zrevrange(keys.windows_index(b, c, "m"), 0, 0, withscores=True)) \
        if client.smembers(keys.brands) else int(world.start.timestamp() * 1000)
    end = newest - newest % 60_000
    start = end - days * 1440 * 60_000 + 60_000
    writer = RedisWriter(client, keys, minute_retention_s=max(7, days + 1) * 86_400)
    rng = random.Random(7)
    n_windows = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("windows", total=len(brands) * len(CHANNELS) * days * 1440)
        for brand in brands:
            for channel in CHANNELS:
                hours: dict[int, dict[str, int]] = {}
                day_acc: dict[int, dict[str, int]] = {}
                batch: list[tuple[Any, ...]] = []
                rts: dict[str, float] = {}
                rtt: dict[str, float] = {}
                for ms in range(start, end + 60_000, 60_000):
                    counters = _counters(rng, ms)
                    authors = [f"{channel}-{rng.randrange(5_000)}" for _ in range(counters["authors"])]
                    batch.append(("windows", brand, channel, [("m", ms, counters, authors, True)]))
                    for gran, acc in (("h", hours), ("d", day_acc)):
                        length = GRANULARITIES[gran]
                        slot = acc.setdefault(ms - ms % length, dict.fromkeys(counters, 0))
                        for k, v in counters.items():
                            slot[k] += v
                    if ms % 300_000 == 0:  # a first response every five minutes
                        mid = f"{channel}:bench-{brand}-{ms}"
                        rts[mid] = float(rng.randrange(60_000, 3_600_000))
                        rtt[mid] = float(ms)
                    if len(batch) >= 2_000:
                        writer.write(batch)
                        n_windows += len(batch)
                        progress.advance(task, len(batch))
                        batch.clear()
                for gran, acc in (("h", hours), ("d", day_acc)):
                    batch += [("windows", brand, channel, [(gran, ms, c, [], True)]) for ms, c in acc.items()]
                writer.write(batch)
                minutes = sum(1 for b in batch if b[3][0][0] == "m")
                n_windows += minutes
                progress.advance(task, minutes)
                pipe = client.pipeline(transaction=False)
                sketches: dict[str, dict[str, int]] = {}
                for mid, value in rts.items():  # the flow's hour and day sketches of the same response times
                    at = int(rtt[mid])
                    for gran in ("h", "d"):
                        skey = keys.sketch(brand, channel, keys.bucket_id(gran, at - at % GRANULARITIES[gran]), gran)
                        cell = sketches.setdefault(skey, {})
                        cell[bucket_of(value)] = cell.get(bucket_of(value), 0) + 1
                for skey, counts in sketches.items():
                    pipe.hset(skey, mapping=counts)  # type: ignore[arg-type]
                pipe.zadd(keys.response_times(brand, channel), rts)
                pipe.zadd(keys.response_times_at(brand, channel), rtt)
                pipe.sadd(keys.brands, brand)
                pipe.sadd(keys.channels(brand), channel)
                pipe.execute()
    live = dict(id=f"spike:acme:twitter:{Keys.minute_id(end - 20 * 60_000)}", kind="spike", brand="acme",
                channel="twitter", topic=None, window_start=datetime.fromtimestamp((end - 20 * 60_000) / 1000,
                                                                                   tz=UTC).isoformat(),
                observed=40, expected=6.0, score=0.99, severity="high", sample_ids=(), top_terms=("outage", "login"))
    writer.write([("alert", Alert(**live, message="open: acme twitter at 40 mentions, 6.0 expected"))])
    for n in (1, 2):
        registry.save(client, prefix, "sentiment", registry.new_model("sentiment"), {"accuracy": 0.6 + n / 10},
                      key=MODEL_KEY.encode())
    return {"brands": len(brands), "channels": len(CHANNELS), "minute_windows": n_windows, "mentions": len(records)}


def _counters(rng: random.Random, ms: int) -> dict[str, int]:
    hour = datetime.fromtimestamp(ms / 1000, tz=UTC).hour
    mentions = max(0, int(rng.gauss(6 if 8 <= hour < 22 else 2, 2)))
    queries = rng.randint(0, mentions)
    negative = rng.randint(0, mentions)
    positive = rng.randint(0, mentions - negative)
    replies = rng.randint(0, queries)
    return {"mentions": mentions, "queries": queries, "comments": mentions - queries, "negative": negative,
            "neutral": mentions - negative - positive, "positive": positive, "replies": replies,
            "response_ms_sum": replies * rng.randrange(60_000, 1_800_000), "response_count": replies,
            "unanswered": 0, "authors": max(0, mentions - rng.randint(0, 2)), "late": 0}


def _time(script: str, runs: int, state: dict[str, Any] | None = None, query: dict[str, str] | None = None
          ) -> tuple[float, float]:
    """Median (script ms, AppTest ms) of ``runs`` cold runs of ``script``, after one warm-up run."""
    script_ms, total_ms = [], []
    for _ in range(runs + 1):  # the first run warms imports and the model cache; it is not counted
        st.cache_data.clear()
        at = AppTest.from_string(script, default_timeout=300)
        for k, v in (state or {}).items():
            at.session_state[k] = v
        at.query_params.update(query or {})
        t = time.perf_counter()
        at.run()
        total_ms.append((time.perf_counter() - t) * 1000)
        if at.exception:
            raise RuntimeError(f"page failed: {at.exception[0].value}")
        script_ms.append(float(at.session_state["bench_ms"]))
    return statistics.median(script_ms[1:]), statistics.median(total_ms[1:])


def _baseline(url: str, prefix: str, runs: int) -> float:
    """The plain pipelined read of the last hour of minute windows of every brand x channel (median ms)."""
    client = connect(url)
    keys = Keys(prefix)
    newest = max(int(s) for b in client.smembers(keys.brands) for c in CHANNELS
                 for _, s in client.zrevrange(keys.windows_index(b.decode(), c, "m"), 0, 0, withscores=True))
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        rows = windows_between(client, keys, newest - 59 * 60_000, newest, "m")
        times.append((time.perf_counter() - t) * 1000)
    assert len(rows) >= 60 * 30 * 0.5, len(rows)  # quiet night minutes have no window
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per page (median reported).")
    parser.add_argument("--days", type=int, default=7, help="Days of minute windows.")
    parser.add_argument("--mentions", type=int, default=4_000, help="Simulated mentions through the flow.")
    parser.add_argument("--keep", action="store_true", help="Keep the data (prints the prefix).")
    parser.add_argument("--reuse", metavar="PREFIX", help="Time the pages on the data a --keep run left under PREFIX "
                        "(not deleted afterwards) instead of building it again.")
    parser.add_argument("--pages", help="Only these pages (comma-separated, e.g. command_centre,wall).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    prefix = args.reuse or f"bench:dash:{uuid.uuid4().hex[:8]}:"
    client = connect(url)
    os.environ.update(REDIS_URL=url, PULSE_PREFIX=prefix, PULSE_DASHBOARD_REFRESH="2", PULSE_MODEL_KEY=MODEL_KEY)
    os.environ.pop("PULSE_DASHBOARD_TOKEN", None)
    try:
        t = time.perf_counter()
        if not args.reuse:
            counts = build_dataset(url, prefix, args.days, args.mentions)
            for k, v in counts.items():
                print(f"{k}={v}")
            print(f"seed_s={time.perf_counter() - t:.1f}")
        print(f"redis_used_mb={client.info('memory')['used_memory'] / 2**20:.0f}")
        base = _baseline(url, prefix, args.runs)
        print(f"baseline_ms={base:.1f}")
        _, empty_total = _time(EMPTY, args.runs)
        print(f"apptest_empty_ms={empty_total:.1f}")
        chosen = set(args.pages.split(",")) if args.pages else None
        targets = [(page, page, None) for page in PAGES] + [(f"wall_{v}", "wall", {"view": v}) for v in WALL_VIEWS]
        worst = {"default": 0.0, "7d": 0.0}
        for name, page, query in targets:
            if chosen is not None and name not in chosen and page not in chosen:
                continue
            script = RUNNER.format(root=str(ROOT), page=page)
            ms, total = _time(script, args.runs, query=query)
            worst["default"] = max(worst["default"], ms)
            print(f"{name}_ms={ms:.1f}")
            print(f"{name}_ratio={ms / base:.2f}")
            print(f"{name}_apptest_ms={total:.1f}")
            if page in RANGED:
                ms_24h, _ = _time(script, args.runs, state={"f_period": 1440}, query=query)
                print(f"{name}_24h_ms={ms_24h:.1f}")
            # every page over the last 7 days (the pages that do not follow the time filter read the same)
            ms_7d, _ = _time(script, args.runs, state={"f_period": 10080}, query=query)
            worst["7d"] = max(worst["7d"], ms_7d)
            print(f"{name}_7d_ms={ms_7d:.1f}")
            print(f"{name}_7d_ratio={ms_7d / base:.2f}")
        print(f"worst_default_ms={worst['default']:.1f}")
        print(f"worst_7d_ms={worst['7d']:.1f}")
    finally:
        if args.keep or args.reuse:
            print(f"prefix={prefix}")
        else:
            batch = []
            for key in client.scan_iter(match=prefix + "*", count=5_000):
                batch.append(key)
                if len(batch) >= 2_000:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        client.close()


if __name__ == "__main__":
    main()
