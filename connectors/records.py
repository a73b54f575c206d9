"""The envelope every source yields: a raw payload and where it came from, uninterpreted.

>>> r = RawRecord(source="file:a.jsonl", offset=3, payload=b'{"id": "x"}', fmt="jsonl")
>>> r.key
'file:a.jsonl:3'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_WAIT_S", "INVALID_UTF8", "RawRecord"]

#: A source paced by event time (``--speed X``: a file replay, the firehose server) waits at most this many seconds
#: of wall time between two records: a long silence, or one record dated years off, is shortened.
DEFAULT_MAX_WAIT_S = 10.0

#: Set (to ``"1"``) in a dict payload whose source had to replace bytes that were not UTF-8 (a CSV row read
#: lossily): the parser dead-letters such a record with reason ``encoding: ...``.
INVALID_UTF8 = "_invalid_utf8"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as a source read it.

    ``source`` names the source partition (``file:PATH``, ``sim``, ``ws://…``, ``redis:pulse:in:0``),
    ``offset`` is its position there (line index, stream entry id, …), so ``key`` identifies the
    record across replays and crashes. ``payload`` is bytes/str (JSONL line, frame) or a dict (a CSV
    row, a simulator event); ``fmt`` tells the parser how to read it (``jsonl``, ``twcs``, ``csv``,
    ``mention`` for dicts already shaped like a Mention, ``calls`` for call-volume rows). ``origin`` says where a
    person finds the record in what they handed in (``line 12`` of a JSONL file, ``row 3`` of a CSV file's data
    rows), when the offset does not (a file replay's offset is the record's place in event-time order).
    """

    source: str
    offset: int | str
    payload: bytes | str | dict[str, Any]
    fmt: str
    origin: str = ""

    @property
    def key(self) -> str:
        return f"{self.source}:{self.offset}"
