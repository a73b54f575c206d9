"""File readers and FileSource: formats, ordering, gzip, corrupted input, mappings, Bytewax runs and resume."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.files import (
    DEFAULT_MAX_WAIT_S,
    FileSource,
    SourceError,
    event_time_ms,
    load_mapping,
    read_records,
    read_timed_records,
)
from connectors.records import RawRecord


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _mention(i: int, ts: str) -> bytes:
    return orjson.dumps(
        {
            "id": f"t:{i}",
            "channel": "twitter",
            "brand": "acme",
            "author": "bob",
            "text": f"hello {i}",
            "ts": ts,
        }
    )


# ---------------------------------------------------------------------------------------------- jsonl


def test_jsonl_sorted_by_event_time_stable_and_blank_lines_skipped(tmp_path: Path) -> None:
    p = _jsonl(
        tmp_path / "m.jsonl",
        [
            _mention(1, "2024-01-01T00:00:03Z"),
            b"",
            _mention(2, "2024-01-01T00:00:01Z"),
            b"   ",
            _mention(3, "2024-01-01T00:00:03Z"),  # same time as 1: keeps file order after it
            _mention(4, "2024-01-01T00:00:02+00:00"),
        ],
    )
    recs = read_records(p, "jsonl")
    ids = [orjson.loads(r.payload)["id"] for r in recs]
    assert ids == ["t:2", "t:4", "t:1", "t:3"]
    assert [r.offset for r in recs] == [0, 1, 2, 3]
    assert {r.fmt for r in recs} == {"jsonl"}
    assert recs[0].source == f"file:{p}"
    assert all(isinstance(r.payload, bytes) for r in recs)


def test_jsonl_corrupted_lines_are_still_yielded_first(tmp_path: Path) -> None:
    bad_utf8 = b'{"id": "t:9", "text": "caf\xe9", "ts": "2024-01-01T00:00:00Z"}'
    truncated = b'{"id": "t:8", "channel": "twi'
    not_object = b"[1, 2, 3]"
    no_ts = b'{"id": "t:7"}'
    p = _jsonl(
        tmp_path / "m.jsonl",
        [
            _mention(1, "2024-01-01T00:00:01Z"),
            bad_utf8,
            truncated,
            _mention(2, "2024-01-01T00:00:00Z"),
            not_object,
            no_ts,
            b'{"id": "t:6", "ts": "not a time"}',
        ],
    )
    recs, times = read_timed_records(p, "jsonl")
    payloads = [r.payload for r in recs]
    assert len(recs) == 7
    # unreadable times keep their relative order, in front of everything timed
    assert payloads[:5] == [bad_utf8, truncated, not_object, no_ts, b'{"id": "t:6", "ts": "not a time"}']
    assert times[:5] == [None] * 5
    assert [orjson.loads(x)["id"] for x in payloads[5:]] == ["t:2", "t:1"]


def test_gzip_by_suffix_and_by_magic_bytes(tmp_path: Path) -> None:
    lines = [_mention(1, "2024-01-01T00:00:02Z"), _mention(2, "2024-01-01T00:00:01Z")]
    plain = _jsonl(tmp_path / "m.jsonl", lines)
    gz = tmp_path / "m.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    hidden = tmp_path / "m_no_suffix.jsonl"  # gzip data without the suffix
    hidden.write_bytes(gzip.compress(plain.read_bytes()))
    want = [r.payload for r in read_records(plain, "jsonl")]
    assert [r.payload for r in read_records(gz, "jsonl")] == want
    assert [r.payload for r in read_records(hidden, "jsonl")] == want
    bogus = tmp_path / "fake.jsonl.gz"
    bogus.write_bytes(b"not gzip")
    with pytest.raises(SourceError, match="not gzip"):
        read_records(bogus, "jsonl")


def test_event_time_forms() -> None:
    want = int(datetime(2017, 10, 31, 22, 10, 47, tzinfo=UTC).timestamp() * 1000)
    assert event_time_ms("Tue Oct 31 22:10:47 +0000 2017") == want
    assert event_time_ms("Tue Oct 31 23:10:47 +0100 2017") == want
    assert event_time_ms("2017-10-31T22:10:47Z") == want
    assert event_time_ms(want) == want
    assert event_time_ms(want / 1000) == want
    for bad in (None, True, "", "Tue Foo 31 22:10:47 +0000 2017", {"a": 1}, float("nan")):
        assert event_time_ms(bad) is None


# ----------------------------------------------------------------------------------------------- twcs


def test_twcs_brand_inference_on_the_real_sample(shared_data: Path) -> None:
    recs = read_records(shared_data / "twcs" / "twcs_sample.csv", "twcs")
    assert len(recs) == 93
    by_id = {r.payload["tweet_id"]: r.payload for r in recs}
    assert all(r.fmt == "twcs" for r in recs)
    assert set(by_id["119237"]) >= {
        "tweet_id",
        "author_id",
        "inbound",
        "created_at",
        "text",
        "response_tweet_id",
        "in_response_to_tweet_id",
        "brand",
    }
    # a brand tweet: its own author
    assert by_id["119238"]["brand"] == "ChaseSupport"
    # a customer tweet a brand replied to (response_tweet_id), though its text addresses "@76328"
    assert by_id["119239"]["brand"] == "ChaseSupport"
    # "@76099" is Apple's anonymised handle; the brand comes from AppleSupport's reply 119252
    assert by_id["119253"]["brand"] == "AppleSupport"
    # no brand reply in the sample, replies to a brand tweet
    assert by_id["119296"]["brand"] == "SouthwestAir"
    # no reply and nothing it replies to is in the sample: the @handle in the text
    assert by_id["119237"]["brand"] == "AppleSupport"
    assert by_id["119250"]["brand"] == "AppleSupport"
    # replies to another customer's tweet, no handle: the conversation's brand (UPSHelp answered 119330)
    assert by_id["119331"]["brand"] == "UPSHelp"
    assert "unknown" not in {p["brand"] for p in by_id.values()}
    # ids in reply columns may be lists, kept as found
    assert by_id["119250"]["response_tweet_id"] == "119249,119251"


def test_twcs_sorted_by_created_at_with_offsets_in_sorted_order(shared_data: Path) -> None:
    recs, times = read_timed_records(shared_data / "twcs" / "twcs_sample.csv", "twcs")
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert [r.offset for r in recs] == list(range(93))
    # the file opens with 119237 (Oct 11), but the earliest tweet is VirginTrains' on Oct 10 10:13
    assert recs[0].payload["tweet_id"] == "119246"
    assert recs[-1].payload["tweet_id"] == "119288"


def test_twcs_unknown_brand_and_missing_columns(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(
        "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
        '1,55,True,Tue Oct 31 22:10:47 +0000 2017,"hello, nobody",,\n'
    )
    assert read_records(p, "twcs")[0].payload["brand"] == "unknown"
    q = tmp_path / "not_twcs.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="missing columns tweet_id"):
        read_records(q, "twcs")


# ------------------------------------------------------------------------------------------- mapping


def test_airline_mapping_shapes_mentions(shared_data: Path) -> None:
    path = shared_data / "airline" / "Tweets.csv"
    recs = read_records(path, "csv", mapping="airline.toml")
    assert len(recs) == 14_640
    assert {r.fmt for r in recs} == {"mention"}
    first_rows = {r.payload["id"]: r.payload for r in recs}
    # the first data row of the file
    row = first_rows["twitter:570306133677760513"]
    assert row == {
        "id": "twitter:570306133677760513",
        "channel": "twitter",
        "lang": "en",
        "brand": "Virgin America",
        "author": "cairdin",
        "text": "@VirginAmerica What @dhepburn said.",
        "ts": "2015-02-24 11:35:52 -0800",
        "meta": {"airline_sentiment": "neutral", "negativereason": ""},
    }
    row4 = first_rows["twitter:570301031407624196"]
    assert row4["meta"] == {"airline_sentiment": "negative", "negativereason": "Bad Flight"}
    times = [event_time_ms(r.payload["ts"]) for r in recs]
    assert times == sorted(times)  # type: ignore[type-var]


def test_mapping_errors_are_one_line(tmp_path: Path, shared_data: Path) -> None:
    airline = shared_data / "airline" / "Tweets.csv"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[columns]\nid = "tweet_id"\ntext = "body"\nts = "when"\nauthor = "name"\nbrand = "airline"\n'
        '[constants]\nchannel = "twitter"\n'
    )
    with pytest.raises(SourceError, match="lacks: body, when$"):
        read_records(airline, "csv", mapping=bad)
    with pytest.raises(SourceError, match="lacks: body, when$"):
        FileSource(airline, "csv", mapping=bad)
    with pytest.raises(SourceError, match="no such mapping file"):
        FileSource(airline, "csv", mapping=tmp_path / "absent.toml")
    incomplete = tmp_path / "incomplete.toml"
    incomplete.write_text('[columns]\nid = "tweet_id"\n')
    with pytest.raises(SourceError, match="no column or constant for channel, brand, author, text, ts"):
        load_mapping(incomplete)
    broken = tmp_path / "broken.toml"
    broken.write_text("[columns\n")
    with pytest.raises(SourceError, match="not valid TOML"):
        load_mapping(broken)
    for err in (SourceError("x"),):
        assert isinstance(err, ValueError)


def test_csv_without_mapping_needs_mention_columns(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text(
        "id,channel,brand,author,text,ts,mood\n"
        "f:2,forum,acme,ann,later,2024-01-01T00:00:02Z,happy\n"
        "f:1,forum,acme,bob,first,2024-01-01T00:00:01Z,sad\n"
    )
    recs = read_records(p, "mention")
    assert [r.payload["id"] for r in recs] == ["f:1", "f:2"]
    assert recs[0].payload["meta"] == {}
    q = tmp_path / "other.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="pass a column mapping"):
        read_records(q, "csv")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="^no such file: "):
        read_records(tmp_path / "nope.jsonl", "jsonl")
    with pytest.raises(SourceError, match="^no such file: "):
        FileSource(tmp_path / "nope.jsonl", "jsonl")
    p = _jsonl(tmp_path / "m.jsonl", [_mention(1, "2024-01-01T00:00:00Z")])
    with pytest.raises(SourceError, match="unknown format 'parquet'"):
        FileSource(p, "parquet")
    with pytest.raises(SourceError, match="only applies to the csv format"):
        FileSource(p, "jsonl", mapping="airline")


# --------------------------------------------------------------------------------------------- calls


def test_calls_csv_and_jsonl(tmp_path: Path) -> None:
    csv = tmp_path / "calls.csv"
    csv.write_text(
        "ts,queue,calls,brand\n2024-01-01T00:15:00Z,billing,12,acme\n2024-01-01T00:00:00Z,billing,x,acme\n"
    )
    recs = read_records(csv, "calls")
    assert [r.payload for r in recs] == [
        {"ts": "2024-01-01T00:00:00Z", "queue": "billing", "calls": "x", "brand": "acme"},
        {"ts": "2024-01-01T00:15:00Z", "queue": "billing", "calls": 12, "brand": "acme"},
    ]
    assert {r.fmt for r in recs} == {"calls"}
    jl = _jsonl(
        tmp_path / "calls.jsonl",
        [
            b'{"ts": "2024-01-01T00:15:00Z", "queue": "tech", "calls": 3}',
            b'{"ts": "2024-01-01T00:00:00Z", "queue": "tech", "calls": 4}',
            b'{"ts": oops',
        ],
    )
    recs = read_records(jl, "calls")
    assert recs[0].payload == b'{"ts": oops'  # kept raw, the flow dead-letters it
    assert [r.payload["calls"] for r in recs[1:]] == [4, 3]  # type: ignore[index]
    bad = tmp_path / "bad_calls.csv"
    bad.write_text("when,queue\n1,2\n")
    with pytest.raises(SourceError, match="missing columns ts, calls"):
        read_records(bad, "calls")


# ------------------------------------------------------------------------------------ Bytewax source


def _run(source: FileSource, out: list[RawRecord], flow_id: str = "files_test") -> None:
    flow = Dataflow(flow_id)
    recs = op.input("read", flow, source)
    op.output("out", recs, TestingSink(out))
    run_main(flow)


def test_file_source_in_a_flow_reports_progress(tmp_path: Path) -> None:
    lines = [_mention(i, f"2024-01-01T00:{59 - i:02d}:00Z") for i in range(50)]
    p = _jsonl(tmp_path / "m.jsonl", lines)
    seen: list[tuple[int, int]] = []
    src = FileSource(p, "jsonl", batch_size=7, on_progress=lambda e, t: seen.append((e, t)))
    out: list[RawRecord] = []
    _run(src, out)
    assert [r.offset for r in out] == list(range(50))
    assert [orjson.loads(r.payload)["id"] for r in out][:2] == ["t:49", "t:48"]
    assert out == read_records(p, "jsonl")
    assert seen[-1] == (50, 50)
    assert [e for e, _ in seen] == sorted(e for e, _ in seen)
    assert src.progress.done and src.progress.emitted == 50


def test_file_source_two_files_two_partitions(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [_mention(i, "2024-01-01T00:00:00Z") for i in range(3)])
    b = _jsonl(tmp_path / "b.jsonl", [_mention(i, "2024-01-01T00:00:00Z") for i in range(4)])
    src = FileSource([a, b], "jsonl")
    assert src.list_parts() == [f"file:{a}", f"file:{b}"]
    out: list[RawRecord] = []
    _run(src, out)
    assert sorted(r.key for r in out) == sorted(
        [f"file:{a}:{i}" for i in range(3)] + [f"file:{b}:{i}" for i in range(4)]
    )
    assert src.progress.total == 7


def test_file_source_resumes_from_snapshot(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "m.jsonl", [_mention(i, f"2024-01-01T00:00:{i:02d}Z") for i in range(20)])
    src = FileSource(p, "jsonl", batch_size=6)
    part = src.build_part("read", f"file:{p}", None)
    first = part.next_batch()
    state = part.snapshot()
    assert state == 6 and [r.offset for r in first] == list(range(6))
    resumed = src.build_part("read", f"file:{p}", state)
    rest: list[RawRecord] = []
    while True:
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break
    assert [r.offset for r in first + rest] == list(range(20))
    assert resumed.snapshot() == 20


def test_file_source_recovery_with_bytewax(tmp_path: Path) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    p = _jsonl(tmp_path / "m.jsonl", [_mention(i, f"2024-01-01T00:00:{i:02d}Z") for i in range(30)])
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)

    def fail_at_20(rec: RawRecord) -> RawRecord:
        if rec.offset == 20 and not crashed:
            crashed.append(True)
            raise RuntimeError("crash")
        return rec

    crashed: list[bool] = []
    out: list[RawRecord] = []
    flow = Dataflow("files_recovery")
    recs = op.input("read", flow, FileSource(p, "jsonl", batch_size=5))
    recs = op.map("maybe_crash", recs, fail_at_20)
    op.output("out", recs, TestingSink(out))
    with pytest.raises(RuntimeError):
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    assert crashed
    before = len(out)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    offsets = [r.offset for r in out]
    # the resumed run starts at the snapshotted position, not from the beginning, and ends complete
    assert sorted(set(offsets)) == list(range(30))
    assert offsets[before] > 0


def test_time_warp_pacing_uses_next_awake(tmp_path: Path) -> None:
    # one record per hour of event time; at speed 60 the second is due a minute after the first
    p = _jsonl(tmp_path / "m.jsonl", [_mention(i, f"2024-01-01T{i:02d}:00:00Z") for i in range(3)])
    src = FileSource(p, "jsonl", speed=60.0)
    part = src.build_part("read", f"file:{p}", None)
    first = part.next_batch()
    assert [r.offset for r in first] == [0]
    awake = part.next_awake()
    assert awake is not None and awake > datetime.now(UTC)
    assert part.next_batch() == []  # not due yet: nothing, and the partition says when to come back
    assert part.snapshot() == 1
    fast = FileSource(p, "jsonl", speed=0).build_part("read", f"file:{p}", None)
    assert len(fast.next_batch()) == 3 and fast.next_awake() is None
    with pytest.raises(SourceError, match="speed"):
        FileSource(p, "jsonl", speed=-1)


def test_a_paced_replay_waits_at_most_max_wait_between_two_records(tmp_path: Path) -> None:
    """One record dated 1970 (a stray timestamp) before a day of 2024: at speed 3000 the next record would be due in
    six days; it is due within ``max_wait_s`` (default 10 s), and the gaps below it keep their pace."""
    rows = [_mention(0, "1970-01-01T00:00:01Z"), _mention(1, "2024-01-01T00:00:00Z"),
            _mention(2, "2024-01-01T00:00:30Z")]
    p = _jsonl(tmp_path / "m.jsonl", rows)
    part = FileSource(p, "jsonl", speed=3000.0).build_part("read", f"file:{p}", None)
    assert FileSource(p, "jsonl").max_wait_s == DEFAULT_MAX_WAIT_S == 10.0
    assert [r.offset for r in part.next_batch()] == [0]
    awake = part.next_awake()
    assert awake is not None and timedelta(0) < awake - datetime.now(UTC) <= timedelta(seconds=10)
    # 30 s of event time at speed 3000: 10 ms after the record before it
    assert part._due[2] - part._due[1] == pytest.approx(10.0)
    unbounded = FileSource(p, "jsonl", speed=3000.0, max_wait_s=0).build_part("read", f"file:{p}", None)
    unbounded.next_batch()
    later = unbounded.next_awake()
    assert later is not None and later - datetime.now(UTC) > timedelta(days=6)
    with pytest.raises(SourceError, match="max wait"):
        FileSource(p, "jsonl", speed=1, max_wait_s=-1)


def test_csv_rows_with_bytes_that_are_not_utf8_are_marked_for_the_dead_letter_stream(tmp_path: Path) -> None:
    from connectors.records import INVALID_UTF8
    from stream.parse import parse_record
    from stream.schema import DeadLetter

    p = tmp_path / "calls.csv"
    p.write_bytes(b"ts,queue,calls\n2024-01-01T00:00:00Z,bill\xffing,5\n2024-01-01T00:01:00Z,billing,6\n")
    bad, good = read_records(p, "calls")
    assert bad.payload[INVALID_UTF8] == "1" and INVALID_UTF8 not in good.payload  # type: ignore[index,operator]
    dead = parse_record(bad).record
    assert isinstance(dead, DeadLetter) and dead.reason.startswith("encoding: invalid UTF-8")
    assert not isinstance(parse_record(good).record, DeadLetter)


def test_a_mapping_reads_true_and_false_cells(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nid = "id"\nbrand = "b"\nauthor = "a"\ntext = "t"\nts = "ts"\nfrom_brand = "agent"\n'
                       '[constants]\nchannel = "forum"\n')
    p = tmp_path / "m.csv"
    p.write_text("id,b,a,t,ts,agent\n1,acme,ann,hi,2024-01-01T00:00:00Z,TRUE\n2,acme,bob,yo,2024-01-01T00:00:01Z,\n"
                 "3,acme,cy,eh,2024-01-01T00:00:02Z,perhaps\n")
    flags = [r.payload["from_brand"] for r in read_records(p, "csv", mapping)]  # type: ignore[index]
    assert flags == [True, False, "perhaps"]  # the last one is dead-lettered, naming from_brand


def test_records_say_where_they_are_in_the_file_whatever_the_event_time_order(tmp_path: Path) -> None:
    """A replay reads in event-time order (the offset); a dead letter must still point at its line or row."""
    from stream.parse import parse_record
    from stream.schema import DeadLetter

    p = tmp_path / "m.jsonl"
    late = {"id": "t:1", "channel": "twitter", "brand": "acme", "author": "a", "text": "hi", "ts": "2024-01-01T00:05:00Z"}
    early = dict(late, id="t:2", ts="2024-01-01T00:01:00Z")
    p.write_bytes(orjson.dumps(late) + b"\n\n{oops\n" + orjson.dumps(early) + b"\r\n")
    recs = read_records(p, "jsonl")
    assert [(r.offset, r.origin) for r in recs] == [(0, "line 3"), (1, "line 4"), (2, "line 1")]
    dead = parse_record(recs[0]).record
    assert isinstance(dead, DeadLetter) and dead.origin == "line 3" and dead.key == f"file:{p}:0"
    assert parse_record(recs[1]).record.id == "t:2"  # type: ignore[union-attr]
    c = tmp_path / "twcs.csv"
    c.write_text("tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
                 "1,u1,True,Tue Oct 31 22:10:47 +0000 2017,@Acme help,,\n"
                 "2,u2,True,Tue Oct 31 21:10:47 +0000 2017,@Acme hi,,\n")
    assert [(r.payload["tweet_id"], r.origin) for r in read_records(c, "twcs")] == [  # type: ignore[index]
        ("2", "row 2"), ("1", "row 1")]
    # what the replay's source emits
    source = FileSource(p, "jsonl")
    batch = source.build_part("read", source.list_parts()[0], None).next_batch()
    assert [r.origin for r in batch] == ["line 3", "line 4", "line 1"]


def test_a_post_that_quotes_the_replacement_character_is_not_taken_for_bad_bytes(tmp_path: Path) -> None:
    """Only the rows that held bytes that are not UTF-8 are marked, not a row whose text holds U+FFFD itself (a
    real post may): the first used to be dead-lettered whenever another row of the file had bad bytes."""
    from connectors.records import INVALID_UTF8

    p = tmp_path / "forum.csv"
    p.write_bytes("ts,queue,calls\n2024-01-01T00:00:00Z,bill \ufffd ok,5\n".encode()
                  + b"2024-01-01T00:01:00Z,bill\xffing,6\n2024-01-01T00:02:00Z,\xef\xb7\x90,7\n")
    quoted, bad, nonchar = read_records(p, "calls")
    assert quoted.payload["queue"] == "bill \ufffd ok" and INVALID_UTF8 not in quoted.payload  # type: ignore[index]
    assert (bad.payload["queue"], bad.payload[INVALID_UTF8]) == ("bill\ufffding", "1")  # type: ignore[index]
    assert nonchar.payload["queue"] == "\ufdd0" and INVALID_UTF8 not in nonchar.payload  # type: ignore[index]
