"""Bounded files as sources: JSONL, the twcs CSV, CSV with a TOML column mapping, call-volume feeds.

Every reader returns :class:`~connectors.records.RawRecord` values sorted by event time (real exports
are not in time order), so a replay feeds history exactly as it happened. Payloads are left raw (JSONL
lines stay bytes) or shaped as plain dicts of strings (CSV rows); parsing into a Mention is the
flow's job.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
>>> _ = p.write_bytes(b'{"id": "b", "ts": "2024-01-01T00:00:02Z"}\\n\\n{"id": "a", "ts": "2024-01-01T00:00:01Z"}\\n')
>>> [(r.offset, r.payload[:9]) for r in read_records(p, "jsonl")]
[(0, b'{"id": "a'), (1, b'{"id": "b')]
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import re
import tomllib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.records import DEFAULT_MAX_WAIT_S, INVALID_UTF8, RawRecord

__all__ = [
    "DEFAULT_MAX_WAIT_S",
    "FORMATS",
    "MAPPINGS_DIR",
    "ProgressCallback",
    "TWCS_COLUMNS",
    "ColumnMapping",
    "FileSource",
    "ReplayProgress",
    "SourceError",
    "event_time_ms",
    "load_mapping",
    "read_bytes",
    "read_records",
    "read_timed_records",
    "twcs_brands",
]

logger = logging.getLogger(__name__)

#: Input formats a file can be read as; ``mention`` is an alias of ``csv`` (a CSV with a mapping).
FORMATS = ("jsonl", "twcs", "csv", "mention", "calls")
#: The columns of the Customer Support on Twitter export.
TWCS_COLUMNS = (
    "tweet_id",
    "author_id",
    "inbound",
    "created_at",
    "text",
    "response_tweet_id",
    "in_response_to_tweet_id",
)
#: Where shipped column mappings live; ``mapping="airline"`` or ``"airline.toml"`` resolves here.
MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"

#: Mention fields a mapping may fill; anything else it maps goes into ``meta``.
_MENTION_FIELDS = (
    "id",
    "channel",
    "brand",
    "author",
    "text",
    "ts",
    "owned",
    "in_reply_to",
    "from_brand",
    "url",
    "lang",
)
_MAPPING_REQUIRED = ("id", "channel", "brand", "author", "text", "ts")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0", ""})
_CALLS_COLUMNS = ("ts", "queue", "calls")


class SourceError(ValueError):
    """A source that cannot be read at all (missing file, unknown format, bad mapping); one-line message.

    >>> str(SourceError("no such file: x.csv"))
    'no such file: x.csv'
    """


# --------------------------------------------------------------------------------------------------
# event time, without depending on stream/ (connectors never import it)

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_TWITTER_TS = re.compile(r"^\w{3} (\w{3}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})$")


def event_time_ms(value: Any) -> int | None:
    """Event time in epoch milliseconds, or None when it cannot be read (used for ordering only).

    Reads ISO 8601 (naive = UTC), epoch seconds or milliseconds, and ``Tue Oct 31 22:10:47 +0000 2017``.

    >>> event_time_ms("2024-01-01T00:00:01Z"), event_time_ms("Mon Jan 01 00:00:01 +0000 2024")
    (1704067201000, 1704067201000)
    >>> event_time_ms("2015-02-24 11:35:52 -0800"), event_time_ms(1704067201), event_time_ms("soon")
    (1424806552000, 1704067201000, None)
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            m = _TWITTER_TS.match(text)
            if m is None or m.group(1) not in _MONTHS:
                return None
            mon, day, hh, mm, ss, sign, oh, om, year = m.groups()
            try:
                dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
            except ValueError:
                return None
            offset = (int(oh) * 60 + int(om)) * 60_000
            return int(dt.timestamp() * 1000) - (offset if sign == "+" else -offset)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or abs(value) > 1e16:  # NaN or absurd
        return None
    return int(value if value > 1e11 else value * 1000)


# --------------------------------------------------------------------------------------------------
# bytes, gzip, CSV


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by magic bytes, whatever its name).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl.gz"
    >>> _ = p.write_bytes(gzip.compress(b"hello"))
    >>> read_bytes(p)
    b'hello'
    """
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"no such file: {p}")
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(f"{p}: corrupt gzip data ({exc})") from None
    if p.suffix == ".gz" and data:
        raise SourceError(f"{p}: named .gz but is not gzip data")
    return data


_NOT_UTF8 = re.compile("[\udc80-\udcff]+")


def _marked(data: bytes) -> tuple[bytes, str] | None:
    r"""``data`` with each run of bytes that are not UTF-8 replaced by a character the file does not hold (a Unicode
    noncharacter), and that character; None when the file is all UTF-8.

    A row is marked by what it did not hold before, not by U+FFFD: a post may quote that character itself.

    >>> _marked("caf\u00e9 \ufffd".encode())
    >>> _marked(b"ok,\xff\xfe,\xef\xb7\x90")
    (b'ok,\xef\xb7\x91,\xef\xb7\x90', '\ufdd1')
    """
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    mark = next((chr(c) for c in range(0xFDD0, 0xFDF0) if chr(c).encode() not in data), "\ufffd")
    text = _NOT_UTF8.sub(mark, data.decode("utf-8", errors="surrogateescape"))
    return text.encode("utf-8"), mark


def _read_csv(data: bytes, path: Path) -> pl.DataFrame:
    """The CSV as strings. Bytes that are not UTF-8 are replaced (U+FFFD) so the rest of the file still reads;
    the rows that held such bytes get :data:`~connectors.records.INVALID_UTF8` = ``"1"``, and the flow
    dead-letters them (a JSONL line with bad bytes is dead-lettered too); a valid U+FFFD in a post is kept."""
    if not data.strip():
        return pl.DataFrame()
    marked = _marked(data)
    try:
        df = pl.read_csv(
            io.BytesIO(data if marked is None else marked[0]),
            infer_schema=False,
            empty_string_is_null=False,
            encoding="utf8-lossy",
            truncate_ragged_lines=True,
        )
    except Exception as exc:  # polars raises several error types for unreadable CSV
        raise SourceError(f"{path}: not a readable CSV ({str(exc).splitlines()[0][:200]})") from None
    df = df.fill_null("")
    if marked is not None:
        mark = marked[1]
        replaced = pl.any_horizontal([pl.col(c).str.contains(mark, literal=True) for c in df.columns])
        df = df.with_columns(pl.when(replaced).then(pl.lit("1")).otherwise(pl.lit("")).alias(INVALID_UTF8))
        df = df.with_columns([pl.col(c).str.replace_all(mark, "\ufffd", literal=True) for c in df.columns
                              if c != INVALID_UTF8])
        logger.warning("%s: bytes that are not UTF-8 in %d rows (they go to the dead-letter stream)", path,
                       int(df[INVALID_UTF8].str.len_chars().sum()))
    return df


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts; the invalid-UTF-8 mark only where it is set."""
    rows = df.to_dicts()
    if INVALID_UTF8 in df.columns:
        for row in rows:
            if not row[INVALID_UTF8]:
                del row[INVALID_UTF8]
    return rows


def _csv_header(path: Path) -> list[str]:
    """Column names only, for validating a mapping before the (possibly large) file is read."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"no such file: {p}")
    with p.open("rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        stream: Any = gzip.open(raw) if head == b"\x1f\x8b" else raw
        try:
            first = stream.readline(1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(f"{p}: corrupt gzip data ({exc})") from None
    if not first.strip():
        return []
    try:
        return pl.read_csv(io.BytesIO(first), infer_schema=False, encoding="utf8-lossy", n_rows=0).columns
    except Exception as exc:
        raise SourceError(f"{p}: not a readable CSV header ({str(exc).splitlines()[0][:200]})") from None


def _is_jsonl(path: Path, data: bytes) -> bool:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return True
    if name.endswith((".csv", ".tsv")):
        return False
    return data.lstrip()[:1] == b"{"


# --------------------------------------------------------------------------------------------------
# column mappings


@dataclass(frozen=True)
class ColumnMapping:
    """How the columns of a CSV become a Mention-shaped dict (read from TOML by :func:`load_mapping`).

    ``columns`` maps a Mention field (or a ``meta`` key) to a CSV column, ``meta`` maps more meta keys
    to columns, ``constants`` sets fields that no column holds (``channel = "twitter"``), and
    ``id_prefix`` is put before ids (and reply ids) so they are unique across sources.

    >>> m = ColumnMapping(columns={"id": "tweet_id", "text": "text", "ts": "when", "author": "name",
    ...                            "brand": "airline", "mood": "airline_sentiment"},
    ...                   constants={"channel": "twitter"}, id_prefix="twitter:")
    >>> m.missing_columns(["tweet_id", "text", "when", "name"])
    ['airline', 'airline_sentiment']
    >>> m.shape({"tweet_id": "1", "text": "late again", "when": "2015-02-24 11:35:52 -0800", "name": "ann",
    ...          "airline": "United", "airline_sentiment": "negative"})["meta"]
    {'mood': 'negative'}
    >>> agent = ColumnMapping(columns={**m.columns, "from_brand": "is_agent"}, constants={"channel": "twitter"})
    >>> [agent.shape({"is_agent": v})["from_brand"] for v in ("TRUE", "no", "", "maybe")]
    [True, False, False, 'maybe']
    """

    columns: dict[str, str]
    constants: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    id_prefix: str = ""

    def __post_init__(self) -> None:
        given = set(self.columns) | set(self.constants)
        lacking = [f for f in _MAPPING_REQUIRED if f not in given]
        if lacking:
            raise SourceError(f"mapping gives no column or constant for {', '.join(lacking)}")

    def missing_columns(self, header: Sequence[str]) -> list[str]:
        """The mapped columns that the CSV header lacks, in mapping order."""
        have = set(header)
        wanted = list(self.columns.values()) + list(self.meta.values())
        return list(dict.fromkeys(c for c in wanted if c not in have))

    def shape(self, row: dict[str, str]) -> dict[str, Any]:
        """A Mention-shaped dict from one CSV row; values stay as found (strings)."""
        out: dict[str, Any] = dict(self.constants)
        meta: dict[str, Any] = {}
        for key, col in self.columns.items():
            value = row.get(col, "")
            if key in _MENTION_FIELDS:
                out[key] = value
            else:
                meta[key] = value
        for key, col in self.meta.items():
            meta[key] = row.get(col, "")
        prefix = self.id_prefix
        if prefix:
            if out.get("id"):
                out["id"] = prefix + str(out["id"])
            if out.get("in_reply_to"):
                out["in_reply_to"] = prefix + str(out["in_reply_to"])
        for optional in ("in_reply_to", "url", "lang"):
            if out.get(optional) == "":
                del out[optional]
        for flag in ("owned", "from_brand"):  # CSV cells are text; the schema wants true/false
            cell = out.get(flag)
            if isinstance(cell, str):
                word = cell.strip().lower()
                if word in _TRUE:
                    out[flag] = True
                elif word in _FALSE:
                    out[flag] = False  # anything else stays text: a dead letter that names the field
        out["meta"] = meta
        return out


def _resolve_mapping_path(mapping: str | Path) -> Path:
    p = Path(mapping)
    if p.is_file():
        return p
    if not p.is_absolute() and p.parent == Path("."):
        for candidate in (MAPPINGS_DIR / p.name, MAPPINGS_DIR / f"{p.name}.toml"):
            if candidate.is_file():
                return candidate
    raise SourceError(
        f"no such mapping file: {mapping} (shipped: "
        f"{', '.join(sorted(q.name for q in MAPPINGS_DIR.glob('*.toml')))})"
    )


def load_mapping(mapping: str | Path) -> ColumnMapping:
    """Read a TOML column mapping; a bare name (``airline``) finds a shipped one in :data:`MAPPINGS_DIR`.

    >>> m = load_mapping("airline")
    >>> m.columns["ts"], m.constants["channel"], m.id_prefix
    ('tweet_created', 'twitter', 'twitter:')
    """
    path = _resolve_mapping_path(mapping)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not valid TOML ({exc})") from None
    columns = doc.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise SourceError(f"{path}: needs a [columns] table mapping fields to CSV columns")
    meta = doc.get("meta", {})
    constants = dict(doc.get("constants", {}))
    if not isinstance(meta, dict) or not isinstance(constants, dict):
        raise SourceError(f"{path}: [meta] and [constants] must be tables")
    for table, entries in (("columns", columns), ("meta", meta)):
        bad = [k for k, v in entries.items() if not isinstance(v, str) or not v]
        if bad:
            raise SourceError(f"{path}: [{table}] values must be column names, not {', '.join(bad)}")
    id_prefix = constants.pop("id_prefix", doc.get("id_prefix", ""))
    if not isinstance(id_prefix, str):
        raise SourceError(f"{path}: id_prefix must be a string")
    try:
        return ColumnMapping(columns=dict(columns), constants=constants, meta=dict(meta), id_prefix=id_prefix)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# readers: each returns (payload, event time ms or None, where a person finds it) in file order, then one sort for
# all. Where: "line N" of a JSONL file (blank lines counted), "row N" of a CSV file's data rows (the header apart).


def _jsonl_items(data: bytes) -> list[tuple[bytes, int | None, str]]:
    items: list[tuple[bytes, int | None, str]] = []
    loads = orjson.loads
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            continue
        ts = None
        try:
            obj = loads(line)
            if isinstance(obj, dict):
                ts = event_time_ms(obj.get("ts"))
        except orjson.JSONDecodeError:
            pass  # still a record: the flow dead-letters it with its reason
        items.append((line, ts, f"line {number}"))
    return items


def _split_ids(value: str) -> list[str]:
    out = []
    for part in value.split(","):
        part = part.strip()
        if part.endswith(".0"):  # pandas-written exports turn ids into floats
            part = part[:-2]
        if part:
            out.append(part)
    return out


_HANDLE = re.compile(r"@(\w+)")


def twcs_brands(rows: Sequence[dict[str, str]]) -> list[str]:
    """The brand of each twcs row (see the module docs of :func:`read_records` for the rules).

    >>> rows = [
    ...     {"tweet_id": "1", "author_id": "9", "inbound": "True", "text": "@Acme help", "response_tweet_id": "2",
    ...      "in_response_to_tweet_id": ""},
    ...     {"tweet_id": "2", "author_id": "Acme", "inbound": "False", "text": "@9 sure",
    ...      "response_tweet_id": "3", "in_response_to_tweet_id": "1"},
    ...     {"tweet_id": "3", "author_id": "9", "inbound": "True", "text": "@123 thx", "response_tweet_id": "",
    ...      "in_response_to_tweet_id": "2"},
    ...     {"tweet_id": "4", "author_id": "8", "inbound": "True", "text": "@acme hi", "response_tweet_id": "",
    ...      "in_response_to_tweet_id": ""},
    ...     {"tweet_id": "5", "author_id": "7", "inbound": "True", "text": "hi", "response_tweet_id": "",
    ...      "in_response_to_tweet_id": ""},
    ... ]
    >>> twcs_brands(rows)
    ['Acme', 'Acme', 'Acme', 'Acme', 'unknown']
    """
    n = len(rows)
    index: dict[str, int] = {}
    for i, row in enumerate(rows):
        index.setdefault(row.get("tweet_id", "").strip(), i)
    is_brand = [row.get("inbound", "").strip().lower() == "false" for row in rows]
    brand_by_lower: dict[str, str] = {}
    for i, row in enumerate(rows):
        if is_brand[i]:
            brand_by_lower.setdefault(
                row.get("author_id", "").strip().lower(), row.get("author_id", "").strip()
            )
    replies_to: list[list[int]] = [[] for _ in range(n)]  # i -> rows that reply to i
    parents: list[list[int]] = [[] for _ in range(n)]  # i -> rows i replies to
    for i, row in enumerate(rows):
        for tid in _split_ids(row.get("in_response_to_tweet_id", "")):
            j = index.get(tid)
            if j is not None and j != i:
                parents[i].append(j)
                replies_to[j].append(i)
        for tid in _split_ids(row.get("response_tweet_id", "")):
            j = index.get(tid)
            if j is not None and j != i:
                replies_to[i].append(j)
                parents[j].append(i)

    # conversations: union-find over every reply link, brand = the most frequent brand account in it
    root = list(range(n))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    for i in range(n):
        for j in parents[i]:
            ri, rj = find(i), find(j)
            if ri != rj:
                root[max(ri, rj)] = min(ri, rj)
    votes: dict[int, dict[str, int]] = {}
    for i in range(n):
        if is_brand[i]:
            tally = votes.setdefault(find(i), {})
            author = rows[i].get("author_id", "").strip()
            tally[author] = tally.get(author, 0) + 1
    conversation_brand = {r: max(t.items(), key=lambda kv: kv[1])[0] for r, t in votes.items()}

    brands: list[str] = []
    for i, row in enumerate(rows):
        author = row.get("author_id", "").strip()
        if is_brand[i]:
            brands.append(author)
            continue
        found = next((rows[j]["author_id"].strip() for j in replies_to[i] if is_brand[j]), None)
        if found is None:
            found = next((rows[j]["author_id"].strip() for j in parents[i] if is_brand[j]), None)
        if found is None:
            for handle in _HANDLE.findall(row.get("text", "")):
                found = brand_by_lower.get(handle.lower())
                if found is not None:
                    break
        if found is None:
            found = conversation_brand.get(find(i))
        brands.append(found or "unknown")
    return brands


def _twcs_items(data: bytes, path: Path) -> list[tuple[dict[str, str], int | None, str]]:
    df = _read_csv(data, path)
    if df.width == 0:
        return []
    missing = [c for c in TWCS_COLUMNS if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: not a twcs file, missing columns {', '.join(missing)}")
    rows = _rows(df)
    brands = twcs_brands(rows)
    items = []
    for number, (row, brand) in enumerate(zip(rows, brands, strict=True), start=1):
        row["brand"] = brand
        items.append((row, event_time_ms(row["created_at"]), f"row {number}"))
    return items


def _mapped_items(data: bytes, path: Path, mapping: ColumnMapping) -> list[tuple[dict[str, Any], int | None, str]]:
    df = _read_csv(data, path)
    if df.width == 0:
        return []
    missing = mapping.missing_columns(df.columns)
    if missing:
        raise SourceError(f"{path}: the mapping names columns the file lacks: {', '.join(missing)}")
    items = []
    for number, row in enumerate(_rows(df), start=1):
        shaped = mapping.shape(row)
        if row.get(INVALID_UTF8):
            shaped[INVALID_UTF8] = "1"
        items.append((shaped, event_time_ms(shaped.get("ts")), f"row {number}"))
    return items


def _number_or_text(value: Any) -> Any:
    """A count cell as a number when it is one; text otherwise (the parser dead-letters it with the reason).

    >>> _number_or_text(" 7 "), _number_or_text("2.5"), _number_or_text("inf"), _number_or_text("many")
    (7, 2.5, 'inf', 'many')
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return value
        return number if math.isfinite(number) else value  # nan/inf are no count


def _calls_items(data: bytes, path: Path) -> list[tuple[dict[str, Any] | bytes, int | None, str]]:
    items: list[tuple[dict[str, Any] | bytes, int | None, str]] = []
    if _is_jsonl(path, data):
        for line, ts, where in _jsonl_items(data):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            items.append((obj if isinstance(obj, dict) else line, ts, where))
        return items
    df = _read_csv(data, path)
    if df.width == 0:
        return []
    missing = [c for c in _CALLS_COLUMNS if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: not a call-volume file, missing columns {', '.join(missing)}")
    for number, row in enumerate(_rows(df), start=1):
        payload: dict[str, Any] = dict(row)
        payload["calls"] = _number_or_text(row["calls"])
        items.append((payload, event_time_ms(row["ts"]), f"row {number}"))
    return items


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})")
    return "csv" if fmt == "mention" else fmt


def _identity_mapping() -> ColumnMapping:
    return ColumnMapping(columns={f: f for f in _MAPPING_REQUIRED})


def _validate(path: Path, fmt: str, mapping: str | Path | None) -> ColumnMapping | None:
    """Cheap checks before a (possibly large) read: the file exists, the format and mapping fit it."""
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    if fmt == "csv":
        cmap = load_mapping(mapping) if mapping is not None else _identity_mapping()
        missing = cmap.missing_columns(_csv_header(path))
        if missing:
            hint = "" if mapping is not None else " (pass a column mapping)"
            raise SourceError(f"{path}: the mapping names columns the file lacks: {', '.join(missing)}{hint}")
        return cmap
    if mapping is not None:
        raise SourceError(f"a column mapping only applies to the csv format, not {fmt!r}")
    if fmt == "twcs":
        header = _csv_header(path)
        missing = [c for c in TWCS_COLUMNS if c not in header]
        if header and missing:
            raise SourceError(f"{path}: not a twcs file, missing columns {', '.join(missing)}")
    return None


_RECORD_FMT = {"jsonl": "jsonl", "twcs": "twcs", "csv": "mention", "calls": "calls"}


def read_timed_records(
    path: str | Path,
    fmt: str,
    mapping: str | Path | None = None,
) -> tuple[list[RawRecord], list[int | None]]:
    """Like :func:`read_records`, with each record's event time (epoch ms, None if unreadable) beside it."""
    fmt = _check_format(fmt)
    p = Path(path)
    cmap = _validate(p, fmt, mapping)
    data = read_bytes(p)
    items: Sequence[tuple[Any, int | None, str]]
    if fmt == "jsonl":
        items = _jsonl_items(data)
    elif fmt == "twcs":
        items = _twcs_items(data, p)
    elif fmt == "calls":
        items = _calls_items(data, p)
    else:
        assert cmap is not None
        items = _mapped_items(data, p, cmap)
    # stable sort; records without a readable time keep their place in front
    order = sorted(range(len(items)), key=lambda i: (items[i][1] is not None, items[i][1] or 0))
    source = f"file:{path}"
    record_fmt = _RECORD_FMT[fmt]
    records = [RawRecord(source, pos, items[i][0], record_fmt, items[i][2]) for pos, i in enumerate(order)]
    times = [items[i][1] for i in order]
    logger.info("read %d %s records from %s", len(records), fmt, p)
    return records, times


def read_records(path: str | Path, fmt: str, mapping: str | Path | None = None) -> list[RawRecord]:
    """All records of a bounded file, sorted by event time (stable; unreadable times first).

    Formats (``fmt``), and the record ``fmt`` the flow's parser sees:

    - ``jsonl``: one Mention JSON object per line; the payload is the raw line (bytes). Blank lines are
      skipped; lines with bad UTF-8 or JSON are kept (the flow dead-letters them). Record fmt ``jsonl``.
    - ``twcs``: the Customer Support on Twitter CSV; the payload is the row (strings) plus ``brand``:
      a brand tweet's own author; for a customer tweet the brand account that replied to it, else the
      brand it replies to, else a brand @handle in its text, else its conversation's brand, else
      ``"unknown"``. Record fmt ``twcs``.
    - ``csv`` (alias ``mention``): any CSV with a TOML column ``mapping`` (see :func:`load_mapping`);
      the payload is a Mention-shaped dict of strings. Record fmt ``mention``.
    - ``calls``: a call-volume CSV or JSONL (``ts, queue, calls[, brand]``); record fmt ``calls``.

    Gzip is read transparently. The offset of a record is its position in the sorted order, its ``origin`` where
    it is in the file (``line N`` of a JSONL file, blank lines counted; ``row N`` of a CSV file's data rows), and
    the source is ``file:<path>``. Raises :class:`SourceError` for a file that cannot be read at all.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "calls.csv"
    >>> _ = p.write_text("ts,queue,calls\\n2024-01-01T00:15:00Z,billing,7\\n2024-01-01T00:00:00Z,billing,5\\n")
    >>> [(r.offset, r.payload["calls"], r.origin) for r in read_records(p, "calls")]
    [(0, 5, 'row 2'), (1, 7, 'row 1')]
    >>> read_records(p, "xml")
    Traceback (most recent call last):
    ...
    connectors.files.SourceError: unknown format 'xml' (choose one of jsonl, twcs, csv, mention, calls)
    """
    return read_timed_records(path, fmt, mapping)[0]


# --------------------------------------------------------------------------------------------------
# the Bytewax source


@dataclass
class ReplayProgress:
    """How far a replay is, for a progress bar polled from another thread.

    >>> p = ReplayProgress()
    >>> p.update("file:a", 5, 10); p.update("file:b", 0, 10)
    >>> (p.emitted, p.total, p.done)
    (5, 20, False)
    """

    parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def update(self, part: str, emitted: int, total: int) -> None:
        self.parts[part] = (emitted, total)

    @property
    def emitted(self) -> int:
        return sum(e for e, _ in list(self.parts.values()))

    @property
    def total(self) -> int:
        return sum(t for _, t in list(self.parts.values()))

    @property
    def done(self) -> bool:
        return bool(self.parts) and all(e >= t for e, t in list(self.parts.values()))


ProgressCallback = Callable[[int, int], None]


def _wall_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


class _FilePartition(StatefulSourcePartition[RawRecord, int]):
    """One file's sorted records; the state is how many were emitted."""

    def __init__(
        self,
        name: str,
        records: list[RawRecord],
        times: list[int | None],
        resume_state: int | None,
        speed: float,
        batch_size: int,
        report: Callable[[str, int, int], None],
        max_wait_s: float = 0.0,
    ) -> None:
        self._name = name
        self._records = records
        self._pos = min(max(resume_state or 0, 0), len(records))
        self._speed = speed
        self._batch_size = max(1, batch_size)
        self._report = report
        self._awake: datetime | None = None
        self._due: list[float] = []
        if speed > 0 and records:
            # records without a time are due with the record before them
            filled: list[int] = []
            last = next((t for t in times if t is not None), 0)
            for t in times:
                last = t if t is not None else last
                filled.append(last)
            # from the record to resume at, each one due its event-time gap / speed after the one before, a gap
            # shortened to max_wait_s (a silence of days, or a stray timestamp years off, must not stall a replay)
            cap = max_wait_s * 1000.0 if max_wait_s > 0 else math.inf
            self._due = [0.0] * len(filled)
            at = float(_wall_ms())
            for i in range(self._pos, len(filled)):
                if i > self._pos:
                    at += min(max(filled[i] - filled[i - 1], 0) / speed, cap)
                self._due[i] = at
        self._report(name, self._pos, len(records))

    def next_batch(self) -> list[RawRecord]:
        n = len(self._records)
        if self._pos >= n:
            raise StopIteration
        start = self._pos
        if self._speed <= 0:
            end = min(n, start + self._batch_size)
        else:
            now = _wall_ms()
            end = start
            limit = min(n, start + self._batch_size)
            due = self._due
            while end < limit and due[end] <= now:
                end += 1
            self._awake = None
            if end < n and due[end] > now:
                self._awake = datetime.fromtimestamp(due[end] / 1000, UTC)
        self._pos = end
        self._report(self._name, end, n)
        return self._records[start:end]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pos

    def close(self) -> None:
        self._report(self._name, self._pos, len(self._records))


class FileSource(FixedPartitionedSource[RawRecord, int]):
    """Replay bounded files in event-time order, as fast as possible or time-warped.

    One partition per file, named ``file:<path>``. The file is read and sorted once when its partition
    is built (see :func:`read_records` for formats). ``speed=0`` emits batches of ``batch_size`` as fast
    as the flow takes them; ``speed=X`` paces records in event time X times faster than real time
    (with :meth:`~bytewax.inputs.StatefulSourcePartition.next_awake`, never sleeping), waiting at most
    ``max_wait_s`` of wall time between two records (0: no limit): a long silence in event time, or one record
    dated years off, is shortened instead of stalling the replay. Pacing never changes what the flow writes.

    Delivery guarantee: exactly-once with recovery. The resume state is the number of records already
    emitted, and the sorted order is deterministic, so a resumed run continues right after the last
    snapshotted record (as long as the file did not change in between).

    Progress: :attr:`progress` (a :class:`ReplayProgress`) is updated after every batch, and the
    optional ``on_progress(emitted, total)`` callback is called with the sum over all files.

    Raises :class:`SourceError` at construction for a missing file, an unknown format, or a mapping that
    names columns the file lacks.

    >>> import tempfile, pathlib
    >>> from bytewax.dataflow import Dataflow
    >>> import bytewax.operators as op
    >>> from bytewax.testing import TestingSink, run_main
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = p.write_text('{"ts": "2024-01-01T00:00:02Z"}\\n{"ts": "2024-01-01T00:00:01Z"}\\n')
    >>> out = []
    >>> flow = Dataflow("replay")
    >>> recs = op.input("read", flow, FileSource(p, "jsonl"))
    >>> op.output("out", recs, TestingSink(out))
    >>> run_main(flow)
    >>> [r.payload for r in out]
    [b'{"ts": "2024-01-01T00:00:01Z"}', b'{"ts": "2024-01-01T00:00:02Z"}']
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        fmt: str,
        mapping: str | Path | None = None,
        speed: float = 0.0,
        batch_size: int = 1000,
        on_progress: ProgressCallback | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        paths = [path] if isinstance(path, str | Path) else list(path)
        if not paths:
            raise SourceError("no input file given")
        self.fmt = _check_format(fmt)
        if speed < 0:
            raise SourceError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        if not max_wait_s >= 0:
            raise SourceError(f"max wait must be 0 (no limit) or positive seconds, got {max_wait_s}")
        self.max_wait_s = float(max_wait_s)
        self.paths = [Path(p) for p in paths]
        self._names = [f"file:{p}" for p in paths]
        if len(set(self._names)) != len(self._names):
            raise SourceError("the same file is given twice")
        for p in self.paths:
            _validate(p, self.fmt, mapping)
        self.mapping = mapping
        self.speed = float(speed)
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.progress = ReplayProgress()

    def _report(self, part: str, emitted: int, total: int) -> None:
        self.progress.update(part, emitted, total)
        if self.on_progress is not None:
            self.on_progress(self.progress.emitted, self.progress.total)

    def list_parts(self) -> list[str]:
        return [name for name, p in zip(self._names, self.paths, strict=True) if p.exists()]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        path = self.paths[self._names.index(for_part)]
        records, times = read_timed_records(path, self.fmt, self.mapping)
        if records and records[0].source != for_part:  # keep the name the partition was listed under
            records = [RawRecord(for_part, r.offset, r.payload, r.fmt, r.origin) for r in records]
        if resume_state:
            logger.info("%s: resuming after %d of %d records", for_part, resume_state, len(records))
        return _FilePartition(
            for_part, records, times, resume_state, self.speed, self.batch_size, self._report, self.max_wait_s
        )
