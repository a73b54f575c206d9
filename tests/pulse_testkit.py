"""Helpers shared by tests: generated conversations and running the ``pulse`` command line."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def make_mentions(n: int, *, brands: tuple[str, ...] = ("acme", "globex"), channels: tuple[str, ...] = ("twitter", "forum"),
                  start_ms: int = 1_704_103_200_000, step_ms: int = 7_000, reply_every: int = 3) -> list[dict]:
    """A deterministic conversation log: customer mentions (every other one a query) and brand replies.

    Every ``reply_every``-th customer mention gets a reply from its brand ``(i % 50 + 1)`` minutes later.
    """
    out: list[dict] = []
    for i in range(n):
        brand, channel = brands[i % len(brands)], channels[(i // len(brands)) % len(channels)]
        ts = start_ms + i * step_ms
        out.append({"id": f"{channel}:{i}", "channel": channel, "brand": brand, "author": f"user{i % 97}",
                    "text": "how do I reset my router?" if i % 2 else "love the new app, great job",
                    "ts": ts})
        if i % reply_every == 0:
            out.append({"id": f"{channel}:r{i}", "channel": channel, "brand": brand, "author": f"{brand}_care",
                        "text": "we're on it, please DM us", "ts": ts + (i % 50 + 1) * 60_000, "from_brand": True,
                        "in_reply_to": f"{channel}:{i}"})
    out.sort(key=lambda d: d["ts"])
    return out


PULSE = [sys.executable, "-m", "stream.cli"]


def pulse(*args: str, redis_url: str, prefix: str, check: bool = True, timeout: float = 120,
          extra_env: dict | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix, **(extra_env or {}))
    proc = subprocess.run([*PULSE, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pulse {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc



def redis_source(redis_url: str, prefix: str, partitions: int = 4) -> str:
    """The ``--source`` spec of the input streams ``{prefix}in:N`` on the test's Redis."""
    if redis_url.startswith("unix://"):
        return f"{redis_url}?prefix={prefix}&partitions={partitions}"
    base = redis_url.rstrip("/") if redis_url.count("/") > 2 else f"{redis_url}/0"
    return f"{base}/{prefix}?partitions={partitions}"


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (all held open together while they are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/{name}.py`` as a module: benchmarks/ is not an installed package (and tests/benchmarks
    would shadow it), so it is loaded by path, once per process."""
    loaded = sys.modules.get(f"_bench_{name}")
    if loaded is not None:
        return loaded
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def stored_values(r: Any, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every key under ``prefix`` (its name without the prefix, minus those whose first segment is in ``skip``) and
    its value as ``benchmarks/faults.dump_keys`` compares them: hashes and strings byte for byte, sorted sets with
    their scores, sets sorted, HyperLogLogs by their count, streams as their entries with their ids, without the
    fields that are wall-clock time by design (when a dead letter was received, an alert written)."""
    dumped = load_benchmark("faults").dump_keys(r, prefix)
    return {name: value for name, value in ((k.decode(), v) for k, v in dumped.items())
            if name.split(":", 1)[0] not in skip}
