"""Redis memory under a long replay: flat once event-time retention is reached.

Replays ``--mentions`` simulated mentions (connectors/simulator.py, with its calls feed and churn outcomes)
through the flow (stream/) into a private embedded redis-server (``.pulse/bench-memory``, never the demo's
or a shared one, so ``used_memory`` is this run's alone), spread over enough event time that every
retention of :mod:`stream.retention` (windows, roll-ups, feedback inputs, calls, alerts, timelines) and
every size cap (pending replies, dead letters, latest, ...) is reached, and samples ``INFO memory``
``used_memory`` every ``--every`` mentions. Prints one ``name=value`` line per figure:

- ``mentions``, ``records``, ``event_days``: what was replayed and over how much event time;
- ``baseline_mb``: memory after the first sample (the same process's baseline);
- ``used_mb_25`` / ``_50`` / ``_75`` / ``_100``: memory at 25/50/75/100 % of the mentions;
- ``ratio_100_to_50``: memory at the end over memory at half way (1.0 = flat);
- ``slope_last_half_mb_per_100k``: least-squares slope of memory over the last half of the samples, in MB per
  100,000 mentions (0 = flat); ``slope_first_quarter_mb_per_100k`` for comparison while keys fill;
- ``keys_end``: keys in the database at the end.

The retentions are shortened (``--minute-retention-hours``; hours keep 30x, days 365x as long) so that a
million mentions cover several day-window retentions; the flow is listening-only (``PULSE_CRM=false``):
the CRM's keys are bounded by their own settings (see README "Redis keys"); ``--crm`` runs the CRM step too,
with no agents (cases leave ``open`` only by expiring after ``stale_case_days``), every author a prospect
(forgotten ``prospect_retention_days`` after their last mention), the sample rules' tasks
(``task_retention_days``), all at the CRM's defaults, and resolved cases kept ``--case-retention-days``.

Run: ``nice -n 10 .venv/bin/python benchmarks/memory.py [--mentions 1000000] [--every 20000] [--crm]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bytewax.testing import TestingSource, run_main
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.records import RawRecord  # noqa: E402
from connectors.simulator import World  # noqa: E402
from stream.flow import build_flow  # noqa: E402
from stream.keys import Keys  # noqa: E402
from stream.redisconn import connect, embedded_url  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.sinks import RedisSink  # noqa: E402

PREFIX = "benchmem:"


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope (bytes per mention) of ``(mentions, used_memory)`` points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=1_000_000, help="mentions to replay (default 1000000)")
    parser.add_argument("--every", type=int, default=20_000, help="sample used_memory every N mentions (default 20000)")
    parser.add_argument("--rate-per-hour", type=float, default=40.0,
                        help="simulated posts per hour (default 40: a million mentions span about 680 days)")
    parser.add_argument("--minute-retention-hours", type=float, default=12.0,
                        help="minute-window retention in event hours (hours 30x, days 365x; default 12)")
    parser.add_argument("--crm", action="store_true",
                        help="run the CRM step too (every author a prospect, no agents; the CRM's default "
                             "retentions; closed cases kept --case-retention-days)")
    parser.add_argument("--case-retention-days", type=float, default=60.0,
                        help="with --crm: event days a resolved case is kept (default 60)")
    args = parser.parse_args()
    if args.mentions < 1 or args.every < 1:
        parser.error("--mentions and --every must be >= 1")
    url = embedded_url(ROOT / ".pulse" / "bench-memory")
    client = connect(url)
    for key in client.scan_iter(f"{PREFIX}*", count=10_000):
        client.delete(key)
    client.execute_command("MEMORY", "PURGE")
    crm_config = ""
    if args.crm:
        crm_toml = ROOT / ".pulse" / "bench-memory" / "crm.toml"
        crm_toml.write_text(f"[crm]\ncase_retention_days = {args.case_retention_days}\n")
        crm_config = str(crm_toml)
    settings = Settings(prefix=PREFIX, crm=args.crm, minute_retention_seconds=args.minute_retention_hours * 3600,
                        pending_keep=50_000, flush_seconds=0.5, crm_config=crm_config)
    world = World(seed=11, rate_per_hour=args.rate_per_hour, growth_per_day=0.0, n_customers=1000)
    samples: list[tuple[int, int]] = []
    first_ts: list[str] = []
    last_ts: list[str] = []
    records = [0]

    def replay(progress: Progress, task: object) -> Iterator[RawRecord]:
        mentions = 0
        for record in world.events():
            records[0] += 1
            if record.fmt == "mention":
                if mentions >= args.mentions:
                    return
                mentions += 1
                ts = str(record.payload["ts"])
                if not first_ts:
                    first_ts.append(ts)
                last_ts[:] = [ts]
                if mentions % args.every == 0:
                    samples.append((mentions, int(client.info("memory")["used_memory"])))
                    progress.update(task, completed=mentions)  # type: ignore[arg-type]
            yield record

    started = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("replaying", total=args.mentions)
        flow = build_flow(TestingSource(replay(progress, task), batch_size=1000), settings,
                          RedisSink(url, Keys(PREFIX), settings), redis_url=url)
        run_main(flow)
    seconds = time.perf_counter() - started
    samples.append((args.mentions, int(client.info("memory")["used_memory"])))
    mb = 1024 * 1024

    def at(frac: float) -> float:
        want = args.mentions * frac
        return min(samples, key=lambda p: abs(p[0] - want))[1] / mb

    from datetime import datetime
    days = (datetime.fromisoformat(last_ts[0]) - datetime.fromisoformat(first_ts[0])).total_seconds() / 86400
    half = [p for p in samples if p[0] >= args.mentions / 2]
    quarter = [p for p in samples if p[0] <= args.mentions / 4]
    print(f"mentions={args.mentions}")
    print(f"records={records[0]}")
    print(f"event_days={days:.0f}")
    print(f"seconds={seconds:.0f}")
    print(f"baseline_mb={samples[0][1] / mb:.1f}")
    for frac in (0.25, 0.5, 0.75, 1.0):
        print(f"used_mb_{int(frac * 100)}={at(frac):.1f}")
    print(f"ratio_100_to_50={at(1.0) / at(0.5):.3f}")
    print(f"slope_first_quarter_mb_per_100k={_slope(quarter) * 100_000 / mb:.2f}")
    print(f"slope_last_half_mb_per_100k={_slope(half) * 100_000 / mb:.2f}")
    print(f"keys_end={client.dbsize()}")
    families: dict[str, int] = {}
    for key in client.scan_iter(f"{PREFIX}*", count=10_000):
        name = key.decode()[len(PREFIX):]
        family = name.split(":", 1)[0].split("{", 1)[0] if ":" in name else name
        families[family] = families.get(family, 0) + 1
    print("keys_by_family=" + ",".join(f"{f}:{n}" for f, n in sorted(families.items(), key=lambda x: -x[1])[:15]))
    print("series_mb=" + ",".join(f"{m}:{u / mb:.1f}" for m, u in samples))
    for key in client.scan_iter(f"{PREFIX}*", count=10_000):
        client.delete(key)


if __name__ == "__main__":
    main()
