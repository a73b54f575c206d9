"""`pulse report` as a user runs it: CSV, Parquet and HTML over what a replay wrote to a real Redis."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import polars as pl
import pytest
import redis
from pulse_testkit import make_mentions, pulse


@pytest.fixture()
def replayed(write_jsonl, redis_url: str, key_prefix: str) -> list[dict]:
    # two days of traffic (a mention every 30 s) for two brands on two channels, a third of it answered
    rows = make_mentions(6000, step_ms=30_000)
    rows.append({"id": "forum:x", "channel": "forum", "brand": "<b>evil</b>", "author": "x", "text": "hi",
                 "ts": rows[0]["ts"]})
    pulse("replay", str(write_jsonl(rows)), "--speed", "0", redis_url=redis_url, prefix=key_prefix,
          extra_env={"PULSE_CRM": "false"}, timeout=300)
    return rows


def test_report_matches_the_metrics_snapshot(replayed, tmp_path: Path, redis_url: str, key_prefix: str,
                                             r: redis.Redis) -> None:
    snap = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    csv = pulse("report", "--format", "csv", redis_url=redis_url, prefix=key_prefix).stdout
    days = pl.read_csv(io.StringIO(csv), try_parse_dates=True)
    assert days.height > 0 and set(days["brand"]) == {"acme", "globex", "<b>evil</b>"}
    assert days["period"].n_unique() >= 2  # per day
    per_brand = days.group_by("brand").agg(pl.col("mentions", "queries", "replies", "unanswered").sum())
    for row in per_brand.iter_rows(named=True):
        b = snap["brands"][row["brand"]]
        assert (row["mentions"], row["queries"], row["unanswered"]) == (b["mentions"], b["queries"], b["unanswered"])
    out = tmp_path / "report.parquet"
    pulse("report", "--format", "parquet", "--output", str(out), redis_url=redis_url, prefix=key_prefix)
    assert pl.read_parquet(out).height == days.height
    hours = pl.read_csv(io.StringIO(pulse("report", "--format", "csv", "--per", "hour", redis_url=redis_url,
                                          prefix=key_prefix).stdout))
    assert hours.height > days.height and hours["mentions"].sum() == days["mentions"].sum()
    html_out = pulse("report", redis_url=redis_url, prefix=key_prefix).stdout  # html is the default
    assert html_out.startswith("<!doctype html>") and "<h2>Brands</h2>" in html_out
    assert "&lt;b&gt;evil&lt;/b&gt;" in html_out and "<b>evil</b>" not in html_out  # escaped
    from stream.keys import Keys
    from stream.report import build_report

    # first response per brand: exact quantiles over the same replies as the snapshot
    rep = build_report(r, Keys(key_prefix), gran="d")
    for row in rep.brands.iter_rows(named=True):
        fr = snap["brands"][row["brand"]]["first_response"]
        assert (row["first_response_count"] or 0) == fr["count"]
        if fr["count"]:
            assert row["first_response_mean_min"] == pytest.approx(fr["mean_ms"] / 60_000)
            assert row["first_response_p90_min"] == pytest.approx(fr["p90_ms"] / 60_000)
        assert row["authors"] == snap["brands"][row["brand"]]["authors"]
        b = snap["brands"][row["brand"]]
        # the insights, the same as in pulse metrics
        assert row["new_authors"] == b["new_authors"]
        assert row["attraction_rate"] == pytest.approx(b["attraction_rate"])
        assert row["active_customers"] == b["active_customers"]
        assert row["answer_rate"] == pytest.approx(b["answer_rate"]) if b["answer_rate"] is not None else True
        assert row["after_reply_customers"] == b["after_reply"]["customers"]
        assert row["resolution_count"] == b["resolution"]["count"]
    # the dashboard over long ranges: the same report with quantiles from the sketches, within 1 %
    sketched = build_report(r, Keys(key_prefix), gran="d", exact_quantiles=False)
    exact = {row["brand"]: row for row in rep.brands.iter_rows(named=True)}
    assert sketched.brands.height == rep.brands.height
    for row in sketched.brands.iter_rows(named=True):
        want = exact[row["brand"]]
        assert row["first_response_count"] == want["first_response_count"]
        assert row["first_response_mean_min"] == want["first_response_mean_min"]
        if want["first_response_p90_min"] is not None:
            assert row["quantiles"] == "sketch"
            assert row["first_response_p90_min"] == pytest.approx(want["first_response_p90_min"], rel=0.01)


def test_report_range_and_brand_filter(replayed, redis_url: str, key_prefix: str) -> None:
    first = min(x["ts"] for x in replayed)
    from crm.sla import iso_ms

    start = iso_ms(first - first % 86_400_000)
    csv = pulse("report", "--format", "csv", "--from", start, "--to", iso_ms(first - first % 86_400_000 + 86_400_000),
                "--brand", "acme", redis_url=redis_url, prefix=key_prefix).stdout
    one = pl.read_csv(io.StringIO(csv))
    assert set(one["brand"]) == {"acme"} and one["period"].n_unique() == 1
    assert one["mentions"].sum() == sum(1 for x in replayed if x["brand"] == "acme" and not x.get("from_brand")
                                        and x["ts"] < first - first % 86_400_000 + 86_400_000)


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "xml"], "unknown format 'xml'"),
    (["--per", "week"], "expected hour or day"),
    (["--from", "yesterday"], "--from"),
    (["--from", "2024-01-02", "--to", "2024-01-01"], "--to must be after --from"),
    (["--format", "parquet"], "needs --output"),
])
def test_bad_report_input_is_one_clear_line(args: list[str], needle: str, redis_url: str, key_prefix: str) -> None:
    proc = pulse("report", *args, redis_url=redis_url, prefix=key_prefix, check=False)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_empty_range_is_an_empty_report(redis_url: str, key_prefix: str) -> None:
    csv = pulse("report", "--format", "csv", redis_url=redis_url, prefix=key_prefix).stdout
    assert pl.read_csv(io.StringIO(csv)).height == 0
    assert "No data in this range." in pulse("report", redis_url=redis_url, prefix=key_prefix).stdout
