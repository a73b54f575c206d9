"""Redis Streams input: producers append to ``{prefix}in:{n}``, the flow reads them with a consumer group.

An entry holds two fields: ``payload`` (the raw record, bytes) and ``fmt`` (how to parse it, default
``jsonl``). Producers pick the stream by a CRC32 of the payload (:func:`partition_for`), so the same
record always lands in the same stream. A producer that is done sets ``{prefix}in:eof``
(:func:`mark_eof`); a source built with ``stop="eof"`` then finishes once every stream is drained.

**How the input streams stay bounded.** Two mechanisms, neither of which drops an entry a consumer still needs:

- *Consumers trim what every group has acknowledged.* After acking, a reading partition trims its stream
  (``XTRIM MINID ~``) up to :func:`acknowledged_upto`: below the oldest entry that any consumer group of the
  stream still holds pending or has not been delivered yet. It applies the point it computed on its previous
  trim (every ``trim_every_s``, default 30 s), so an entry lives on for a while after its acknowledgement — a
  recovery that resumes from a snapshot taken just before it can still replay it. Streams read by readers
  that are not consumer groups (the outboxes: the dashboard reads their newest entries) are not trimmed this
  way (``trim_acked=False``); they have their own cap.
- *Producers refuse to pile up more than ``max_backlog`` entries per stream* (default
  :data:`DEFAULT_MAX_BACKLOG`): :func:`append_records` raises :class:`BacklogFull` and the ingest endpoint
  nacks the frame ("retry later") instead of appending, so a stopped flow makes producers wait rather than
  having unread entries trimmed (``XADD MAXLEN`` would silently drop the oldest unprocessed ones). The length
  checked is the stream's: unprocessed entries plus those acknowledged within the last trim interval.

The trade-off: with no consumer running, a stream fills to ``max_backlog`` and producers get refusals until
the flow catches up; nothing unacknowledged is ever trimmed in normal operation. (An entry deleted by hand
while pending is acknowledged when met, and logged.)

>>> partition_for(b'{"id": "t:1"}', 4)
0
>>> stream_key("pulse:", 2), eof_key("pulse:")
('pulse:in:2', 'pulse:in:eof')
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.records import RawRecord

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "FMT_FIELD",
    "PAYLOAD_FIELD",
    "XADD_NEXT_LUA",
    "BacklogFull",
    "RedisStreamSource",
    "acknowledged_upto",
    "append_records",
    "eof_key",
    "mark_eof",
    "partition_for",
    "stream_key",
    "trim_acknowledged",
]

#: Lua defining ``xadd_next(stream, maxlen, fields)``: XADD (``MAXLEN ~``) with an id that follows the stream's last
#: entry (``<ms>-<seq + 1>``; ``0-1`` for a new stream) instead of the server's clock, so a stream the flow writes is
#: a function of its input and of the order of its appends, not of when they ran; returns the id. A stream whose last
#: generated id is beyond its last entry (after an XDEL) gets a clock id, as before. Scripts that append to the
#: flow's output streams (the alerts and dead letters: the sink, the outbox relay) prepend it.
XADD_NEXT_LUA = """
local function xadd_next(stream, maxlen, fields)
  local id = '0-1'
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top > 0 then
    local ms, seq = string.match(top[1][1], '^(%d+)-(%d+)$')
    id = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
  end
  local r = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, unpack(fields))
  if type(r) == 'table' and r.err then r = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields)) end
  return r
end
"""

log = logging.getLogger(__name__)

PAYLOAD_FIELD = "payload"
FMT_FIELD = "fmt"
_PAYLOAD = PAYLOAD_FIELD.encode()
_FMT = FMT_FIELD.encode()

StopMode = Literal["never", "eof", "drained"]
#: Stream entries as redis-py returns them: ``[(entry id, {field: value})]``.
Entries = list[tuple[bytes, dict[bytes, bytes]]]
#: Producers refuse to append to an input stream that already holds this many entries.
DEFAULT_MAX_BACKLOG = 1_000_000

# KEYS[1] stream; ARGV[1] max backlog, ARGV[2] payload field name, ARGV[3] fmt field name, ARGV[4] fmt,
# ARGV[5..] payloads. Appends them in order while the stream holds fewer than max backlog entries; per payload
# its entry id, or the stream's length (an integer) when it was full and the payload was not appended.
APPEND_IF_ROOM = """
local n = redis.call('XLEN', KEYS[1])
local cap = tonumber(ARGV[1])
local out = {}
for i = 5, #ARGV do
  if n >= cap then
    out[#out + 1] = n
  else
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[i], ARGV[3], ARGV[4])
    n = n + 1
  end
end
return out
"""


class BacklogFull(RuntimeError):
    """An input stream is at its backlog limit: the consumers must catch up before more is appended.

    >>> str(BacklogFull("p:in:0", 10, 10, pushed=3))
    'p:in:0 holds 10 entries, its backlog limit is 10: start the flow or let it catch up, then push the rest (3 pushed)'
    """

    def __init__(self, key: str, length: int, limit: int, pushed: int = 0) -> None:
        super().__init__(f"{key} holds {length} entries, its backlog limit is {limit}: start the flow or let it "
                         f"catch up, then push the rest ({pushed} pushed)")
        self.key = key
        self.length = length
        self.limit = limit
        self.pushed = pushed


def stream_key(prefix: str, n: int) -> str:
    """The input stream of partition ``n``."""
    return f"{prefix}in:{n}"


def eof_key(prefix: str) -> str:
    """The marker a producer sets when it has appended everything (for bounded runs)."""
    return f"{prefix}in:eof"


def partition_for(payload: bytes, partitions: int) -> int:
    """Stable partition of a payload: CRC32 modulo the number of streams."""
    return zlib.crc32(payload) % partitions


def append_records(
    client: redis.Redis,
    prefix: str,
    payloads: Iterable[bytes],
    *,
    partitions: int = 4,
    fmt: str = "jsonl",
    chunk: int = 1000,
    max_backlog: int = DEFAULT_MAX_BACKLOG,
) -> list[tuple[str, str]]:
    """XADD every payload to its input stream, pipelined by ``chunk``; return ``(stream, entry id)`` each.

    When this returns, every entry is in Redis (each XADD was answered). Before each chunk the streams'
    lengths are checked: when a chunk would take a stream past ``max_backlog`` entries, :class:`BacklogFull`
    is raised and nothing of that chunk is stored (``pushed``: the payloads stored before, in order). With
    several producers at once the limit may be overshot by up to a chunk each.
    """
    out: list[tuple[str, str]] = []
    batch: list[bytes] = []

    def flush() -> None:
        keys = [stream_key(prefix, partition_for(payload, partitions)) for payload in batch]
        wanted: dict[str, int] = {}
        for key in keys:
            wanted[key] = wanted.get(key, 0) + 1
        pipe = client.pipeline(transaction=False)
        for key in wanted:
            pipe.xlen(key)
        for (key, n), length in zip(wanted.items(), pipe.execute(), strict=True):
            if int(length) + n > max_backlog:
                raise BacklogFull(key, int(length), max_backlog, pushed=len(out))
        pipe = client.pipeline(transaction=False)
        for key, payload in zip(keys, batch, strict=True):
            pipe.xadd(key, {PAYLOAD_FIELD: payload, FMT_FIELD: fmt})
        for key, entry_id in zip(keys, pipe.execute(), strict=True):
            out.append((key, entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)))
        batch.clear()

    for payload in payloads:
        batch.append(payload)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return out


def mark_eof(client: redis.Redis, prefix: str) -> None:
    """Tell bounded readers (``stop="eof"``) that no more entries will be appended."""
    client.set(eof_key(prefix), datetime.now(UTC).isoformat())


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def acknowledged_upto(client: redis.Redis, key: str) -> tuple[int, int] | None:
    """The entry id below which every consumer group of ``key`` has acknowledged everything, or None when the
    stream has no group (then nobody has consumed anything and nothing may be trimmed).

    Per group: its oldest pending entry, or, with nothing pending, the entry after its last delivered one;
    the minimum over the groups.
    """
    try:
        groups: Any = client.xinfo_groups(key)
    except redis.ResponseError:  # no such stream
        return None
    if not groups:
        return None
    points = []
    for info in groups:
        if int(info["pending"]):
            summary: Any = client.xpending(key, _text(info["name"]))
            points.append(_id_tuple(summary["min"]))
        else:
            ms, seq = _id_tuple(_text(info["last-delivered-id"]))
            points.append((ms, seq + 1))
    return min(points)


def trim_acknowledged(client: redis.Redis, key: str, upto: tuple[int, int] | None = None) -> int:
    """``XTRIM key MINID ~`` up to ``upto`` (default: :func:`acknowledged_upto` now), never beyond what every
    group acknowledged now; the number of entries removed (``~``: whole macro nodes only, so maybe fewer)."""
    now = acknowledged_upto(client, key)
    point = now if upto is None or now is None else min(upto, now)
    if point is None or point <= (0, 1):
        return 0
    return int(client.xtrim(key, minid=f"{point[0]}-{point[1]}", approximate=True))


class _RedisStreamPartition(StatefulSourcePartition[RawRecord, str | None]):
    """Reads one input stream for one Bytewax worker; the snapshot is the last entry id emitted.

    Acknowledgement: ids emitted are kept in order; :meth:`snapshot` (called by Bytewax when this
    partition closes an epoch) seals the ids emitted so far; the next :meth:`next_batch` XACKs the
    sealed ids. Bytewax calls ``next_batch`` for a new epoch only once every output of the dataflow
    has finished the previous epochs (its backpressure probe), so an entry is acked only after
    everything downstream has written its results (or, for stateful steps, holds them in state that
    the same epoch's snapshot saved when recovery is on).
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        resume_state: str | None,
        *,
        group: str,
        consumer: str,
        batch_size: int,
        stop: StopMode,
        eof_marker: str,
        poll: timedelta,
        claim_idle_ms: int,
        default_fmt: str,
        payload_field: str | None = PAYLOAD_FIELD,
        trim_acked: bool = True,
        trim_every_s: float = 30.0,
    ) -> None:
        self._r = client
        self._key = key
        self._group = group
        self._consumer = consumer
        self._batch_size = batch_size
        self._stop = stop
        self._eof_marker = eof_marker
        self._poll = poll
        self._claim_idle_ms = claim_idle_ms
        self._default_fmt = default_fmt
        self._payload_field = payload_field.encode() if payload_field is not None else None
        self._trim_acked = trim_acked
        self._trim_every_s = trim_every_s
        self._trim_due = time.monotonic() + trim_every_s
        self._trim_point: tuple[int, int] | None = None
        self._source = f"redis:{key}"
        self._last: str | None = resume_state
        self._unacked: list[bytes] = []
        self._sealed = 0
        self._next_awake: datetime | None = None
        self._ensure_group()
        # Phase 1 re-emits what a crashed run may not have finished, in id order, then phase 2
        # reads new entries. With a resume state (recovery on) the dataflow's state is that of
        # the snapshot, so everything after it that the group already delivered is replayed
        # (acked or not); without one, the pending entries (delivered, never acked) are claimed.
        self._replay_from: str | None = None
        self._replay_to: tuple[int, int] | None = None
        self._claim_cursor: str | None = None
        if resume_state is not None:
            self._ack_pending_upto(resume_state)
            last_delivered = self._group_last_delivered()
            if last_delivered is not None and _id_tuple(last_delivered) > _id_tuple(resume_state):
                self._replay_from = resume_state
                self._replay_to = _id_tuple(last_delivered)
        else:
            self._claim_cursor = "0-0"

    # -- setup -------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        try:
            self._r.xgroup_create(self._key, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _group_last_delivered(self) -> str | None:
        for info in self._r.xinfo_groups(self._key):
            name = info["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if name == self._group:
                last = info["last-delivered-id"]
                return last.decode() if isinstance(last, bytes) else str(last)
        return None

    def _ack_pending_upto(self, upto: str) -> None:
        """XACK pending entries ``<= upto``: the recovered epoch already holds their results."""
        while True:
            pending = self._r.xpending_range(self._key, self._group, min="-", max=upto, count=1000)
            if not pending:
                return
            self._r.xack(self._key, self._group, *[p["message_id"] for p in pending])
            if len(pending) < 1000:
                return

    # -- reading -----------------------------------------------------------------------------
    def _read_replay(self) -> Entries:
        assert self._replay_from is not None and self._replay_to is not None
        found: Any = self._r.xrange(self._key, min=f"({self._replay_from}", max="+", count=self._batch_size)
        entries: Entries = [e for e in found if _id_tuple(e[0]) <= self._replay_to]
        if not entries:
            self._replay_from = None
            return []
        self._replay_from = entries[-1][0].decode()
        if _id_tuple(entries[-1][0]) >= self._replay_to:
            self._replay_from = None
        return entries

    def _read_claimed(self) -> Entries:
        assert self._claim_cursor is not None
        reply: Any = self._r.xautoclaim(
            self._key,
            self._group,
            self._consumer,
            self._claim_idle_ms,
            start_id=self._claim_cursor,
            count=self._batch_size,
        )
        cursor, claimed = reply[0], reply[1]
        cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        self._claim_cursor = None if cursor == "0-0" else cursor
        gone = [eid for eid, fields in claimed if not fields]
        if gone:  # deleted while pending (by hand: this reader's trimming never does it): nothing left to process
            log.warning("%s: %d pending entries were deleted before they were processed", self._key, len(gone))
            self._r.xack(self._key, self._group, *gone)
        return [(eid, fields) for eid, fields in claimed if fields]

    def _read_new(self) -> Entries:
        reply: Any = self._r.xreadgroup(
            self._group, self._consumer, {self._key: ">"}, count=self._batch_size
        )
        if not reply:
            return []
        return reply[0][1]  # type: ignore[no-any-return]

    def _read(self) -> Entries:
        while self._replay_from is not None:
            entries = self._read_replay()
            if entries:
                return entries
        while self._claim_cursor is not None:
            entries = self._read_claimed()
            if entries:
                return entries
        return self._read_new()

    def _ack_sealed(self) -> None:
        if not self._sealed:
            return
        sealed = self._unacked[: self._sealed]
        for i in range(0, len(sealed), 10_000):
            self._r.xack(self._key, self._group, *sealed[i : i + 10_000])
        del self._unacked[: self._sealed]
        self._sealed = 0

    def _maybe_trim(self) -> None:
        """Trim up to what every group had acknowledged one trim interval ago (see the module docs)."""
        now = time.monotonic()
        if now < self._trim_due:
            return
        self._trim_due = now + self._trim_every_s
        if self._trim_point is not None:
            removed = trim_acknowledged(self._r, self._key, self._trim_point)
            if removed:
                log.debug("%s: trimmed %d acknowledged entries", self._key, removed)
        self._trim_point = acknowledged_upto(self._r, self._key)

    def next_batch(self) -> list[RawRecord]:
        self._ack_sealed()
        if self._trim_acked:
            self._maybe_trim()
        drained_marker = self._stop == "eof" and bool(self._r.exists(self._eof_marker))
        entries = self._read()
        if not entries:
            if self._stop == "drained" or drained_marker:
                if not self._unacked:
                    raise StopIteration
                # Wait for the epoch holding the last entries to close, so they are acked first.
            self._next_awake = datetime.now(UTC) + self._poll
            return []
        self._next_awake = None
        source, default_fmt, payload_field = self._source, self._default_fmt, self._payload_field
        records = []
        for eid, fields in entries:
            fmt = fields.get(_FMT)
            payload: bytes | dict[str, Any]
            if payload_field is None:  # the whole entry is the record (e.g. an outbox message)
                payload = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items()}
            else:
                payload = fields.get(payload_field, b"")
            records.append(
                RawRecord(
                    source=source,
                    offset=eid.decode(),
                    payload=payload,
                    fmt=fmt.decode() if fmt else default_fmt,
                )
            )
            self._unacked.append(eid)
        self._last = records[-1].offset  # type: ignore[assignment]
        return records

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> str | None:
        self._sealed = len(self._unacked)
        return self._last

    def close(self) -> None:
        self._r.close()


class RedisStreamSource(FixedPartitionedSource[RawRecord, str | None]):
    """Read the input streams ``{prefix}in:0 … {prefix}in:{partitions-1}`` with a consumer group.

    One Bytewax partition per stream, so the workers of a cluster split the streams between them.
    Each partition reads in batches (``XREADGROUP … COUNT batch_size``) and yields
    :class:`~connectors.records.RawRecord` with ``source="redis:{stream}"`` and ``offset`` = the entry
    id; the payload is passed on uninterpreted.

    **Delivery guarantee: at-least-once; exactly-once in effect with idempotent sinks and recovery.**
    An entry is XACKed only after the dataflow's outputs finished the epoch that carried it (see
    :class:`_RedisStreamPartition`). After a crash, entries that were delivered and not acked are
    pending in the group: a restart without recovery claims them back with ``XAUTOCLAIM`` and emits
    them again before new ones; with recovery, the partition resumes from its snapshot (the last
    entry id of the recovered epoch), acks pending entries up to it and replays every later entry
    the group had delivered, so the dataflow's restored state sees each entry once. Duplicates
    downstream are possible after a crash and are removed by the flow's dedupe / idempotent writes.

    ``stop`` makes a bounded run: ``"eof"`` finishes once the streams are drained and the producer
    set :func:`eof_key`; ``"drained"`` as soon as they are drained; ``"never"`` (default) runs until
    stopped. A finishing partition first waits for its last epoch to close and acks it.

    ``trim_acked`` (default on) trims each stream behind what every consumer group has acknowledged, every
    ``trim_every_s`` seconds (see the module docs). ``payload_field=None`` yields each entry's fields as a
    dict of strings (how the flow reads outbox messages back), else that field's bytes.

    >>> src = RedisStreamSource("redis://localhost:6379", "pulse:", partitions=2)
    >>> src.list_parts()
    ['pulse:in:0', 'pulse:in:1']
    """

    def __init__(
        self,
        redis_url: str,
        prefix: str = "pulse:",
        partitions: int = 4,
        *,
        group: str = "pulse",
        consumer: str = "pulse",
        batch_size: int = 1000,
        stop: StopMode = "never",
        poll_seconds: float = 0.05,
        claim_idle_ms: int = 0,
        default_fmt: str = "jsonl",
        streams: Sequence[str] | None = None,
        payload_field: str | None = PAYLOAD_FIELD,
        trim_acked: bool = True,
        trim_every_s: float = 30.0,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        if stop not in ("never", "eof", "drained"):
            raise ValueError(f"stop must be 'never', 'eof' or 'drained', got {stop!r}")
        self.redis_url = redis_url
        self.prefix = prefix
        self.partitions = partitions
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.claim_idle_ms = claim_idle_ms
        self.default_fmt = default_fmt
        #: Explicit stream keys (e.g. the feedback stream) instead of ``{prefix}in:{n}``.
        self.streams = list(streams) if streams is not None else None
        #: The entry field holding the record; None: the whole entry (outbox messages).
        self.payload_field = payload_field
        #: Trim each stream behind what every consumer group acknowledged (off for streams others read too).
        self.trim_acked = trim_acked
        self.trim_every_s = trim_every_s

    def list_parts(self) -> list[str]:
        if self.streams is not None:
            return list(self.streams)
        return [stream_key(self.prefix, n) for n in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: str | None
    ) -> _RedisStreamPartition:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        return _RedisStreamPartition(
            client,
            for_part,
            resume_state,
            group=self.group,
            # One consumer per stream: a partition is owned by one worker at a time, so after a
            # restart the same consumer name finds its own pending entries.
            consumer=f"{self.consumer}:{for_part}",
            batch_size=self.batch_size,
            stop=self.stop,
            eof_marker=eof_key(self.prefix),
            poll=timedelta(seconds=self.poll_seconds),
            claim_idle_ms=self.claim_idle_ms,
            default_fmt=self.default_fmt,
            payload_field=self.payload_field,
            trim_acked=self.trim_acked,
            trim_every_s=self.trim_every_s,
        )
