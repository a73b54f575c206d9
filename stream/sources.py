"""Building the Bytewax source for a ``--source SPEC`` (parsed by :func:`connectors.spec.parse_source`)."""

from __future__ import annotations

from datetime import UTC, datetime

from bytewax.inputs import Source

from connectors.records import RawRecord
from connectors.spec import FileSpec, RedisSpec, SimSpec, WebSocketSpec, parse_source
from stream.settings import Settings

__all__ = ["build_source", "is_endless", "live_inputs"]


def build_source(spec: str, *, speed: float = 0.0, seed: int | None = None, limit: int | None = None,
                 fmt: str = "jsonl", mapping: str | None = None, bounded: bool = False,
                 warmup_hours: float = 6.0, settings: Settings | None = None) -> Source[RawRecord]:
    """The source for ``spec``; raises ``ValueError`` with a one-line message for anything unusable.

    ``seed`` overrides the seed of a bare ``sim``; ``limit`` bounds the simulator (``warmup_hours``: no
    injected incident before that much event time); ``fmt``/``mapping`` apply to ``file:``; ``bounded``
    makes Redis Streams stop once drained after the producer marked the end (``pulse ingest --eof``).
    """
    parsed = parse_source(spec)
    if isinstance(parsed, SimSpec):
        from connectors.simulator import SimulatorSource

        use_seed = parsed.seed if spec.startswith("sim:") or seed is None else seed
        # a live world starts now: fixed here, so the run is named by it (stream/runs.py)
        start = datetime.now(UTC).replace(second=0, microsecond=0) if speed > 0 else None
        return SimulatorSource(seed=use_seed, limit=limit, speed=speed, warmup_hours=warmup_hours, start=start)
    if isinstance(parsed, FileSpec):
        from connectors.files import FileSource

        return FileSource(parsed.path.resolve(), fmt, mapping=mapping, speed=speed)
    if isinstance(parsed, WebSocketSpec):
        from connectors.websocket import WebSocketSource

        return WebSocketSource(parsed.url)
    if isinstance(parsed, RedisSpec):
        from connectors.redis_streams import RedisStreamSource

        return RedisStreamSource(parsed.url, parsed.prefix, parsed.partitions, group=parsed.group,
                                 stop="eof" if bounded else "never")
    raise ValueError(f"unsupported source {spec!r}")


def is_endless(spec: str, *, limit: int | None = None, bounded: bool = False) -> bool:
    """Whether ``spec`` runs until stopped (then the live feedback input joins the flow)."""
    parsed = parse_source(spec, check_files=False)
    if isinstance(parsed, SimSpec):
        return limit is None
    if isinstance(parsed, RedisSpec):
        return not bounded
    return False


def live_inputs(redis_url: str, settings: Settings) -> list[Source[RawRecord]]:
    """Inputs a live run adds to its source: labels for the models, and the brand's own replies.

    Labels come from ``{prefix}feedback`` (``pulse feedback``), trimmed once the flow acknowledged them. Replies
    that agents (``pulse crm reply``, the Service desk page) and business rules send are outbox messages on
    ``{prefix}outbox:{channel}`` (the contract of :mod:`connectors.outbox`); each is read back whole
    (``fmt="outbox"``, parsed by :mod:`stream.parse` into a ``from_brand`` Mention replying to its
    ``in_reply_to``), so the analytics measure first response from real replies, as when a channel's feed
    returns them. Both are read with their own consumer groups and acked after processing; the outboxes are not
    trimmed by this reader (the relay and the dashboard read them too: their own cap bounds them).
    """
    from connectors.redis_streams import RedisStreamSource
    from stream.keys import Keys
    from stream.schema import CHANNELS

    keys = Keys(settings.prefix)
    return [
        RedisStreamSource(redis_url, settings.prefix, 1, group="pulse-feedback", streams=[keys.feedback]),
        RedisStreamSource(redis_url, settings.prefix, 1, group="pulse-replies", payload_field=None,
                          default_fmt="outbox", trim_acked=False,
                          streams=[keys.outbox(channel) for channel in CHANNELS if channel != "calls"]),
    ]
