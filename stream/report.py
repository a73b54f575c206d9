"""Management reports with polars: the analytics of a period, per hour or day, brand and channel.

:func:`build_report` reads the hour or day roll-ups and the exact response times from Redis into polars
frames; :func:`write_report` writes the per-period table as CSV or Parquet, or the whole report as one
self-contained HTML page (per-brand summary, per-channel footprint, the period table). Definitions are
those of ARCHITECTURE.md ("Metrics"); first response quantiles are exact (linear interpolation).

>>> Report.empty(None, None, "d").periods.height
0
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
import redis

from stream.keys import Keys
from stream.metrics import distinct_authors, response_times_between, unanswered_between, windows_between

__all__ = ["FORMATS", "Report", "build_report", "write_report"]

#: Output formats of ``pulse report``.
FORMATS = ("csv", "parquet", "html")
_PERIOD = {"h": "1h", "d": "1d"}
_COLUMNS = ["period", "brand", "channel", "mentions", "authors", "queries", "comments", "negative", "neutral",
            "positive", "negative_share", "replies", "answer_rate", "first_response_count", "first_response_mean_min",
            "first_response_p50_min", "first_response_p90_min", "unanswered"]


@dataclass(frozen=True, slots=True)
class Report:
    """A period's analytics: ``periods`` (one row per period x brand x channel), ``brands``, ``channels``."""

    since: datetime | None
    until: datetime | None
    gran: str
    periods: pl.DataFrame
    brands: pl.DataFrame
    channels: pl.DataFrame

    @classmethod
    def empty(cls, since: datetime | None, until: datetime | None, gran: str) -> Report:
        frame = pl.DataFrame(schema=dict.fromkeys(_COLUMNS, pl.Float64) | {
            "period": pl.Datetime("ms", "UTC"), "brand": pl.Utf8, "channel": pl.Utf8})
        return cls(since, until, gran, frame.select(_COLUMNS), frame.drop("period", "channel"), frame.drop("period"))


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _period(ms_column: str, gran: str) -> pl.Expr:
    """The period (UTC hour or day) an epoch-ms column falls in, as the windows' start."""
    return (pl.from_epoch(ms_column, time_unit="ms").dt.replace_time_zone("UTC").dt.truncate(_PERIOD[gran])
            .dt.cast_time_unit("ms").alias("period"))


def _response_stats(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    minutes = pl.col("response_ms") / 60_000
    return frame.group_by(by).agg(
        pl.len().alias("first_response_count"), minutes.mean().alias("first_response_mean_min"),
        minutes.quantile(0.5, "linear").alias("first_response_p50_min"),
        minutes.quantile(0.9, "linear").alias("first_response_p90_min"))


def _rates(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        (pl.col("negative") / pl.col("mentions")).alias("negative_share"),
        pl.when(pl.col("queries") > 0).then(pl.col("replies") / pl.col("queries")).alias("answer_rate"))


def build_report(client: redis.Redis, keys: Keys, since: datetime | None = None, until: datetime | None = None,
                 gran: Literal["h", "d"] = "d", brands: list[str] | None = None) -> Report:
    """The analytics of ``[since, until)`` (None: everything retained) per hour (``h``) or day (``d``)."""
    lo, hi = _ms(since), _ms(until)
    windows = windows_between(client, keys, lo, None if hi is None else hi - 1, gran, brands)
    if not windows:
        return Report.empty(since, until, gran)
    # unanswered: queries of the period still without a reply after the SLA (as the snapshot counts them)
    waiting = pl.DataFrame(unanswered_between(client, keys, lo, None if hi is None else hi - 1, brands),
                           schema={"brand": pl.Utf8, "channel": pl.Utf8, "mention_id": pl.Utf8, "mention_ms": pl.Int64})
    waiting = waiting.with_columns(_period("mention_ms", gran)).group_by("period", "brand", "channel").agg(
        pl.len().cast(pl.Int64).alias("unanswered"))
    counts = (pl.DataFrame(windows).rename({"start": "period"}).drop("unanswered")
              .with_columns(pl.col("period").dt.cast_time_unit("ms"))
              .join(waiting, on=["period", "brand", "channel"], how="left")
              .with_columns(pl.col("unanswered").fill_null(0)))
    responses = pl.DataFrame(response_times_between(client, keys, lo, None if hi is None else hi - 1, brands),
                             schema={"brand": pl.Utf8, "channel": pl.Utf8, "mention_id": pl.Utf8,
                                     "mention_ms": pl.Int64, "response_ms": pl.Float64})
    responses = responses.with_columns(_period("mention_ms", gran))
    summed = ["mentions", "queries", "comments", "negative", "neutral", "positive", "replies", "unanswered"]
    periods = _rates(counts.join(_response_stats(responses, ["period", "brand", "channel"]),
                                 on=["period", "brand", "channel"], how="left"))
    periods = periods.with_columns(pl.col("first_response_count").fill_null(0)).select(_COLUMNS)
    periods = periods.sort("period", "brand", "channel")
    channels = _rates(counts.group_by("brand", "channel").agg(pl.col(summed).sum(), pl.col("authors").max())
                      .join(_response_stats(responses, ["brand", "channel"]), on=["brand", "channel"], how="left"))
    by_brand = counts.group_by("brand").agg(pl.col(summed).sum())
    authors = distinct_authors(client, keys, lo if lo is not None else 0, (hi - 1) if hi is not None else 2**62,
                               gran, sorted(by_brand["brand"].to_list()))
    by_brand = by_brand.with_columns(pl.col("brand").replace_strict(authors, default=0).alias("authors"))
    brands_frame = _rates(by_brand.join(_response_stats(responses, ["brand"]), on="brand", how="left"))
    return Report(since, until, gran, periods,
                  brands_frame.select([c for c in _COLUMNS if c not in ("period", "channel")]).sort("brand"),
                  channels.select([c for c in _COLUMNS if c != "period"]).sort("brand", "channel"))


def write_report(report: Report, fmt: str, path: Path | None) -> str | None:
    """Write the report; returns the text instead when ``path`` is None (CSV and HTML only)."""
    if fmt == "parquet":
        if path is None:
            raise ValueError("--format parquet needs --output FILE")
        report.periods.write_parquet(path)
        return None
    text = report.periods.write_csv(float_precision=3) if fmt == "csv" else _html(report)
    if path is None:
        return text
    path.write_text(text, encoding="utf-8")
    return None


def _html(report: Report) -> str:
    def when(dt: datetime | None, default: str) -> str:
        return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else default

    span = f"{when(report.since, 'the start of the data')} to {when(report.until, 'the end of the data')}"
    grain = "hour" if report.gran == "h" else "day"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Social Pulse report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}table{border-collapse:collapse;"
        "margin:0 0 2rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #dde1e8;text-align:right}"
        "th:first-child,td:first-child,td.t{text-align:left}th{background:#f3f5f8}</style></head><body>",
        f"<h1>Social Pulse report</h1><p>{html.escape(span)} · per {grain} · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        "<h2>Brands</h2>", _table(report.brands),
        "<h2>Channels</h2>", _table(report.channels),
        f"<h2>Per {grain}</h2>", _table(report.periods),
        "<p>First response: time from a customer mention to the brand's first reply to it (event time), "
        "by the mention's period. Answer rate: replies ÷ queries. Authors per brand: distinct over the whole "
        "range; per channel: the busiest period's.</p></body></html>",
    ]
    return "".join(parts)


def _table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p>No data in this range.</p>"
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for value in row:
            if value is None:
                cells.append("<td>–</td>")
            elif isinstance(value, float):
                cells.append(f"<td>{value:,.3f}</td>" if abs(value) < 10 else f"<td>{value:,.1f}</td>")
            elif isinstance(value, datetime):
                cells.append(f"<td class='t'>{value.strftime('%Y-%m-%d %H:%M')}</td>")
            elif isinstance(value, int):
                cells.append(f"<td>{value:,}</td>")
            else:
                cells.append(f"<td class='t'>{html.escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
