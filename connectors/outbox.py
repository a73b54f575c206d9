"""Outbound replies: one Redis stream per channel, ``{prefix}outbox:{channel}``, idempotent by reply id.

An entry has the fields ``reply_id``, ``channel``, ``body`` (bytes, usually JSON) and ``ts`` (when it
was queued, UTC ISO). A Lua script adds the reply id to ``{prefix}outbox:{channel}:seen`` and appends
the entry only if the id was new, atomically, so a replayed or retried write never queues a reply
twice. (On Redis Cluster the two keys must share a slot: use a prefix with a hash tag, e.g. ``{pulse}:``.)

>>> item = OutboxItem(reply_id="r-1", channel="twitter", body=b'{"text": "on it!"}')
>>> outbox_key("pulse:", item.channel), seen_key("pulse:", item.channel)
('pulse:outbox:twitter', 'pulse:outbox:twitter:seen')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["Outbox", "OutboxItem", "OutboxSink", "outbox_key", "seen_key"]

log = logging.getLogger(__name__)

_APPEND_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[1], '*', 'reply_id', ARGV[1], 'channel', ARGV[2], 'body', ARGV[3], 'ts', ARGV[4])
"""


def outbox_key(prefix: str, channel: str) -> str:
    """The outbox stream of one channel."""
    return f"{prefix}outbox:{channel}"


def seen_key(prefix: str, channel: str) -> str:
    """The set of reply ids already queued on one channel."""
    return f"{prefix}outbox:{channel}:seen"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A reply (or proactive notice) to send on a channel; ``reply_id`` makes it idempotent.

    ``body`` is what the channel's connector receives (bytes; a dict is serialised to JSON).

    >>> OutboxItem.from_fields({b"reply_id": b"r-1", b"channel": b"forum", b"body": b"{}", b"ts": b"t"})
    OutboxItem(reply_id='r-1', channel='forum', body=b'{}', ts='t')
    """

    reply_id: str
    channel: str
    body: bytes
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def of(cls, reply_id: str, channel: str, body: bytes | dict[str, Any]) -> OutboxItem:
        """Build one, serialising a dict body with orjson.

        >>> OutboxItem.of("r-2", "twitter", {"text": "hi"}).body
        b'{"text":"hi"}'
        """
        return cls(reply_id, channel, body if isinstance(body, bytes) else orjson.dumps(body))

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> OutboxItem:
        """Rebuild from a stream entry's fields."""
        return cls(
            reply_id=fields.get(b"reply_id", b"").decode("utf-8", "replace"),
            channel=fields.get(b"channel", b"").decode("utf-8", "replace"),
            body=fields.get(b"body", b""),
            ts=fields.get(b"ts", b"").decode("utf-8", "replace"),
        )


class Outbox:
    """Queue replies on ``{prefix}outbox:{channel}``, each reply id at most once.

    >>> Outbox.__name__
    'Outbox'
    """

    def __init__(self, client: redis.Redis, prefix: str = "pulse:") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_APPEND_ONCE)

    def append(self, item: OutboxItem) -> str | None:
        """Queue one reply; the new entry id, or None when that reply id was already queued."""
        return self.append_many([item])[0]

    def append_many(self, items: Iterable[OutboxItem]) -> list[str | None]:
        """Queue replies in one pipeline; per item its entry id, or None for an already queued id."""
        items = list(items)
        if not items:
            return []
        pipe = self.client.pipeline(transaction=False)
        for it in items:
            if not it.reply_id:
                raise ValueError(f"an outbox item needs a reply_id: {it!r}")
            self._script(
                keys=[outbox_key(self.prefix, it.channel), seen_key(self.prefix, it.channel)],
                args=[it.reply_id, it.channel, it.body, it.ts],
                client=pipe,
            )
        return [r.decode() if isinstance(r, bytes) else None for r in pipe.execute()]


class _OutboxPartition(StatelessSinkPartition[OutboxItem]):
    def __init__(self, redis_url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
        self._outbox = Outbox(self._client, prefix)

    def write_batch(self, items: list[OutboxItem]) -> None:
        results = self._outbox.append_many(items)
        dupes = sum(r is None for r in results)
        if dupes:
            log.debug("outbox: %d of %d replies were already queued", dupes, len(items))

    def close(self) -> None:
        self._client.close()


class OutboxSink(DynamicSink[OutboxItem]):
    """Bytewax sink writing :class:`OutboxItem` values to their channel's outbox stream.

    **Delivery guarantee: exactly-once in effect.** Bytewax may write an item again after a
    restart (at-least-once); the reply id makes the second write a no-op.

    >>> OutboxSink("redis://localhost:6379", "pulse:").prefix
    'pulse:'
    """

    def __init__(self, redis_url: str, prefix: str = "pulse:") -> None:
        self.redis_url = redis_url
        self.prefix = prefix

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _OutboxPartition:
        return _OutboxPartition(self.redis_url, self.prefix)
