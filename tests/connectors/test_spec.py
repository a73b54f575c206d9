"""The --source parser: every accepted form, and a clear error for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.spec import FileSpec, RedisSpec, SimSpec, WebSocketSpec, parse_source


def test_sim_and_seed() -> None:
    assert parse_source("sim") == SimSpec(seed=0)
    assert parse_source(" sim:7 ") == SimSpec(seed=7)


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("{}\n")
    assert parse_source(f"file:{path}") == FileSpec(path)
    assert parse_source("file:later.jsonl", check_files=False) == FileSpec(Path("later.jsonl"))


@pytest.mark.parametrize("url", ["ws://localhost:8766", "wss://stream.example.org/v1/firehose?track=acme"])
def test_websocket(url: str) -> None:
    assert parse_source(url) == WebSocketSpec(url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://localhost:6379/pulse:", RedisSpec("redis://localhost:6379", "pulse:")),
        ("redis://localhost:6379/3/pulse:", RedisSpec("redis://localhost:6379/3", "pulse:")),
        ("rediss://u:pw@h:6380/0/a:b:?partitions=8&group=g", RedisSpec("rediss://u:pw@h:6380/0", "a:b:", 8, "g")),
        ("unix:///tmp/r.sock?prefix=p:&db=2", RedisSpec("unix:///tmp/r.sock?db=2", "p:")),
    ],
)
def test_redis(text: str, expected: RedisSpec) -> None:
    assert parse_source(text) == expected


def test_redis_stream_keys() -> None:
    spec = parse_source("redis://h:6379/x:?partitions=2")
    assert isinstance(spec, RedisSpec)
    assert spec.stream_keys() == ["x:in:0", "x:in:1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty source"),
        ("kafka://b:9092/t", "expected sim, sim:SEED, file:PATH"),
        ("simulator", "expected sim, sim:SEED, file:PATH"),
        ("sim:abc", "seed must be a whole number"),
        ("file:", "file path is missing"),
        ("file:/definitely/not/here.jsonl", "no such file"),
        ("ws://", "host is missing"),
        ("ws://h:port/x", "port is not a number"),
        ("redis://h:6379", "key prefix is missing"),
        ("redis://h:6379/pulse", "must end with ':'"),
        ("redis://h:6379/0/a:/b:", "at most /DB/PREFIX"),
        ("redis://h:6379/p:?partitions=0", "partitions must be at least 1"),
        ("redis://h:6379/p:?partitions=x", "partitions must be a whole number"),
        ("redis:///p:", "host is missing"),
        ("unix:///tmp/r.sock", "key prefix is missing"),
    ],
)
def test_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source(text)
