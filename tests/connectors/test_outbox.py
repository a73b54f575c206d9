"""The outbox contract on a real Redis: one entry per reply id, exactly ARCHITECTURE's fields."""

from __future__ import annotations

import redis

from connectors.outbox import (
    OUTBOX_FIELDS,
    OutboxMessage,
    outbox_key,
    read_messages,
    write_message,
    write_messages,
)


def test_a_message_is_queued_once_with_the_contract_fields(r: redis.Redis, key_prefix: str) -> None:
    m = OutboxMessage(reply_id="r-1", kind="reply", channel="twitter", brand="acme", in_reply_to="twitter:1",
                      case_id="C-twitter:1", customer_id="C-1001", agent="ann", text="on it!",
                      ts="2024-01-01T10:05:00+00:00")
    assert write_message(r, key_prefix, m) is True
    assert write_message(r, key_prefix, m) is False  # a retried write is a no-op
    entries = r.xrange(outbox_key(key_prefix, "twitter"))
    assert len(entries) == 1
    assert [k.decode() for k in entries[0][1]] == list(OUTBOX_FIELDS)
    assert read_messages(r, key_prefix, "twitter") == [m]


def test_batch_writes_report_which_were_new(r: redis.Redis, key_prefix: str) -> None:
    a = OutboxMessage(reply_id="n-1", kind="notice", channel="forum", text="We know about the outage.")
    b = OutboxMessage(reply_id="w-1", kind="webhook", channel="webhook", url="https://example.com/hook")
    assert write_message(r, key_prefix, a)
    ids = write_messages(r, key_prefix, [a, b])
    assert ids[0] is None and ids[1] is not None
    assert [m.reply_id for m in read_messages(r, key_prefix, "webhook")] == ["w-1"]
