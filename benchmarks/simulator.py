"""Simulator and file-reader throughput: how fast the connectors make records, against same-process baselines.

Run: ``.venv/bin/python benchmarks/simulator.py [--mentions N]``. Prints one ``name=value`` line per figure:

- ``sim_mentions_per_s``: ``World.events`` generating N mentions (with replies, truth, incidents);
  baseline ``dumps_per_s``: orjson-serialising the same payloads (the least a sink does per record).
- ``sim_source_flow_per_s``: ``SimulatorSource`` through a bare Bytewax flow into a drop sink;
  baseline ``testing_source_flow_per_s``: a ``TestingSource`` of the same pre-built records.
- ``airline_rows_per_s``: ``read_records`` of the airline CSV with the shipped mapping (if the shared data is there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.files import read_records  # noqa: E402
from connectors.records import RawRecord  # noqa: E402
from connectors.simulator import SimulatorSource, World  # noqa: E402


class _Drop(StatelessSinkPartition[RawRecord]):
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def write_batch(self, items: list[RawRecord]) -> None:
        self.counter[0] += len(items)


class _DropSink(DynamicSink[RawRecord]):
    def __init__(self) -> None:
        self.counter = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Drop:
        return _Drop(self.counter)


def _flow_rate(source: Source[RawRecord]) -> tuple[float, int]:
    sink = _DropSink()
    flow = Dataflow("bench_sim")
    op.output("drop", op.input("read", flow, source), sink)
    started = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - started
    return sink.counter[0] / elapsed, sink.counter[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentions", type=int, default=200_000, help="mentions to generate")
    args = parser.parse_args()
    n = args.mentions

    started = time.perf_counter()
    records = list(World(seed=7).events(limit=n, kinds={"mention"}))
    sim_s = time.perf_counter() - started
    started = time.perf_counter()
    for r in records:
        orjson.dumps(r.payload)
    dumps_s = time.perf_counter() - started
    print(f"sim_mentions={n}")
    print(f"sim_seconds={sim_s:.2f}")
    print(f"sim_mentions_per_s={n / sim_s:.0f}")
    print(f"dumps_per_s={n / dumps_s:.0f}")
    print(f"sim_vs_dumps_ratio={dumps_s / sim_s:.3f}")

    sim_rate, count = _flow_rate(SimulatorSource(seed=7, limit=n, kinds={"mention"}))
    assert count == n
    base_rate, _ = _flow_rate(TestingSource(records, batch_size=1000))
    print(f"sim_source_flow_per_s={sim_rate:.0f}")
    print(f"testing_source_flow_per_s={base_rate:.0f}")
    print(f"sim_source_vs_testing_source={sim_rate / base_rate:.3f}")

    airline = ROOT.parent / "shared" / "data" / "airline" / "Tweets.csv"
    if airline.is_file():
        started = time.perf_counter()
        rows = read_records(airline, "csv", mapping="airline")
        print(f"airline_rows_per_s={len(rows) / (time.perf_counter() - started):.0f}")


if __name__ == "__main__":
    main()
