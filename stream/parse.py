"""Turning raw records from any source into typed records, or dead letters that say why not.

>>> from connectors.records import INVALID_UTF8, RawRecord
>>> ok = parse_record(RawRecord("file:a", 0, b'{"id": "t:1", "channel": "twitter", "brand": "acme", '
...                            b'"author": "bob", "text": "hi", "ts": "2024-01-01T00:00:00Z"}', "jsonl"))
>>> type(ok.record).__name__, ok.key
('Mention', 't:1')
>>> bad = parse_record(RawRecord("file:a", 1, b'{"id": "t:2"', "jsonl"))
>>> bad.record.reason
'json: malformed JSON (unexpected end of data)'
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from connectors.outbox import OutboxMessage
from connectors.records import INVALID_UTF8, RawRecord
from stream.schema import CallVolume, ChurnOutcome, DeadLetter, Feedback, Mention, SchemaError

__all__ = ["Parsed", "parse_record"]

Record = Mention | CallVolume | ChurnOutcome | Feedback | DeadLetter


class Parsed(NamedTuple):
    """A parsed record with its source (for the counters), its identity and its position in the source
    (for de-duplication: the same id at another position is a duplicate)."""

    source: str
    key: str
    record: Record
    offset: str = ""


def _twcs_to_mention(row: dict[str, Any]) -> Mention:
    tweet_id = (row.get("tweet_id") or "").strip()
    if not tweet_id:
        raise SchemaError("tweet_id", "missing")
    inbound = (row.get("inbound") or "").strip()
    if inbound not in ("True", "False"):
        raise SchemaError("inbound", f"expected True or False, got {inbound[:20]!r}")
    reply_to = (row.get("in_response_to_tweet_id") or "").split(",")[0].strip()
    if reply_to.endswith(".0"):  # pandas-written exports turn ids into floats
        reply_to = reply_to[:-2]
    responses = (row.get("response_tweet_id") or "").strip()
    return Mention.from_dict(
        {
            "id": f"twitter:{tweet_id}",
            "channel": "twitter",
            "brand": row.get("brand") or "unknown",
            "author": row.get("author_id"),
            "text": row.get("text"),
            "ts": row.get("created_at"),
            "from_brand": inbound == "False",
            "in_reply_to": f"twitter:{reply_to}" if reply_to else None,
            "meta": {"response_tweet_id": responses} if responses else {},
        }
    )


def _outbox_to_mention(fields: dict[str, Any]) -> Mention:
    """An outbox message read back (``fmt="outbox"``): the brand's post on its channel, replying to
    ``in_reply_to`` when it is a reply, from the brand's account, at the message's event time."""
    try:
        msg = OutboxMessage.from_fields(fields)
    except ValueError as exc:
        raise SchemaError("outbox", str(exc)) from None
    if msg.kind == "webhook":
        raise SchemaError("outbox", f"{msg.reply_id} is a webhook call, not a post on a channel")
    meta = {"outbox_kind": msg.kind, "agent": msg.agent, "case_id": msg.case_id, "to_customer_id": msg.customer_id}
    return Mention.from_dict({
        "id": msg.reply_id, "channel": msg.channel, "brand": msg.brand, "author": msg.brand, "text": msg.text,
        "ts": msg.ts or None, "in_reply_to": msg.in_reply_to or None, "from_brand": True,
        "meta": {k: v for k, v in meta.items() if v},
    })


def _from_dict(d: Any, fmt: str) -> Mention | CallVolume | ChurnOutcome | Feedback:
    if not isinstance(d, dict):
        raise SchemaError("record", f"expected a JSON object, got {type(d).__name__}")
    if fmt == "outbox":
        return _outbox_to_mention(d)
    kind = d.get("type") if fmt in ("jsonl", "mention") else fmt
    if kind == "calls":
        return CallVolume.from_dict(d)
    if kind == "churn":
        return ChurnOutcome.from_dict(d)
    if kind == "feedback":
        return Feedback.from_dict(d)
    if kind == "twcs":
        return _twcs_to_mention(d)
    if kind not in (None, "mention", "jsonl"):
        raise SchemaError("type", f"unknown record type {kind!r}")
    return Mention.from_dict(d)


def _identity(record: Mention | CallVolume | ChurnOutcome | Feedback) -> str:
    if isinstance(record, Mention):
        return record.id
    if isinstance(record, Feedback):
        return f"feedback:{record.mention_id}:{record.model}:{record.label}"
    if isinstance(record, CallVolume):
        return f"calls:{record.brand}:{record.queue}:{record.ts.isoformat()}"
    return f"churn:{record.customer_id}:{record.ts.isoformat()}"


def parse_record(raw: RawRecord) -> Parsed:
    """Parse one raw record; never raises: anything wrong becomes a :class:`DeadLetter` with its reason."""
    try:
        payload = raw.payload
        if isinstance(payload, bytes | bytearray):
            try:
                payload = bytes(payload).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SchemaError("encoding", f"invalid UTF-8 at byte {exc.start}") from None
        if isinstance(payload, str):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise SchemaError("json", f"malformed JSON ({exc.msg})") from None
        if isinstance(payload, dict) and payload.get(INVALID_UTF8):
            raise SchemaError("encoding", "invalid UTF-8 in this row (the reader replaced it with U+FFFD)")
        record = _from_dict(payload, raw.fmt)
        return Parsed(raw.source, _identity(record), record, str(raw.offset))
    except SchemaError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - bad input must never kill the flow
        reason = f"unexpected: {type(exc).__name__}: {exc}"
    return Parsed(raw.source, raw.key, DeadLetter(raw=_raw_bytes(raw.payload), reason=reason, source=raw.source,
                                                   key=raw.key, origin=raw.origin), str(raw.offset))


def _raw_bytes(payload: bytes | str | dict[str, Any]) -> bytes | str:
    if isinstance(payload, bytes | str):
        return payload
    try:
        return orjson.dumps(payload, default=str)
    except TypeError:
        return repr(payload)
