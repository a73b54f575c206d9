"""Scale-out: the full flow (CRM on) as one `pulse run` process and as a cluster of N (`-i/-a`).

Simulated mentions are appended to partitioned Redis input streams, then read by `pulse run --bounded`,
first by one process (the baseline, same run), then by ``--processes`` processes on the same machine.
Wall time runs from the start of the processes to the last one's exit (start-up included, the same for both).
Prints one ``name=value`` line per figure; ``speedup`` = cluster rate / one-process rate.

Run: ``.venv/bin/python benchmarks/cluster.py [--mentions 60000] [--processes 2] [--partitions 4]``
(``REDIS_URL`` if set, else an embedded redis-server under ``.pulse/bench``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.redis_streams import append_records, mark_eof  # noqa: E402
from connectors.simulator import World  # noqa: E402
from stream.keys import Keys  # noqa: E402
from stream.metrics import totals  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402

PULSE = [sys.executable, "-m", "stream.cli"]


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _source(url: str, prefix: str, partitions: int) -> str:
    if url.startswith("unix://"):
        return f"{url}?prefix={prefix}&partitions={partitions}"
    base = url.rstrip("/") if url.count("/") > 2 else f"{url}/0"
    return f"{base}/{prefix}?partitions={partitions}"


def run(url: str, client: object, payloads: list[bytes], processes: int, partitions: int) -> float:
    """Seconds for ``processes`` `pulse run` processes to drain the payloads (asserts every one counted)."""
    prefix = f"bench:cluster:{uuid.uuid4().hex[:8]}:"
    append_records(client, prefix, payloads, partitions=partitions)  # type: ignore[arg-type]
    mark_eof(client, prefix)  # type: ignore[arg-type]
    env = dict(os.environ, REDIS_URL=url, PULSE_PREFIX=prefix)
    args = [*PULSE, "run", "--source", _source(url, prefix, partitions), "--bounded"]
    addresses = ";".join(f"127.0.0.1:{p}" for p in _ports(processes))
    started = time.perf_counter()
    procs = [subprocess.Popen([*args, *(["-i", str(i), "-a", addresses] if processes > 1 else [])], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT) for i in range(processes)]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
    elapsed = time.perf_counter() - started
    counted = totals(client, Keys(prefix))  # type: ignore[arg-type]
    assert counted["accepted"] == len(payloads), counted
    for key in client.scan_iter(match=prefix + "*", count=5000):  # type: ignore[attr-defined]
        client.delete(key)  # type: ignore[attr-defined]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=60_000, help="simulated mentions (default 60000)")
    parser.add_argument("--processes", type=int, default=2, help="processes in the cluster (default 2)")
    parser.add_argument("--partitions", type=int, default=4, help="Redis input stream partitions (default 4)")
    args = parser.parse_args()
    url = ensure_redis_url(os.environ.get("REDIS_URL"), ROOT / ".pulse" / "bench")
    client = connect(url)
    payloads = [orjson.dumps(r.payload) for r in World(seed=7, rate_per_hour=36_000).events(
        limit=args.mentions, kinds={"mention"})]
    with Progress(transient=True) as progress:
        task = progress.add_task("one process", total=2)
        one = run(url, client, payloads, 1, args.partitions)
        progress.update(task, advance=1, description=f"{args.processes} processes")
        many = run(url, client, payloads, args.processes, args.partitions)
        progress.update(task, advance=1)
    print(f"mentions={len(payloads)}")
    print(f"one_process_per_s={len(payloads) / one:.0f}")
    print(f"cluster_processes={args.processes}")
    print(f"cluster_per_s={len(payloads) / many:.0f}")
    print(f"speedup={one / many:.2f}")
    print(f"cpus={os.cpu_count()}")


if __name__ == "__main__":
    main()
