"""Running the flow in this process: workers, recovery, and the Redis sink, from :class:`Settings`."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, Source
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from connectors.records import RawRecord
from stream import health
from stream.flow import build_flow
from stream.keys import Keys
from stream.learning import flush_all
from stream.runs import resolve_run_id
from stream.settings import Settings
from stream.sinks import RedisSink
from stream.stopping import StoppableSource

__all__ = ["check_crm", "recovery_config", "run_flow"]

log = logging.getLogger(__name__)


def recovery_config(recovery_dir: str | Path | None, partitions: int = 1, process_id: int | None = None,
                    wait_s: float = 60.0) -> RecoveryConfig | None:
    """A Bytewax recovery config for ``recovery_dir``, creating its partitions the first time.

    In a cluster of processes (sharing the directory) process 0 creates them and the others wait for them.
    """
    if recovery_dir is None:
        return None
    path = Path(recovery_dir)
    if process_id:
        deadline = time.monotonic() + wait_s
        while len(list(path.glob("part-*.sqlite3"))) < partitions:
            if time.monotonic() > deadline:
                raise ValueError(f"--recovery-dir {path}: process 0 did not create the recovery partitions "
                                 f"within {wait_s:.0f} s (start it with the same directory)")
            time.sleep(0.2)
    if not path.is_dir() or not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        # made aside and moved in whole, so processes waiting for them never open a half-written one
        with tempfile.TemporaryDirectory(dir=path) as aside:
            init_db_dir(Path(aside), partitions)
            for part in sorted(Path(aside).glob("part-*.sqlite3")):
                os.replace(part, path / part.name)
        log.info("initialised %d recovery partition(s) in %s", partitions, path)
    else:
        log.info("resuming from recovery partitions in %s", path)
    return RecoveryConfig(path, backup_interval=timedelta(seconds=0))


def check_crm(settings: Settings) -> None:
    """Refuse to start on a malformed rules or CRM settings file: the error names the file, rule and line."""
    from crm import load_rules
    from stream.steps import crm_settings, rules_path

    if not settings.crm:
        return
    crm = crm_settings(settings)
    if settings.crm_config:
        log.info("CRM settings from %s (assignment: %s)", settings.crm_config,
                 ", ".join(f"{k}={v}" for k, v in crm.assignment.items()))
    path = rules_path(settings)
    if path is not None:
        ruleset = load_rules(path)
        log.info("business rules from %s: %d rule(s)", path, len(ruleset.rules))


def run_flow(source: Source[RawRecord], settings: Settings, redis_url: str, *, workers: int = 1,
             recovery_dir: str | Path | None = None, process_id: int | None = None,
             addresses: list[str] | None = None, live: Sequence[Source[RawRecord]] = (),
             metrics_port: int | None = None) -> str:
    """Build the flow over ``source`` and run it to completion (bounded sources) or until interrupted;
    returns the run id (stream/runs.py).

    ``live`` adds the live inputs (labels, replies sent through the CRM; endless: only for unbounded runs).
    ``metrics_port`` exposes the engine's health for Prometheus while the flow runs (:mod:`stream.health`;
    in a cluster, process ``i`` listens on ``metrics_port + i``).
    """
    check_crm(settings)
    if metrics_port is not None:
        health.serve(metrics_port + (process_id or 0), settings.data_dir)
        health.enable(redis_url, Keys(settings.prefix))
    if isinstance(source, FixedPartitionedSource):
        source = StoppableSource(source)
    live = [StoppableSource(x) if isinstance(x, FixedPartitionedSource) else x for x in live]
    run_id = resolve_run_id(source, settings.run_id, recovery_dir)
    sink = RedisSink(redis_url, Keys(settings.prefix), settings, run_id=run_id)
    flow = build_flow(source, settings, sink, redis_url=redis_url, live=live, run_id=run_id)
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.epoch_seconds),
            recovery_config=recovery_config(recovery_dir, process_id=process_id),
        )
    finally:
        flush_all()  # the models' final prequential metrics
    return run_id
