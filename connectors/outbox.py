"""Outbound messages: one Redis stream per channel, ``{prefix}outbox:{channel}``, idempotent by reply id.

**The outbox contract** (ARCHITECTURE.md, "Redis layout"): every writer (CRM replies, DM requests, incident
notices, rule webhooks) and every reader (the relay, the flow's read-back of replies, the dashboard, tests)
goes through :class:`OutboxMessage` and this module. An entry's fields are exactly :data:`OUTBOX_FIELDS`:
``reply_id``, ``kind`` (one of :data:`KINDS`), ``channel``, ``brand``, ``in_reply_to`` (mention id or empty),
``case_id``, ``customer_id``, ``agent``, ``text``, ``url`` (webhooks only) and ``ts`` (ISO 8601). A message is
queued once per reply id: the mark ``{prefix}outbox:sent:{reply_id}`` (kept :data:`SENT_MARK_SECONDS`) is set
with the append, atomically, so a replayed or retried write never queues it twice.

Writers:

- :func:`write_message` / :func:`write_messages` append messages from Python (notices, tests, tools);
- the CRM appends replies, DM requests and rule messages inside its own Lua scripts, atomically with the case
  update. The CRM never imports this package: ``stream/`` hands it :data:`ENCODING` (an
  :class:`OutboxEncoding`, the adapter of the CRM's port ``crm.outbox.OutboxEncoder``), which turns the CRM's
  plain dicts into the XADD field list of this contract and names the stream's cap.

A rule webhook is a message of kind ``webhook`` on the channel ``webhook`` (stream ``{prefix}outbox:webhook``)
whose ``url`` is where it goes and whose ``text`` is the event as a JSON document.

>>> m = OutboxMessage(reply_id="r-1", kind="reply", channel="twitter", text="on it!", ts="2024-01-01T10:05:00+00:00")
>>> f = m.fields()
>>> OutboxMessage.from_fields(dict(zip(f[::2], f[1::2]))) == m
True
>>> outbox_key("pulse:", "twitter"), sent_key("pulse:", "r-1")
('pulse:outbox:twitter', 'pulse:outbox:sent:r-1')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from connectors.redis_streams import XADD_NEXT_LUA

__all__ = [
    "ENCODING",
    "KINDS",
    "OUTBOX_FIELDS",
    "OUTBOX_MAXLEN",
    "SENT_MARK_SECONDS",
    "WEBHOOK_CHANNEL",
    "OutboxEncoding",
    "OutboxMessage",
    "outbox_key",
    "read_messages",
    "sent_key",
    "write_message",
    "write_messages",
]

log = logging.getLogger(__name__)

#: What an outbox message is: a public reply, a request to continue in private, an incident notice,
#: a business rule's webhook call.
KINDS = ("reply", "dm_request", "notice", "webhook")
#: The fields of every outbox entry, in this order.
OUTBOX_FIELDS = ("reply_id", "kind", "channel", "brand", "in_reply_to", "case_id", "customer_id", "agent",
                 "text", "url", "ts")
#: How long the sent-once mark of a reply id is kept (180 days; the CRM's scripts use the same lifetime).
SENT_MARK_SECONDS = 180 * 86400
#: Each channel's outbox stream keeps about this many entries (``XADD MAXLEN ~``). The relay delivers them as
#: they come; only a relay stopped for this many messages would see the oldest undelivered ones trimmed.
OUTBOX_MAXLEN = 100_000
#: The channel (and stream ``{prefix}outbox:webhook``) of rule webhooks.
WEBHOOK_CHANNEL = "webhook"


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
    >>> OutboxMessage(reply_id="w-1", kind="webhook", channel="webhook")
    Traceback (most recent call last):
    ...
    ValueError: outbox message w-1: a webhook needs a url
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
        for name in OUTBOX_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"outbox message {self.reply_id!r}: {name} must be a string, "
                                 f"got {type(getattr(self, name)).__name__}")
        if not self.reply_id:
            raise ValueError("an outbox message needs a reply_id")
        if self.kind not in KINDS:
            raise ValueError(f"outbox message {self.reply_id}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.channel:
            raise ValueError(f"outbox message {self.reply_id}: no channel")
        if self.kind == "webhook" and not self.url:
            raise ValueError(f"outbox message {self.reply_id}: a webhook needs a url")

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
    def from_dict(cls, d: Mapping[str, Any]) -> OutboxMessage:
        """From a plain dict of the contract's fields (missing ones empty, ``None`` as empty); others refused.

        >>> OutboxMessage.from_dict({"reply_id": "r-1", "kind": "reply", "channel": "forum", "url": None}).url
        ''
        >>> OutboxMessage.from_dict({"reply_id": "r-1", "kind": "reply", "channel": "forum", "body": "x"})
        Traceback (most recent call last):
        ...
        ValueError: outbox message r-1: unknown field(s) body
        """
        unknown = set(d) - set(OUTBOX_FIELDS)
        if unknown:
            raise ValueError(f"outbox message {d.get('reply_id', '')}: unknown field(s) {', '.join(sorted(unknown))}")
        values = {name: d[name] for name in OUTBOX_FIELDS if d.get(name) is not None}
        values.setdefault("reply_id", "")
        values.setdefault("kind", "")
        values.setdefault("channel", "")
        return cls(**values)

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> OutboxMessage:
        """Rebuild from a stream entry's fields (bytes or str keys and values); ValueError if it is no message."""
        def text(name: str) -> str:
            v = fields.get(name.encode(), fields.get(name, b""))
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

        return cls(**{name: text(name) for name in OUTBOX_FIELDS})


class OutboxEncoding:
    """The contract as an adapter for writers that do the XADD themselves (the CRM's Lua scripts).

    Satisfies the CRM's port ``crm.outbox.OutboxEncoder``: :meth:`encode` validates a plain dict of the
    contract's fields and returns the XADD field list; :attr:`maxlen` caps each channel's stream.

    >>> ENCODING.encode({"reply_id": "r-1", "kind": "dm_request", "channel": "forum", "text": "DM us",
    ...                  "ts": "2024-01-01T00:00:00+00:00"})[:6]
    ['reply_id', 'r-1', 'kind', 'dm_request', 'channel', 'forum']
    >>> ENCODING.encode({"reply_id": "r-1", "kind": "post", "channel": "forum"})
    Traceback (most recent call last):
    ...
    ValueError: outbox message r-1: kind must be one of reply, dm_request, notice, webhook, got 'post'
    """

    maxlen: int = OUTBOX_MAXLEN

    def encode(self, message: Mapping[str, Any]) -> list[str]:
        return OutboxMessage.from_dict(message).fields()


#: The encoding every writer uses.
ENCODING = OutboxEncoding()

# KEYS[1] stream, KEYS[2] sent mark; ARGV[1] mark lifetime (s), ARGV[2] maxlen, ARGV[3..] field/value pairs.
_APPEND_ONCE = XADD_NEXT_LUA + """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  return xadd_next(KEYS[1], ARGV[2], fields)
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
    """The newest ``count`` messages of a channel's outbox, oldest first (entries that are no message are
    skipped with a warning)."""
    entries: Any = client.xrevrange(outbox_key(prefix, channel), count=count) or []
    out = []
    for entry_id, fields in reversed(entries):
        try:
            out.append(OutboxMessage.from_fields(fields))
        except ValueError as exc:
            log.warning("outbox %s entry %r is not a message: %s", channel, entry_id, exc)
    return out
