"""Outbound messages: one Redis stream per channel, ``{prefix}outbox:{channel}``, idempotent by reply id.

**The outbox contract** (ARCHITECTURE.md, "Redis layout"): every writer (CRM replies, DM requests, incident
notices, rule webhooks) and every reader (the relay, the dashboard, tests) goes through
:class:`OutboxMessage`, :func:`write_message` and :func:`read_messages`. An entry's fields are exactly
:data:`OUTBOX_FIELDS`: ``reply_id``, ``kind`` (one of :data:`KINDS`), ``channel``, ``brand``, ``in_reply_to``
(mention id or empty), ``case_id``, ``customer_id``, ``agent``, ``text``, ``url`` (webhooks only) and ``ts``
(ISO 8601). A message is queued once per reply id: the mark ``{prefix}outbox:sent:{reply_id}`` (kept
:data:`SENT_MARK_SECONDS`) is set with the append, atomically, so a replayed or retried write never queues
it twice. Lua writers elsewhere (the CRM's scripts) take :meth:`OutboxMessage.fields` as their XADD
arguments and set the same mark.

>>> m = OutboxMessage(reply_id="r-1", kind="reply", channel="twitter", text="on it!", ts="2024-01-01T10:05:00+00:00")
>>> f = m.fields()
>>> OutboxMessage.from_fields(dict(zip(f[::2], f[1::2]))) == m
True
>>> outbox_key("pulse:", "twitter"), sent_key("pulse:", "r-1")
('pulse:outbox:twitter', 'pulse:outbox:sent:r-1')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["KINDS", "OUTBOX_FIELDS", "SENT_MARK_SECONDS", "OutboxMessage", "outbox_key", "read_messages",
           "sent_key", "write_message", "write_messages"]

log = logging.getLogger(__name__)

#: What an outbox message is: a public reply, a request to continue in private, an incident notice,
#: a business rule's webhook call.
KINDS = ("reply", "dm_request", "notice", "webhook")
#: The fields of every outbox entry, in this order.
OUTBOX_FIELDS = ("reply_id", "kind", "channel", "brand", "in_reply_to", "case_id", "customer_id", "agent",
                 "text", "url", "ts")
#: How long the sent-once mark of a reply id is kept (180 days).
SENT_MARK_SECONDS = 180 * 86400
#: Each channel's outbox stream keeps about this many entries (delivered ones are acknowledged by the relay).
OUTBOX_MAXLEN = 100_000


def outbox_key(prefix: str, channel: str) -> str:
    """The outbox stream of one channel."""
    return f"{prefix}outbox:{channel}"


def sent_key(prefix: str, reply_id: str) -> str:
    """The mark set once ``reply_id`` was queued (on any channel)."""
    return f"{prefix}outbox:sent:{reply_id}"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One outbound message (ARCHITECTURE.md's outbox entry); ``reply_id`` makes writing it idempotent.

    >>> OutboxMessage(reply_id="", kind="reply", channel="twitter")
    Traceback (most recent call last):
    ...
    ValueError: an outbox message needs a reply_id
    >>> OutboxMessage(reply_id="n-1", kind="tweet", channel="twitter")
    Traceback (most recent call last):
    ...
    ValueError: outbox message n-1: kind must be one of reply, dm_request, notice, webhook, got 'tweet'
    """

    reply_id: str
    kind: str
    channel: str
    brand: str = ""
    in_reply_to: str = ""
    case_id: str = ""
    customer_id: str = ""
    agent: str = ""
    text: str = ""
    url: str = ""
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        if not self.reply_id:
            raise ValueError("an outbox message needs a reply_id")
        if self.kind not in KINDS:
            raise ValueError(f"outbox message {self.reply_id}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.channel:
            raise ValueError(f"outbox message {self.reply_id}: no channel")

    def fields(self) -> list[str]:
        """``[name, value, name, value, ...]`` in :data:`OUTBOX_FIELDS` order: the arguments of an XADD."""
        out: list[str] = []
        for name in OUTBOX_FIELDS:
            out += [name, getattr(self, name) or ""]
        return out

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def to_json(self) -> bytes:
        """The body a relay delivers: the entry's fields as one JSON object."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> OutboxMessage:
        """Rebuild from a stream entry's fields (bytes or str keys and values)."""
        def text(name: str) -> str:
            v = fields.get(name.encode(), fields.get(name, b""))
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

        return cls(**{name: text(name) for name in OUTBOX_FIELDS})


# KEYS[1] stream, KEYS[2] sent mark; ARGV[1] mark lifetime (s), ARGV[2] maxlen, ARGV[3..] field/value pairs.
_APPEND_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
end
return false
"""


def write_messages(client: redis.Redis, prefix: str, messages: Iterable[OutboxMessage]) -> list[str | None]:
    """Queue messages on their channels' outboxes in one pipeline; per message its entry id, or None when
    that reply id was queued before."""
    messages = list(messages)
    if not messages:
        return []
    script = client.register_script(_APPEND_ONCE)
    pipe = client.pipeline(transaction=False)
    for m in messages:
        script(keys=[outbox_key(prefix, m.channel), sent_key(prefix, m.reply_id)],
               args=[SENT_MARK_SECONDS, OUTBOX_MAXLEN, *m.fields()], client=pipe)
    return [r.decode() if isinstance(r, bytes) else (r or None) for r in pipe.execute()]


def write_message(client: redis.Redis, prefix: str, message: OutboxMessage) -> bool:
    """Queue one message; True if it was new, False if its reply id was queued before."""
    return write_messages(client, prefix, [message])[0] is not None


def read_messages(client: redis.Redis, prefix: str, channel: str, count: int = 50) -> list[OutboxMessage]:
    """The newest ``count`` messages of a channel's outbox, oldest first."""
    entries: Any = client.xrevrange(outbox_key(prefix, channel), count=count) or []
    return [OutboxMessage.from_fields(fields) for _id, fields in reversed(entries)]


# ---- the pre-contract outbox (fields id/data); removed once every writer and reader uses the API above ----
_LEGACY_APPEND_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[1], '*', 'reply_id', ARGV[1], 'channel', ARGV[2], 'body', ARGV[3], 'ts', ARGV[4])
"""


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
        self._script = client.register_script(_LEGACY_APPEND_ONCE)

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
