"""The Reports page (AppTest): the tables equal `pulse report`'s, and the downloads are its files."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
import redis
from page_testkit import assert_no_markup_from_users, run_page, table

from dashboard.data import Filters
from dashboard.reports_page import load_report, report_files
from stream.keys import Keys
from stream.report import build_report, write_report


def test_report_tables_and_files_equal_pulse_report(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                    demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "reports_page", state={"f_period": 1440})
    assert not at.exception
    # last 24 h of data per hour: the whole two hours of the rows, 10:00 and 11:00
    expected = build_report(redis.Redis.from_url(redis_url), Keys(prefix), datetime(2024, 1, 1, tzinfo=UTC),
                            datetime(2024, 1, 2, tzinfo=UTC), "h")
    brands = table(at, "unanswered").set_index("brand")
    # every column `pulse report` has is on screen (new insight columns appear without a page change)
    assert list(brands.reset_index().columns) == expected.brands.columns
    assert list(table(at, "channel", "unanswered").columns) == expected.channels.columns
    assert brands.loc["acme", "mentions"] == expected.brands.filter(pl.col("brand") == "acme")["mentions"][0]
    customer = [r for r in rows if not r.get("from_brand")]
    assert int(brands["mentions"].sum()) == len(customer)
    periods = table(at, "period")
    assert len(periods) == expected.periods.height
    assert {"CSV", "Parquet", "HTML"} <= {b.label for b in at.get("download_button")}
    # the downloads are exactly what `pulse report` writes for that period
    report = load_report(redis_url, prefix, Filters(minutes=1440), "h")
    assert report is not None
    files = report_files(report)
    assert files["csv"].decode() == write_report(report, "csv", None)
    assert pl.read_parquet(io.BytesIO(files["parquet"])).equals(report.periods)
    assert files["html"].startswith(b"<!doctype html>") and b"<script>" not in files["html"]
    assert any("pulse report --from 2023-12-31T12:00Z --to 2024-01-01T12:00Z --per hour" in c.value for c in at.code)
    assert_no_markup_from_users(at)


def test_channel_filter_narrows_the_report(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                           demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "reports_page", state={"f_period": 1440, "f_channels": ["forum"]})
    assert not at.exception
    channels = table(at, "channel")  # the channels table comes before the periods
    assert set(channels["channel"]) == {"forum"}
    forum = [r for r in rows if r["channel"] == "forum" and not r.get("from_brand")]
    assert int(channels["mentions"].sum()) == len(forum)


def test_no_data_says_what_to_do(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    at = run_page(monkeypatch, redis_url, key_prefix, "reports_page")
    assert not at.exception and any("No data in this period" in i.value for i in at.info)


def test_any_report_column_is_formatted_by_its_name() -> None:
    from dashboard.reports_page import column_config

    config = column_config(["brand", "mentions", "answer_rate", "attraction_rate", "participation_rate",
                            "after_reply_improved_share", "resolution_mean_h", "next_response_mean_min",
                            "after_reply_before"])
    assert set(config) == {"answer_rate", "attraction_rate", "participation_rate", "after_reply_improved_share",
                           "resolution_mean_h", "next_response_mean_min", "after_reply_before"}
    assert config["attraction_rate"]["type_config"]["format"] == "percent"
    assert config["resolution_mean_h"]["type_config"]["format"] == "%.2f"
    assert config["after_reply_before"]["label"] == "after reply before"
