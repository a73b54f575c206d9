"""The call centre's volume feed (calls per queue per interval), for the call-deflection metric.

Rows are ``ts, queue, calls[, brand]`` in CSV or JSONL (gzip read transparently); each becomes a
``calls`` :class:`~connectors.records.RawRecord` whose payload the flow parses into a CallVolume.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "calls.csv"
>>> n = write_calls_csv(p, [{"ts": "2024-03-04T00:15:00+00:00", "queue": "billing", "calls": 7, "brand": "acme"},
...                         {"ts": "2024-03-04T00:00:00+00:00", "queue": "billing", "calls": 5, "brand": "acme"}])
>>> [(r.payload["ts"][11:16], r.payload["calls"]) for r in read_calls(p)]
[('00:00', 5), ('00:15', 7)]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from connectors.files import FileSource, ProgressCallback, read_records
from connectors.records import RawRecord
from connectors.simulator import World

__all__ = ["CALLS_COLUMNS", "CallsSource", "read_calls", "simulated_calls", "write_calls_csv"]

#: Columns of a call-volume file, in the order :func:`write_calls_csv` writes them.
CALLS_COLUMNS = ("ts", "queue", "calls", "brand")


def read_calls(path: str | Path) -> list[RawRecord]:
    """All call-volume records of a CSV or JSONL file, in time order (see :func:`connectors.files.read_records`)."""
    return read_records(path, "calls")


class CallsSource(FileSource):
    """Replay call-volume files into a flow: a :class:`~connectors.files.FileSource` of the ``calls`` format.

    Delivery guarantee: exactly-once with recovery (resume state = records emitted, as FileSource).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "calls.jsonl"
    >>> _ = p.write_text('{"ts": "2024-03-04T00:00:00Z", "queue": "tech", "calls": 3}\\n')
    >>> CallsSource(p).list_parts() == [f"file:{p}"]
    True
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        speed: float = 0.0,
        batch_size: int = 1000,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(path, "calls", speed=speed, batch_size=batch_size, on_progress=on_progress)


def simulated_calls(world: World, until: datetime) -> Iterator[RawRecord]:
    """The simulated world's call-volume feed up to ``until`` (rises during incidents).

    >>> from datetime import timedelta
    >>> w = World(seed=1, n_customers=10)
    >>> recs = list(simulated_calls(w, w.start + timedelta(minutes=30)))
    >>> len(recs), sorted({r.payload["queue"] for r in recs})
    (18, ['billing', 'sales', 'technical'])
    """
    return world.events(until=until, kinds={"calls"})


def write_calls_csv(path: str | Path, rows: Iterable[dict[str, Any] | RawRecord]) -> int:
    """Write call-volume rows (dicts or ``calls`` records) as CSV; returns the number of rows written."""
    n = 0
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CALLS_COLUMNS)
        for row in rows:
            payload = row.payload if isinstance(row, RawRecord) else row
            if isinstance(payload, bytes | str):
                payload = orjson.loads(payload)
            out.writerow([payload.get(c, "") for c in CALLS_COLUMNS])
            n += 1
    return n
