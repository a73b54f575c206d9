"""Faults, proven: a replay SIGKILLed at random points and resumed, and a replay through a Redis outage, each
end with every key identical to an uninterrupted run of the same file.

1. Simulated mentions (the demo's world, its customers and team seeded in the CRM) go to a JSONL file, with
   an agent's label (the simulated truth) a few records after every ``LABEL_EVERY``-th customer mention, so
   the text models learn, are checkpointed and monitored while the flow is killed.
2. Reference: ``pulse replay`` of the file, uninterrupted, under one key prefix.
3. Crash: the same replay under another prefix with ``--recovery-dir``, SIGKILLed ``--kills`` times at
   seeded random points (by records offered so far) and started again each time with the same directory.
4. Outage (``--outage-seconds``): the same replay into a private ``redis-server`` (a free port, its own
   directory, AOF ``everysec``) that is shut down mid-run and started again from its AOF; time to detect
   (stop -> the flow's first "redis unreachable" line) and to recover (restart -> "redis back").

Every key under each prefix is dumped and normalised (:func:`dump_keys`), and the keys whose content differs
from the reference are counted. ``pulse metrics --json`` (without ``generated_at``) is compared too.

    nice -n 10 .venv/bin/python benchmarks/faults.py                 # 100,000 mentions, 10 kills, 10 s outage
    .venv/bin/python benchmarks/faults.py --mentions 5000 --kills 2  # a quick look

Output: one ``name=value`` line per figure.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.simulator import World  # noqa: E402
from stream.demo_setup import DEMO_CRM_CONFIG, seed_demo_crm  # noqa: E402
from stream.keys import Keys  # noqa: E402
from stream.metrics import totals  # noqa: E402
from stream.redisconn import delete_prefix  # noqa: E402

PULSE = [sys.executable, "-m", "stream.cli"]
#: The simulated world of every run here (a fixed start: the run id and every event time follow from it).
WORLD_START = datetime(2024, 3, 4, 6, 40, tzinfo=UTC)
#: The flow with the CRM on (the demo's CRM settings: cases auto-resolve, agents free up), short epochs so a
#: kill finds recent snapshots.
FLOW_ENV = {"PULSE_CRM": "true", "PULSE_CRM_CONFIG": str(DEMO_CRM_CONFIG), "PULSE_EPOCH_SECONDS": "0.2",
            "PULSE_CHECKPOINT_EVERY": "20"}
#: One customer mention in this many gets a label (rotating over the three text models)...
LABEL_EVERY = 25
#: ... this many records after it.
LABEL_LAG = 7
_TEXT_MODELS = ("sentiment", "intent", "department")

# Fields whose content is wall-clock time by design (when a dead letter was received, an alert written): the
# comparison drops them; everything else must be equal byte for byte, streams' ids included (the flow's streams take
# ids that follow their last entry, not the clock: alerts, dead letters, outboxes, rule hits).
_WALL_FIELDS = {b"ts_received", b"written_ms"}


def write_sim_file(path: Path, mentions: int, seed: int = 11) -> Path:
    """``mentions`` simulated mentions (customers, brands' replies) of the world ``seed``, one JSON per line,
    and labels for some of them (:data:`LABEL_EVERY`); returns ``path``."""
    world = World(seed=seed, start=WORLD_START)
    due: list[tuple[int, bytes]] = []  # (record number it follows, label line)
    n = labelled = 0
    with path.open("wb") as fh:
        for rec in world.events(limit=mentions, kinds={"mention"}):
            payload = rec.payload
            fh.write(orjson.dumps(payload) + b"\n")
            n += 1
            meta = payload.get("meta") or {}
            if not payload.get("from_brand") and n % LABEL_EVERY == 0:
                model = _TEXT_MODELS[labelled % len(_TEXT_MODELS)]
                label = meta.get(f"truth_{model}")
                if label:
                    due.append((n + LABEL_LAG, orjson.dumps({"type": "feedback", "mention_id": payload["id"],
                                                             "model": model, "label": label, "author": "agent"})))
                    labelled += 1
            while due and due[0][0] <= n:  # dated as the record it follows (a replay orders by event time)
                fh.write(due.pop(0)[1][:-1] + b',"ts":' + orjson.dumps(payload["ts"]) + b"}\n")
        for _, line in due:
            fh.write(line[:-1] + b',"ts":' + orjson.dumps(payload["ts"]) + b"}\n")
    return path


def labels_in(path: Path) -> int:
    """Label lines in a file written by :func:`write_sim_file`."""
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.startswith(b'{"type":"feedback"'))


def seed_crm(redis_url: str, prefix: str, seed: int = 11) -> None:
    """The demo's customers, KB and team, as of the world's start (the same before every run)."""
    seed_demo_crm(redis_url, prefix, World(seed=seed, start=WORLD_START), now_ms=int(WORLD_START.timestamp() * 1000))


def flow_env(redis_url: str, prefix: str, data_dir: Path | None = None) -> dict[str, str]:
    """The replays' environment; ``data_dir`` None keeps the default (``.pulse``: its trained models are cached)."""
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix, **FLOW_ENV)
    if data_dir is not None:
        env["PULSE_DATA_DIR"] = str(data_dir)
    return env


def replay_command(path: Path, recovery: Path | None) -> list[str]:
    cmd = [*PULSE, "replay", str(path), "--no-progress"]
    return cmd + ["--recovery-dir", str(recovery)] if recovery is not None else cmd


def replay(path: Path, redis_url: str, prefix: str, data_dir: Path | None, recovery: Path | None = None,
           timeout: float = 7200) -> None:
    """One replay to the end (raises with its stderr on failure)."""
    proc = subprocess.run(replay_command(path, recovery), env=flow_env(redis_url, prefix, data_dir),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"pulse replay failed ({proc.returncode}): {proc.stderr[-3000:]}")


def metrics_doc(redis_url: str, prefix: str) -> dict[str, Any]:
    """``pulse metrics --json`` without its ``generated_at``."""
    out = subprocess.run([*PULSE, "metrics", "--json"], env=dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix),
                         capture_output=True, text=True, timeout=300, check=True).stdout
    doc = orjson.loads(out)
    doc.pop("generated_at")
    return doc


def _offered(client: redis.Redis, prefix: str) -> int:
    try:
        return int(totals(client, Keys(prefix))["offered"])
    except redis.RedisError:
        return -1


@dataclass
class KilledRun:
    kills: int = 0
    restarts: int = 0
    offered_at_kill: list[int] = field(default_factory=list)


def replay_with_kills(path: Path, mentions: int, redis_url: str, prefix: str, data_dir: Path | None, recovery: Path,
                      kills: int, seed: int = 7, timeout: float = 7200) -> KilledRun:
    """Replay, SIGKILLed when the records offered so far pass each of ``kills`` seeded random marks, resumed
    each time with the same recovery directory, then run to the end."""
    rng = random.Random(seed)
    marks = sorted(rng.sample(range(mentions // 20, mentions * 19 // 20), kills))
    client = redis.Redis.from_url(redis_url)
    out = KilledRun()
    env = flow_env(redis_url, prefix, data_dir)
    deadline = time.monotonic() + timeout
    for mark in marks:
        proc = subprocess.Popen(replay_command(path, recovery), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        out.restarts += 1
        while proc.poll() is None and _offered(client, prefix) < mark and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out.kills += 1
            out.offered_at_kill.append(_offered(client, prefix))
        elif proc.returncode != 0:
            raise RuntimeError(f"pulse replay failed ({proc.returncode}) before mark {mark}")
    replay(path, redis_url, prefix, data_dir, recovery, timeout=max(60.0, deadline - time.monotonic()))
    out.restarts += 1
    client.close()
    return out


def dump_keys(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` (name without the prefix) -> its content in a comparable form.

    Streams are their entries (id and fields) in order; HyperLogLogs their count; a dead letter's ``ts_received``
    (when it was received) and an alert's ``written_ms`` (when it was written) are dropped.
    """
    out: dict[bytes, Any] = {}
    raw_prefix = prefix.encode()
    for key in client.scan_iter(match=prefix + "*", count=2000):
        name = key[len(raw_prefix):]
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
            if value is not None and value.startswith(b"HYLL"):
                value = ("hll", client.pfcount(key))
        elif kind == b"hash":
            value = {k: v for k, v in client.hgetall(key).items() if k not in _WALL_FIELDS}  # type: ignore[union-attr]
        elif kind == b"set":
            value = sorted(client.smembers(key))  # type: ignore[arg-type]
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"stream":
            value = [(entry_id, {k: v for k, v in fields.items() if k not in _WALL_FIELDS})
                     for entry_id, fields in client.xrange(key)]  # type: ignore[union-attr]
        else:
            continue  # gone between SCAN and TYPE
        out[name] = value
    return out


def differing_keys(a: dict[bytes, Any], b: dict[bytes, Any]) -> list[bytes]:
    """Key names missing on one side or with different content."""
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _print_comparison(run: str, differing: list[bytes], metrics_identical: bool) -> None:
    """The figures of one run compared with the uninterrupted one; the first keys that differ on stderr."""
    print(f"{run}_keys_differing={len(differing)}")
    print(f"{run}_metrics_identical={metrics_identical}")
    for name in differing[:20]:
        print(f"  differs: {name.decode(errors='replace')}", file=sys.stderr)


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    delete_prefix(client, prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of our own (free port, own directory, AOF ``everysec``) that can be stopped and
    started again from its AOF, without touching any other server."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.binary = binary or shutil.which("redis-server") or "redis-server"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait_s: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """Shut it down cleanly (the AOF is flushed), as an operator's restart does."""
        if self.proc is None:
            return
        try:
            redis.Redis(port=self.port, socket_connect_timeout=1).shutdown()
        except redis.ConnectionError:
            pass  # SHUTDOWN closes the connection by design
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class OutageRun:
    detect_s: float | None = None
    recover_s: float | None = None
    retries: int = 0
    returncode: int | None = None
    stderr_tail: str = ""


def replay_through_outage(path: Path, server: PrivateRedis, prefix: str, data_dir: Path | None, at_offered: int,
                          outage_s: float, timeout: float = 7200,
                          on_down: Callable[[], None] | None = None) -> OutageRun:
    """Replay into ``server``; when ``at_offered`` records were offered, stop it for ``outage_s`` and start
    it again. Times come from the flow's own log lines, read as they are written."""
    proc = subprocess.Popen(replay_command(path, None), env=flow_env(server.url, prefix, data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and _offered(client, prefix) < at_offered and time.monotonic() < deadline:
        time.sleep(0.02)
    client.close()
    out = OutageRun()
    if proc.poll() is not None:
        raise RuntimeError("the replay finished before the outage could start; offer more mentions")
    stopped = time.monotonic()
    server.stop()
    if on_down is not None:
        on_down()
    time.sleep(max(0.0, outage_s - (time.monotonic() - stopped)))
    restarted = time.monotonic()
    server.start()
    out.returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    reader.join(timeout=10)
    down = [t for t, line in lines if "redis unreachable, retry" in line]
    back = [t for t, line in lines if "redis back after" in line]
    out.retries = len(down)
    out.detect_s = round(down[0] - stopped, 3) if down else None
    out.recover_s = round(back[0] - restarted, 3) if back else None
    out.stderr_tail = "".join(line for _, line in lines[-20:])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mentions", type=int, default=100_000, help="simulated mentions to replay (default 100,000)")
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs at seeded random points (default 10)")
    ap.add_argument("--outage-seconds", type=float, default=10.0, help="Redis down this long mid-run; 0: skip")
    ap.add_argument("--seed", type=int, default=7, help="seed of the kill points (default 7)")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""),
                    help="Redis for the reference and the crash runs (default $REDIS_URL)")
    args = ap.parse_args(argv)
    if not args.redis_url:
        ap.error("set --redis-url or REDIS_URL")
    if args.mentions < 1000 or args.kills < 0:
        ap.error("--mentions must be >= 1000 and --kills >= 0")
    work = Path(tempfile.mkdtemp(prefix="pulse-faults-"))
    client = redis.Redis.from_url(args.redis_url)
    tag = uuid.uuid4().hex[:8]
    ref, crash, out_prefix = f"faults:{tag}:ref:", f"faults:{tag}:crash:", f"faults:{tag}:outage:"
    try:
        path = write_sim_file(work / "sim.jsonl", args.mentions)
        print(f"mentions={args.mentions}")
        print(f"labels={labels_in(path)}")
        seed_crm(args.redis_url, ref)
        t0 = time.perf_counter()
        replay(path, args.redis_url, ref, None)
        ref_s = time.perf_counter() - t0
        print(f"uninterrupted_s={ref_s:.1f}")
        reference = dump_keys(client, ref)
        ref_metrics = metrics_doc(args.redis_url, ref)
        print(f"keys_compared={len(reference)}")

        seed_crm(args.redis_url, crash)
        t0 = time.perf_counter()
        run = replay_with_kills(path, args.mentions, args.redis_url, crash, None, work / "recovery",
                                args.kills, seed=args.seed)
        crash_s = time.perf_counter() - t0
        diff = differing_keys(reference, dump_keys(client, crash))
        print(f"killed_run_restarts={run.restarts}")
        print(f"kills={run.kills}")
        print(f"offered_at_kills={','.join(map(str, run.offered_at_kill))}")
        print(f"killed_run_s={crash_s:.1f}")
        print(f"killed_run_time_ratio={crash_s / ref_s:.2f}")
        _print_comparison("killed", diff, metrics_doc(args.redis_url, crash) == ref_metrics)

        if args.outage_seconds > 0:
            server = PrivateRedis(work / "private-redis")
            server.start()
            try:
                seed_crm(server.url, out_prefix)
                outage = replay_through_outage(path, server, out_prefix, None, args.mentions // 3,
                                               args.outage_seconds)
                private = redis.Redis.from_url(server.url)
                odiff = differing_keys(reference, dump_keys(private, out_prefix))
                print(f"outage_s={args.outage_seconds:g}")
                print(f"outage_exit_code={outage.returncode}")
                print(f"outage_time_to_detect_s={outage.detect_s}")
                print(f"outage_time_to_recover_s={outage.recover_s}")
                print(f"outage_retry_log_lines={outage.retries}")
                _print_comparison("outage", odiff, metrics_doc(server.url, out_prefix) == ref_metrics)
                private.close()
            finally:
                server.stop()
    finally:
        for p in (ref, crash):
            drop_prefix(client, p)
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
