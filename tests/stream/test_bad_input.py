"""Bad input is harmless: hypothesis generates >= 10,000 records — valid ones, malformed JSON, invalid UTF-8, wrong
types, missing fields, huge texts, bad timestamps, duplicates — in every input format (JSONL, the twcs CSV, a CSV
with a column mapping, the calls feed) and through the ingest endpoint, and one run of the real flow on a real
Redis takes them all.

Every generated record carries the outcome it must have (accepted, duplicate, or dead letter and the field the
reason names). Hypothesis checks the parser record by record (and shrinks a failure to its smallest record);
the flow run then checks the whole path: no exception escapes, per source ``accepted + dead_letters +
duplicates = offered`` = what was written, and the dead-letter stream holds exactly the bad records, each with
its reason. Marked ``slow``: about 25 s on the shared 2-core machine (generation ~8 s, the flow ~15 s).
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from connectors.files import FileSource, load_mapping
from connectors.ingest import IngestServer
from connectors.records import INVALID_UTF8, RawRecord
from connectors.redis_streams import RedisStreamSource, mark_eof
from stream.flow import build_flow
from stream.keys import Keys
from stream.parse import parse_record
from stream.schema import DeadLetter
from stream.settings import Settings
from stream.sinks import RedisSink

T0 = 1_704_103_200_000  # 2024-01-01T10:00:00Z: every valid record lies within one hour of it (nothing is late)
SPAN_MS = 3_600_000
PER_FORMAT = 2_000  # records per format at least; five formats
EXAMPLES = 150
TOKEN = "bad-input-token"
MAPPING = """
id_prefix = "forum:c"
[columns]
id = "msg_id"
brand = "company"
author = "user"
text = "body"
ts = "posted_at"
in_reply_to = "parent"
from_brand = "is_agent"
[constants]
channel = "forum"
[meta]
row = "row"
"""


@dataclass
class Case:
    """One generated record and what must become of it: ``accepted``, ``duplicate`` or ``dead`` (with the field
    the dead letter's reason starts with)."""

    payload: bytes | dict[str, str]
    expect: str
    reason: str = ""


@dataclass
class Corpus:
    """What one format collected over all hypothesis examples."""

    cases: list[Case] = field(default_factory=list)
    valid: list[Case] = field(default_factory=list)  # accepted ones, for duplicates to copy
    next_id: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def count(self) -> Counter[str]:
        return Counter(c.expect for c in self.cases)


# -- generators -----------------------------------------------------------------------------------------------
# Hypothesis draws three things per record: what kind of record it is, a text (any Unicode, or one of the odd
# ones below), and a number that decides every other detail through ``random.Random``. Few draws per record keep
# 10,000 records cheap to generate while hypothesis still steers kinds and texts.
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _twitter_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a %b %d %H:%M:%S +0000 %Y")


def _valid_ts(rnd: random.Random) -> Any:
    ms = T0 + rnd.randrange(SPAN_MS)
    return rnd.choice([_iso(ms), _iso(ms)[:-1], ms, ms / 1000, _twitter_time(ms)])


ODD_TEXTS = ["", "🙂" * 30, "a\x00b", "line1\nline2\r\nline3", '"quoted", with, commas', "<script>alert(1)</script>",
             "\u202eevil rtl", "x" * 19_999, "Ünïcödé ÄÖÜ ß", "@acme #fail http://t.co/x", "\\u0000 not an escape",
             "   ", "\t\v\f", "ｆｕｌｌｗｉｄｔｈ", "\U0010ffff\ue000"]
TEXT = st.one_of(st.text(max_size=60), st.sampled_from(ODD_TEXTS))
BRANDS = ["acme", "globex", "Ünïcode Co", "a:b{c}", "x" * 80]
CHANNELS = ["twitter", "forum", "review", "facebook", "instagram", "blog", "email", "linkedin", "my_channel2"]
AUTHORS = ["", "bob", "@Zed", "ÄnnÄ", "user with spaces", "x" * 200, "😀", "tab\there", "a,b;c"]
METAS = [{}, {"followers": 1200}, {"retweet_count": -5, "likes": "many"}, {"nested": {"x": None, "y": [1, "2"]}},
         {"big": 2**63 - 1, "small": -(2**63)}, {"": ""}, {"agent": 7}]
BAD_TS = ["soon", "2024-13-45T00:00:00Z", "", "   ", "Tue Foo 99 99:99:99 +0000 2017", "nan", 1e20, -1e20, True,
          [1, 2], {"a": 1}]
WRONG_TYPES = [("id", 7), ("channel", ["twitter"]), ("brand", 3.5), ("text", {"t": 1}), ("text", 42), ("author", 9),
               ("ts", [T0]), ("ts", {"s": 1}), ("from_brand", "yes"), ("owned", 1), ("meta", [1]), ("meta", "m"),
               ("in_reply_to", 12), ("url", 5), ("lang", ["en"])]
NOT_OBJECTS = [b"[1, 2]", b"42", b'"just a string"', b"null", b"true", b"[]", b"-0.5e3"]
JSON_KINDS = ["valid"] * 6 + ["dup"] * 2 + ["malformed", "utf8", "not_object", "wrong_type", "missing", "empty",
                                            "huge", "bad_ts", "unknown_type", "calls_type"]
TWCS_KINDS = ["valid"] * 6 + ["dup"] * 2 + ["no_id", "inbound", "bad_ts", "huge", "short_row", "utf8"]
CSV_KINDS = ["valid"] * 6 + ["dup"] * 2 + ["no_id", "no_brand", "bad_ts", "huge", "agent_flag", "utf8"]
CALLS_KINDS = ["valid"] * 6 + ["dup"] * 2 + ["negative", "fraction", "words", "nan", "bad_ts", "utf8"]
#: Written into CSV files in place of this marker: bytes that are not UTF-8.
BAD_BYTES = "BAD-BYTES-HERE"

Spec = tuple[str, str, int]


def specs(kinds: list[str]) -> st.SearchStrategy[Spec]:
    return st.tuples(st.sampled_from(kinds), TEXT, st.integers(0, 2**31))


def _mention(text: str, rnd: random.Random) -> dict[str, Any]:
    """A valid Mention-shaped dict, without its id."""
    d: dict[str, Any] = {"channel": rnd.choice(CHANNELS), "brand": rnd.choice(BRANDS), "author": rnd.choice(AUTHORS),
                         "text": text, "ts": _valid_ts(rnd)}
    extra = rnd.randrange(8)
    if extra & 1:
        d["from_brand"] = rnd.random() < 0.5
        d["in_reply_to"] = rnd.choice([None, "", "twitter:j1", "forum:w2", "unknown:42", "ü" * 30])
    if extra & 2:
        d.update(owned=rnd.random() < 0.5, lang=rnd.choice(["en", "de", "xx", None]),
                 url=rnd.choice(["", "https://x.example/1", "not a url", None]))
    if extra & 4:
        d.update(meta=rnd.choice(METAS), extra_field=rnd.choice([None, 1, "x", [1], {"a": 1}]))
    return d


def build_json(corpus: Corpus, spec: Spec, id_prefix: str) -> Case:
    """Turn a drawn spec into the bytes of one JSONL line / ingest frame and its expected outcome."""
    kind, text, p = spec
    rnd = random.Random(p)
    d = {"id": f"{id_prefix}{corpus.new_id()}", **_mention(text, rnd)}
    if kind == "dup" and corpus.valid:
        first = corpus.valid[p % len(corpus.valid)]
        if p % 2:  # the same id with other content is still the same record
            again = orjson.loads(first.payload)  # type: ignore[arg-type]
            again["text"] = text
            return Case(orjson.dumps(again), "duplicate")
        return Case(first.payload, "duplicate")
    if kind in ("valid", "dup"):
        case = Case(orjson.dumps(d), "accepted")
        corpus.valid.append(case)
        return case
    if kind == "malformed":
        line = orjson.dumps(d)
        if p % 5 == 0:  # well-formed, but a number no double holds
            return Case(line[:-1] + b',"n":1e400}', "dead", "json")
        chars = line.decode()  # cut between characters: a cut inside one would be an encoding error instead
        return Case(chars[: 1 + p % (len(chars) - 1)].encode(), "dead", "json")
    if kind == "utf8":
        d["text"] = text + "BAD-BYTES-HERE"
        return Case(orjson.dumps(d).replace(b"BAD-BYTES-HERE", rnd.choice([b"caf\xc3\x28", b"\xff\xfe", b"\xed\xa0\x80",
                                                                            b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"])),
                    "dead", "encoding")
    if kind == "not_object":
        return Case(rnd.choice(NOT_OBJECTS), "dead", "record")
    if kind == "wrong_type":
        name, value = rnd.choice(WRONG_TYPES)
        d[name] = value
        return Case(orjson.dumps(d), "dead", name)
    if kind == "missing":
        name = rnd.choice(["id", "channel", "brand", "text", "ts"])
        del d[name]
        return Case(orjson.dumps(d), "dead", name)
    if kind == "empty":
        name, value = rnd.choice([("id", ""), ("channel", ""), ("brand", ""), ("channel", "Twitter Feed!"),
                                  ("channel", "c" * 40), ("ts", None)])
        d[name] = value
        return Case(orjson.dumps(d), "dead", name)
    if kind == "huge":
        d["text"] = text + "y" * (20_001 + rnd.randrange(30_000))
        return Case(orjson.dumps(d), "dead", "text")
    if kind == "bad_ts":
        d["ts"] = rnd.choice(BAD_TS)
        return Case(orjson.dumps(d), "dead", "ts")
    if kind == "unknown_type":
        d["type"] = rnd.choice(["tweet", "", "Mention", 3])
        return Case(orjson.dumps(d), "dead", "type")
    assert kind == "calls_type"  # a mention that says it is a calls row: no calls field
    d["type"] = "calls"
    return Case(orjson.dumps(d), "dead", "calls")


def _csv_text(text: str) -> str:
    return text.replace("\x00", "")  # a NUL cannot be written into a CSV by Python's csv module


def build_twcs(corpus: Corpus, spec: Spec) -> Case:
    kind, text, p = spec
    rnd = random.Random(p)
    row = {"tweet_id": str(10_000_000 + corpus.new_id()),
           "author_id": rnd.choice(["115712", "AppleSupport", "sprintcare", "a_b_9", "Ü"]),
           "inbound": rnd.choice(["True", "False", " True ", "False "]),
           "created_at": _twitter_time(T0 + rnd.randrange(SPAN_MS)), "text": _csv_text(text),
           "response_tweet_id": rnd.choice(["", "1,2", "99.0"]), "in_response_to_tweet_id": ""}
    if corpus.valid and p % 3 == 0:
        row["in_response_to_tweet_id"] = corpus.valid[p % len(corpus.valid)].payload["tweet_id"]  # type: ignore[index]
    if kind == "dup" and corpus.valid:
        return Case({**row, "tweet_id": corpus.valid[p % len(corpus.valid)].payload["tweet_id"]},  # type: ignore[index]
                    "duplicate")
    if kind in ("valid", "dup"):
        case = Case(row, "accepted")
        corpus.valid.append(case)
        return case
    if kind == "no_id":
        return Case({**row, "tweet_id": ""}, "dead", "tweet_id")
    if kind == "inbound":
        return Case({**row, "inbound": rnd.choice(["maybe", "", "true", "1"])}, "dead", "inbound")
    if kind == "bad_ts":
        return Case({**row, "created_at": rnd.choice(["", "yesterday", "Tue Oct 99 25:61:00 +0000 2017", "2017"])},
                    "dead", "ts")
    if kind == "huge":
        return Case({**row, "text": "z" * (20_001 + rnd.randrange(10_000))}, "dead", "text")
    if kind == "utf8":
        return Case({**row, "text": row["text"] + BAD_BYTES}, "dead", "encoding")
    assert kind == "short_row"  # a ragged line: it ends after ``inbound`` (see _write_csv)
    return Case({**row, "created_at": "", "text": "", "response_tweet_id": "", "in_response_to_tweet_id": ""},
                "dead", "ts")


def build_csv(corpus: Corpus, spec: Spec) -> Case:
    kind, text, p = spec
    rnd = random.Random(p)
    row = {"msg_id": str(corpus.new_id()), "company": rnd.choice(BRANDS), "user": rnd.choice(AUTHORS),
           "body": _csv_text(text), "posted_at": _iso(T0 + rnd.randrange(SPAN_MS)), "parent": "",
           "is_agent": rnd.choice(["", "true", "false", "True", "FALSE", "1", "0", "yes", "no", " y "])}
    if corpus.valid and p % 4 == 0:
        row["parent"] = corpus.valid[p % len(corpus.valid)].payload["msg_id"]  # type: ignore[index]
    if kind == "dup" and corpus.valid:
        return Case({**row, "msg_id": corpus.valid[p % len(corpus.valid)].payload["msg_id"]}, "duplicate")  # type: ignore[index]
    if kind in ("valid", "dup"):
        case = Case(row, "accepted")
        corpus.valid.append(case)
        return case
    if kind == "no_id":
        return Case({**row, "msg_id": ""}, "dead", "id")
    if kind == "no_brand":
        return Case({**row, "company": ""}, "dead", "brand")
    if kind == "bad_ts":
        return Case({**row, "posted_at": rnd.choice(["", "tomorrow", "2024-02-30T00:00:00Z", "10:00"])}, "dead", "ts")
    if kind == "huge":
        return Case({**row, "body": "w" * (20_001 + rnd.randrange(10_000))}, "dead", "text")
    if kind == "utf8":
        return Case({**row, "user": BAD_BYTES + row["user"]}, "dead", "encoding")
    assert kind == "agent_flag"
    return Case({**row, "is_agent": rnd.choice(["perhaps", "2", "ja"])}, "dead", "from_brand")


def build_calls(corpus: Corpus, spec: Spec) -> Case:
    kind, text, p = spec
    rnd = random.Random(p)
    row = {"ts": _iso(T0 + corpus.new_id() * 1000),  # one interval per row: (brand, queue, ts) is unique
           "queue": rnd.choice(["billing", "tech", "sales", "Ünï q", _csv_text(text)[:20]]),
           "calls": str(rnd.randrange(10_000)) + rnd.choice(["", " ", ".0"]), "brand": rnd.choice(["acme", "globex", ""])}
    if kind == "dup" and corpus.valid:
        first = corpus.valid[p % len(corpus.valid)].payload
        return Case({**row, "ts": first["ts"], "queue": first["queue"], "brand": first["brand"]},  # type: ignore[index]
                    "duplicate")
    if kind in ("valid", "dup"):
        case = Case(row, "accepted")
        corpus.valid.append(case)
        return case
    if kind == "bad_ts":
        return Case({**row, "ts": rnd.choice(["", "noon", "2024-01-01T25:00:00Z"])}, "dead", "ts")
    if kind == "utf8":
        return Case({**row, "queue": row["queue"] + BAD_BYTES}, "dead", "encoding")
    value = {"negative": "-3", "fraction": "2.5", "words": "many", "nan": rnd.choice(["nan", "inf", "-inf"])}[kind]
    return Case({**row, "calls": value}, "dead", "calls")


# -- collecting with hypothesis --------------------------------------------------------------------------------
def _check_parse(case: Case, raw: RawRecord) -> None:
    """The parser alone: never raises, and sorts the record as generated (duplicates parse as records)."""
    if isinstance(raw.payload, dict) and case.reason == "encoding":  # as the CSV reader marks the row
        raw = RawRecord(raw.source, raw.offset, {**raw.payload, INVALID_UTF8: "1"}, raw.fmt)
    parsed = parse_record(raw)
    if case.expect == "dead":
        assert isinstance(parsed.record, DeadLetter), (case, parsed)
        assert parsed.record.reason.startswith(f"{case.reason}:"), (case.reason, parsed.record.reason)
        assert parsed.record.raw  # kept whole
    else:
        assert not isinstance(parsed.record, DeadLetter), parsed.record.reason


def collect(strategy: st.SearchStrategy[Any], build: Callable[[Any], Case], check: Callable[[Case], None],
            corpus: Corpus, seed_value: int) -> Corpus:
    @seed(seed_value)
    # no shrinking: every example adds to the corpus, and a failing record is printed whole with its expectation
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.lists(strategy, min_size=12, max_size=24))
    def run(specs: list[Any]) -> None:
        for spec in specs:
            case = build(spec)
            check(case)
            corpus.cases.append(case)

    run()
    assert len(corpus.cases) >= PER_FORMAT, len(corpus.cases)
    return corpus


def _write_csv(path: Path, columns: list[str], cases: list[Case]) -> None:
    """A CSV as a producer writes it, with the row marker ``row`` first; a case whose reason is ``ts`` and whose
    ``created_at`` is empty is written as a ragged line that stops after ``inbound``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["row", *columns])
    for i, case in enumerate(cases):
        row = case.payload
        assert isinstance(row, dict)
        values = [str(i)] + [row.get(c, "") for c in columns]
        if "created_at" in columns and case.reason == "ts" and row.get("created_at") == "":
            values = values[: 1 + columns.index("created_at")]
        writer.writerow(values)
    path.write_bytes(buf.getvalue().encode("utf-8").replace(BAD_BYTES.encode(), b"caf\xc3\x28\xff\xfe"))


# -- the test -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_generated_bad_input_is_dead_lettered_counted_and_never_kills_the_flow(
    tmp_path: Path, r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    mapping_path = tmp_path / "forum.toml"
    mapping_path.write_text(MAPPING)
    cmap = load_mapping(mapping_path)

    jsonl, frames, twcs, mapped, calls = Corpus(), Corpus(), Corpus(), Corpus(), Corpus()

    def both(spec: tuple[str, dict[str, Any], int]) -> Case:
        """Each drawn JSON record goes into the file and, under another id, through the ingest endpoint."""
        frame = build_json(frames, spec, "forum:w")
        _check_parse(frame, RawRecord("t", 0, frame.payload, "jsonl"))
        frames.cases.append(frame)
        return build_json(jsonl, spec, "twitter:j")

    collect(specs(JSON_KINDS), both, lambda c: _check_parse(c, RawRecord("t", 0, c.payload, "jsonl")), jsonl, 1)
    collect(specs(TWCS_KINDS), lambda s: build_twcs(twcs, s),
            lambda c: _check_parse(c, RawRecord("t", 0, {**c.payload, "brand": "b"}, "twcs")), twcs, 2)  # type: ignore[dict-item]
    collect(specs(CSV_KINDS), lambda s: build_csv(mapped, s),
            lambda c: _check_parse(c, RawRecord("t", 0, cmap.shape({**c.payload, "row": "0"}), "mention")),  # type: ignore[dict-item]
            mapped, 3)
    collect(specs(CALLS_KINDS), lambda s: build_calls(calls, s),
            lambda c: _check_parse(c, RawRecord("t", 0, _calls_payload(c.payload), "calls")), calls, 4)  # type: ignore[arg-type]
    total = sum(len(c.cases) for c in (jsonl, frames, twcs, mapped, calls))
    assert total >= 10_000

    # every format written as a producer would
    jsonl_path = tmp_path / "mentions.jsonl"
    jsonl_path.write_bytes(b"\n".join(c.payload for c in jsonl.cases) + b"\n")  # type: ignore[misc]
    twcs_path, csv_path, calls_path = tmp_path / "twcs.csv", tmp_path / "forum.csv", tmp_path / "calls.csv"
    _write_csv(twcs_path, ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
                           "in_response_to_tweet_id"], twcs.cases)
    _write_csv(csv_path, ["msg_id", "company", "user", "body", "posted_at", "parent", "is_agent"], mapped.cases)
    _write_csv(calls_path, ["ts", "queue", "calls", "brand"], calls.cases)
    # ... and the frames through the ingest endpoint (acknowledged ones are in Redis)
    frame_keys = _send_frames(frames, redis_url, key_prefix)
    mark_eof(r, key_prefix)

    settings_ = Settings(prefix=key_prefix, flush_seconds=0.05)
    sources = {
        "jsonl": FileSource(jsonl_path, "jsonl"), "twcs": FileSource(twcs_path, "twcs"),
        "csv": FileSource(csv_path, "csv", mapping=mapping_path), "calls": FileSource(calls_path, "calls"),
        "ingest": RedisStreamSource(redis_url, key_prefix, 2, stop="eof", trim_every_s=0),
    }
    flow = build_flow(sources["jsonl"], settings_, RedisSink(redis_url, Keys(key_prefix)), redis_url=redis_url,
                      live=[sources["twcs"], sources["csv"], sources["calls"], sources["ingest"]])
    from bytewax.testing import run_main

    run_main(flow)  # no exception escapes

    keys = Keys(key_prefix)
    stats = {k.decode(): int(v) for k, v in r.hgetall(keys.stats).items()}
    dlq = [(f[b"key"].decode(), f[b"source"].decode(), f[b"reason"].decode(), f[b"raw"]) for _, f in r.xrange(keys.dlq)]
    by_key = {k: (source, reason, raw) for k, source, reason, raw in dlq}
    assert len(by_key) == len(dlq)  # each dead letter once

    def counts(prefix: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for name, n in stats.items():
            source, _, what = name.rpartition("|")
            if source.startswith(prefix):
                out[what] += n
        return dict(out)

    expected_dead_keys: set[str] = set()
    for name, corpus, source_prefix, offsets in (
        ("jsonl", jsonl, f"file:{jsonl_path}", _file_offsets(jsonl_path, "jsonl", jsonl, None)),
        ("twcs", twcs, f"file:{twcs_path}", _file_offsets(twcs_path, "twcs", twcs, None)),
        ("csv", mapped, f"file:{csv_path}", _file_offsets(csv_path, "csv", mapped, mapping_path)),
        ("calls", calls, f"file:{calls_path}", _file_offsets(calls_path, "calls", calls, None)),
        ("ingest", frames, f"redis:{key_prefix}in:", frame_keys),
    ):
        want = corpus.count()
        got = counts(source_prefix)
        assert got == {"offered": len(corpus.cases), "accepted": want["accepted"], "dead_letters": want["dead"],
                       "duplicates": want["duplicate"]}, name
        assert got["accepted"] + got["dead_letters"] + got["duplicates"] == got["offered"]
        for case, key in zip(corpus.cases, offsets, strict=True):
            if case.expect != "dead":
                assert key not in by_key, (name, case, by_key.get(key))
                continue
            expected_dead_keys.add(key)
            assert key in by_key, (name, case)
            _source, reason, raw = by_key[key]
            assert reason.startswith(f"{case.reason}:"), (name, case.reason, reason)
            assert raw  # the record itself is kept
    # nothing else was dead-lettered: no valid record refused further down (CRM, windows, sink)
    assert set(by_key) == expected_dead_keys, {k: by_key[k][:2] for k in set(by_key) - expected_dead_keys}
    pending = sum(r.xpending(f"{key_prefix}in:{n}", "pulse")["pending"] for n in range(2))
    assert pending == 0


def _calls_payload(row: dict[str, str]) -> dict[str, Any]:
    from connectors.files import _number_or_text

    return {**row, "calls": _number_or_text(row["calls"])}


def _file_offsets(path: Path, fmt: str, corpus: Corpus, mapping: Path | None) -> list[str]:
    """The dead-letter key (``file:PATH:offset``) of each generated record: the reader sorts by event time, so the
    offset is found through the row marker (CSV) or the line (JSONL)."""
    from connectors.files import read_records

    records = read_records(path, fmt, mapping)
    assert len(records) == len(corpus.cases)
    if fmt == "jsonl":
        where: dict[bytes, list[int]] = {}
        for rec in records:
            where.setdefault(rec.payload, []).append(int(rec.offset))  # type: ignore[arg-type]
        return [f"{rec_source(records)}:{where[c.payload].pop(0)}" for c in corpus.cases]  # type: ignore[index]
    index: dict[int, int] = {}
    for rec in records:
        payload = rec.payload
        assert isinstance(payload, dict)
        row = payload["meta"]["row"] if fmt == "csv" else payload["row"]
        index[int(row)] = int(rec.offset)
    return [f"{rec_source(records)}:{index[i]}" for i in range(len(corpus.cases))]


def rec_source(records: list[RawRecord]) -> str:
    return records[0].source


def _send_frames(corpus: Corpus, redis_url: str, prefix: str) -> list[str]:
    """Send every frame to a real ingest endpoint; the dead-letter key each stored frame will have."""
    server = IngestServer(token=TOKEN, redis_url=redis_url, prefix=prefix, partitions=2, port=0).start()
    keys: list[str] = []
    try:
        with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                     max_size=None) as ws:
            for case in corpus.cases:
                ws.send(case.payload)  # type: ignore[arg-type]
            for _ in corpus.cases:
                answer = orjson.loads(ws.recv(timeout=60))
                assert "ack" in answer, answer
                keys.append(f"redis:{answer['stream']}:{answer['entry']}")
    finally:
        server.stop()
    return keys
