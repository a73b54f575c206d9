"""Run identity: which run wrote which window fields, so runs add up while replays stay idempotent.

A run is named by its input. The same file (by content, wherever it lies), the same simulated world (seed
and start), or the same recovery directory give the same run id, so replaying or resuming rewrites that
run's own fields; any other input is another run and adds to the windows it shares with earlier ones.
A live source without a recovery directory (a WebSocket firehose, Redis Streams) gets a fresh id per
process: what it reads after a restart is new input (records redelivered from before are duplicates,
see :mod:`stream.dedupe`). With a recovery directory the id is kept in it (``run-id``) and a resumed run
goes on under the same name.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
>>> _ = p.write_text('{"id": "t:1"}\\n')
>>> run_id_for_files([p]) == run_id_for_files([p]) and run_id_for_files([p]).startswith("f")
True
>>> run_id_for_sim(7, 28_000_000)
's7-go4xs'
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["resolve_run_id", "run_id_for_files", "run_id_for_sim"]

log = logging.getLogger(__name__)

_RUN_FILE = "run-id"


def run_id_for_files(paths: Sequence[str | Path]) -> str:
    """``f`` and the first 12 hex digits of the SHA-256 of the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "f" + digest.hexdigest()[:12]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def run_id_for_sim(seed: int, start_minute: int) -> str:
    """The simulated world of ``seed`` starting at ``start_minute`` (epoch minutes)."""
    return f"s{seed}-{_base36(start_minute)}"


def _of_source(source: Any) -> str | None:
    """The id a source's input names, or None for live sources (no stable identity)."""
    from connectors.files import FileSource
    from connectors.simulator import DEFAULT_START, SimulatorSource
    from stream.stopping import StoppableSource

    inner = getattr(source, "inner", source) if isinstance(source, StoppableSource) else source
    if isinstance(inner, FileSource):
        return run_id_for_files(inner.paths)
    if isinstance(inner, SimulatorSource):
        if inner.start is None and inner.speed > 0:
            return None  # its world starts when its partition is built: build_source fixes the start
        start = inner.start or DEFAULT_START
        return run_id_for_sim(inner.seed, int(start.timestamp()) // 60)
    return None


def resolve_run_id(source: Any, configured: str = "", recovery_dir: str | Path | None = None) -> str:
    """This run's id: ``configured`` if set, else the one kept in ``recovery_dir``, else the source's
    (file contents, simulated world), else a fresh one; kept in ``recovery_dir`` when given."""
    kept = Path(recovery_dir) / _RUN_FILE if recovery_dir is not None else None
    if configured:
        run_id = configured
    elif kept is not None and kept.is_file():
        run_id = kept.read_text().strip()
    else:
        run_id = _of_source(source) or "l" + uuid.uuid4().hex[:12]
    if kept is not None and not kept.is_file():
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(run_id + "\n")
    log.info("run id %s", run_id)
    return run_id
