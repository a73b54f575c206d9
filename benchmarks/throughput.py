"""Throughput of the full flow on a bounded simulated replay, against a bare Bytewax baseline.

Prints one ``name=value`` line per figure:

- ``mentions_per_s``: simulator records -> the whole flow (parse, dedupe, classify, reply matching,
  windows, idempotent Redis writes) -> a real Redis, one worker;
- ``passthrough_per_s``: the same records through a bare map -> key -> stateful_map flow in the same
  process (the baseline; the ratio is what to compare across machines);
- ``ratio``: mentions_per_s / passthrough_per_s; ``peak_rss_mb``: peak resident memory of the process;
- ``listening_mentions_per_s`` / ``listening_ratio``: the same flow with the CRM step off (``PULSE_CRM=false``:
  analytics, models and alerts without cases), in the same process.

Run: ``.venv/bin/python benchmarks/throughput.py [--mentions 200000]``. Uses ``REDIS_URL`` or an embedded
redis-server under ``.pulse/bench`` (not the demo's), under a unique key prefix that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.records import RawRecord  # noqa: E402
from connectors.simulator import World  # noqa: E402
from stream.flow import build_flow  # noqa: E402
from stream.keys import Keys  # noqa: E402
from stream.metrics import totals  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.sinks import RedisSink  # noqa: E402


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
    flow = build_flow(TestingSource(records, batch_size=1000), settings, RedisSink(url, Keys(prefix)), redis_url=url)
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=200_000, help="simulated mentions to replay (default 200000)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument("--rate-per-hour", type=float, default=36_000.0,
                        help="simulated mentions per hour of event time (default 36000: a large brand's firehose; "
                             "per-window work is per minute, so sparse traffic costs more per mention)")
    args = parser.parse_args()
    url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    client = connect(url)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    with Progress(transient=True) as progress:
        task = progress.add_task("generate", total=4)
        world = World(seed=args.seed, rate_per_hour=args.rate_per_hour)
        records = list(world.events(limit=args.mentions, kinds={"mention"}))
        progress.update(task, advance=1, description="passthrough")
        base_s = passthrough(records)
        progress.update(task, advance=1, description="full flow")
        flow_s = full_flow(records, url, prefix)
        progress.update(task, advance=1, description="flow without the CRM step")
        listen_s = full_flow(records, url, prefix + "listen:", crm=False)
        progress.update(task, advance=1)
    counted = totals(client, Keys(prefix))
    assert counted["offered"] == len(records), counted
    for key in client.scan_iter(match=prefix + "*", count=5000):
        client.delete(key)
    n = len(records)
    print(f"mentions={n}")
    print(f"rate_per_hour={args.rate_per_hour:.0f}")
    print(f"mentions_per_s={n / flow_s:.0f}")
    print(f"passthrough_per_s={n / base_s:.0f}")
    print(f"ratio={base_s / flow_s:.4f}")
    print(f"listening_mentions_per_s={n / listen_s:.0f}")
    print(f"listening_ratio={base_s / listen_s:.4f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
