"""``pulse metrics`` against independent polars arithmetic over the same records, on a real Redis:
answer rate = answered queries / queries, and first response quantiles for a range older than the exact
values' retention (from the DDSketches) within 1 %."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest
import redis
from pulse_testkit import make_mentions, pulse

DAY = 86_400_000


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, redis_url: str):
    """Five days of two brands' traffic, exact response times kept for one day of event time only."""
    rows = make_mentions(7200, step_ms=60_000, reply_every=2)
    path = tmp_path_factory.mktemp("exact") / "mentions.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    prefix = "test:exact:" + path.parent.name + ":"
    pulse("replay", str(path), "--no-progress", redis_url=redis_url, prefix=prefix, timeout=300,
          extra_env={"PULSE_CRM": "false", "PULSE_RESPONSE_RETENTION_SECONDS": "86400"})
    client = redis.Redis.from_url(redis_url)
    yield rows, prefix, client, redis_url
    for key in client.scan_iter(match=prefix + "*", count=2000):
        client.delete(key)


def _frames(rows: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.DataFrame(rows, infer_schema_length=None)
    mentions = df.filter(pl.col("from_brand").is_null() | ~pl.col("from_brand")).select("id", "brand", "ts", "text")
    replies = df.filter(pl.col("from_brand") == True).select(  # noqa: E712
        pl.col("in_reply_to").alias("id"), pl.col("ts").alias("reply_ts"))
    first = replies.group_by("id").agg(pl.col("reply_ts").min())
    return mentions, first


def test_answer_rate_is_answered_queries_over_queries(replayed) -> None:
    rows, prefix, client, url = replayed
    mentions, first = _frames(rows)
    # the generated questions ("how do I reset my router?") are what the intent model calls queries
    queries = mentions.filter(pl.col("text").str.to_lowercase().str.contains("how do i"))
    truth = (queries.join(first, on="id", how="left").group_by("brand")
             .agg(pl.len().alias("queries"), pl.col("reply_ts").is_not_null().sum().alias("answered")))
    doc = orjson.loads(pulse("metrics", "--json", redis_url=url, prefix=prefix).stdout)
    for row in truth.iter_rows(named=True):
        b = doc["brands"][row["brand"]]
        assert (b["queries"], b["answered"]) == (row["queries"], row["answered"])
        assert b["answer_rate"] == pytest.approx(row["answered"] / row["queries"])


def test_quantiles_older_than_retention_come_from_sketches_within_one_percent(replayed) -> None:
    rows, prefix, client, url = replayed
    mentions, first = _frames(rows)
    start = min(r["ts"] for r in rows)
    lo, hi = start - start % DAY + DAY, start - start % DAY + 3 * DAY  # days 2 and 3: beyond the one-day retention
    responses = (mentions.join(first, on="id").filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
                 .with_columns((pl.col("reply_ts") - pl.col("ts")).alias("ms")))
    since = datetime.fromtimestamp(lo / 1000, tz=UTC).isoformat()
    until = datetime.fromtimestamp(hi / 1000, tz=UTC).isoformat()
    doc = orjson.loads(pulse("metrics", "--json", "--since", since, "--until", until, redis_url=url,
                             prefix=prefix).stdout)
    for brand, group in responses.group_by("brand"):
        fr = doc["brands"][brand[0]]["first_response"]
        assert fr["quantiles"] == "sketch"
        assert fr["count"] == group.height and fr["mean_ms"] == pytest.approx(group["ms"].mean())  # exact
        for name, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)):
            assert fr[name] == pytest.approx(group["ms"].quantile(q, "linear"), rel=0.01), (brand, name)
    # the newest day is still within the retention: exact quantiles, equal to polars
    newest = max(r["ts"] for r in rows)
    day = newest - newest % DAY
    recent = mentions.join(first, on="id").filter(pl.col("ts") >= day).with_columns(
        (pl.col("reply_ts") - pl.col("ts")).alias("ms"))
    doc = orjson.loads(pulse("metrics", "--json", "--since", datetime.fromtimestamp(day / 1000, tz=UTC).isoformat(),
                             redis_url=url, prefix=prefix).stdout)
    for brand, group in recent.group_by("brand"):
        fr = doc["brands"][brand[0]]["first_response"]
        assert fr["quantiles"] == "exact" and fr["p90_ms"] == pytest.approx(group["ms"].quantile(0.9, "linear"))


def test_the_readme_names_which_figures_are_exact() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "DDSketch" in readme and "exact" in readme
