"""Parsing and validation: every kind of bad input becomes a dead letter that says why."""

from __future__ import annotations

import orjson
import pytest

from connectors.records import RawRecord
from stream.parse import parse_record
from stream.schema import CallVolume, ChurnOutcome, DeadLetter, Mention

GOOD = {"id": "twitter:1", "channel": "twitter", "brand": "acme", "author": "bob", "text": "where is my order?",
        "ts": "2024-03-01T10:00:00Z"}


def _raw(payload: bytes | dict, fmt: str = "jsonl") -> RawRecord:
    return RawRecord("test", 0, payload, fmt)


def test_good_mention_parses_with_aware_utc_time() -> None:
    p = parse_record(_raw(orjson.dumps(GOOD)))
    assert isinstance(p.record, Mention)
    assert p.key == "twitter:1"
    assert p.record.ts.utcoffset() is not None and p.record.ts.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("payload", "reason_start"),
    [
        (b'{"id": "x", "text": ', "json: malformed JSON"),
        (b"\xff\xfe not utf-8", "encoding: invalid UTF-8"),
        (b"[1, 2, 3]", "record: expected a JSON object"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "brand"}), "brand: missing"),
        (orjson.dumps({**GOOD, "text": 42}), "text: expected a string, got int"),
        (orjson.dumps({**GOOD, "ts": "last tuesday"}), "ts: unparseable timestamp"),
        (orjson.dumps({**GOOD, "ts": None}), "ts: missing"),
        (orjson.dumps({**GOOD, "from_brand": "yes"}), "from_brand: expected true/false"),
        (orjson.dumps({**GOOD, "channel": "twit ter!"}), "channel: not a channel name"),
        (orjson.dumps({**GOOD, "text": "x" * 1_000_000}), "text: too long"),
        (orjson.dumps({**GOOD, "type": "tweetstorm"}), "type: unknown record type"),
        (orjson.dumps({"type": "calls", "ts": "2024-01-01T00:00:00Z", "queue": "q", "calls": -3}), "calls:"),
    ],
)
def test_bad_input_becomes_dead_letter_with_reason_and_raw(payload: bytes, reason_start: str) -> None:
    p = parse_record(_raw(payload))
    assert isinstance(p.record, DeadLetter)
    assert p.record.reason.startswith(reason_start), p.record.reason
    assert p.record.raw == payload  # the raw bytes are kept whole
    assert p.key == "test:0" and p.source == "test"


def test_twcs_row_becomes_mention_with_reply_link_and_brand() -> None:
    row = {"tweet_id": "119238", "author_id": "ChaseSupport", "inbound": "False",
           "created_at": "Wed Oct 11 13:25:49 +0000 2017", "text": "@105835 Your business means a lot",
           "response_tweet_id": "", "in_response_to_tweet_id": "119239", "brand": "ChaseSupport"}
    m = parse_record(_raw(row, "twcs")).record
    assert isinstance(m, Mention)
    assert (m.id, m.from_brand, m.in_reply_to, m.brand) == ("twitter:119238", True, "twitter:119239", "ChaseSupport")
    assert m.ts.isoformat() == "2017-10-11T13:25:49+00:00"


def test_twcs_row_with_bad_inbound_is_dead_letter() -> None:
    row = {"tweet_id": "1", "author_id": "a", "inbound": "maybe", "created_at": "Wed Oct 11 13:25:49 +0000 2017",
           "text": "hi", "brand": "x"}
    dl = parse_record(_raw(row, "twcs")).record
    assert isinstance(dl, DeadLetter) and dl.reason.startswith("inbound:")
    assert b'"inbound":"maybe"' in dl.raw


def test_calls_and_churn_records() -> None:
    calls = parse_record(_raw({"ts": "2024-01-01T00:15:00Z", "queue": "billing", "calls": 12}, "calls")).record
    assert isinstance(calls, CallVolume) and calls.calls == 12
    churn = parse_record(_raw(orjson.dumps({"type": "churn", "customer_id": "c1", "ts": 1704067200,
                                            "churned": True}))).record
    assert isinstance(churn, ChurnOutcome) and churn.churned


def test_an_outbox_message_reads_back_as_the_brands_reply() -> None:
    from connectors.outbox import OutboxMessage

    msg = OutboxMessage(reply_id="r:C-twitter:1:ab", kind="dm_request", channel="twitter", brand="acme",
                        in_reply_to="twitter:1", case_id="C-twitter:1", customer_id="C-9", agent="ann",
                        text="DM us", ts="2024-03-01T10:05:00+00:00")
    m = parse_record(_raw(msg.to_dict(), "outbox")).record
    assert isinstance(m, Mention)
    assert (m.id, m.channel, m.brand, m.author, m.from_brand, m.in_reply_to) == (
        "r:C-twitter:1:ab", "twitter", "acme", "acme", True, "twitter:1")
    assert m.ts.isoformat() == "2024-03-01T10:05:00+00:00" and m.meta["agent"] == "ann"
    for fields, reason in (({"reply_id": "x", "kind": "tweet", "channel": "twitter"}, "outbox: "),
                           ({**msg.to_dict(), "kind": "webhook", "url": "http://h/"}, "outbox: "),
                           ({**msg.to_dict(), "ts": "soon"}, "ts: unparseable")):
        dead = parse_record(_raw(fields, "outbox")).record
        assert isinstance(dead, DeadLetter) and dead.reason.startswith(reason), dead.reason
