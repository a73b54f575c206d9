"""Management reports with polars: the analytics of a period, per hour or day, brand and channel.

:func:`build_report` reads the hour or day roll-ups and the exact response times from Redis into polars
frames; :func:`write_report` writes the per-period table as CSV or Parquet, or the whole report as one
self-contained HTML page (per-brand summary, per-channel footprint, the period table). Definitions are
those of ARCHITECTURE.md ("Metrics") and the same as ``pulse metrics``: counts and mean first response come
from the window counters (exact for any range), answer rate is answered queries / queries, reply rate
brand replies / customer mentions; first response quantiles are exact (linear interpolation) while the
exact values of the range are kept, else from the hour or day DDSketches (within 1 %); the column
``quantiles`` says which.

>>> Report.empty(None, None, "d").periods.height
0
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
import redis

from crm.keys import CrmKeys
from stream import insights, sketch
from stream.keys import Keys
from stream.metrics import distinct_authors, exact_complete, response_times_between, windows_between

__all__ = ["FORMATS", "Report", "build_report", "write_report"]

#: Output formats of ``pulse report``.
FORMATS = ("csv", "parquet", "html")
_PERIOD = {"h": "1h", "d": "1d"}
_COLUMNS = ["period", "brand", "channel", "mentions", "authors", "new_authors", "attraction_rate", "active_customers",
            "participation_rate", "queries", "comments", "negative", "neutral", "positive", "negative_share", "replies",
            "answered", "answer_rate", "reply_rate", "first_response_count", "first_response_mean_min",
            "first_response_p50_min", "first_response_p90_min", "first_response_p99_min", "quantiles", "unanswered"]
#: The brands and channels tables also carry the insights of the whole range (stream/insights.py).
_RANGE_COLUMNS = ["after_reply_before", "after_reply_after", "after_reply_improved_share",
                  "after_reply_worsened_share", "after_reply_customers", "resolution_count", "resolution_mean_min",
                  "next_response_count", "next_response_mean_min"]
_SUMMED = ["mentions", "queries", "comments", "negative", "neutral", "positive", "replies", "answered", "unanswered",
           "response_count", "response_ms_sum", "new_authors"]
_Q = (("first_response_p50_min", 0.5), ("first_response_p90_min", 0.9), ("first_response_p99_min", 0.99))


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
            "period": pl.Datetime("ms", "UTC"), "brand": pl.Utf8, "channel": pl.Utf8, "quantiles": pl.Utf8})
        extra = pl.DataFrame(schema=dict.fromkeys(_RANGE_COLUMNS, pl.Float64))
        return cls(since, until, gran, frame.select(_COLUMNS),
                   pl.concat([frame.drop("period", "channel"), extra], how="horizontal"),
                   pl.concat([frame.drop("period"), extra], how="horizontal"))


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _period(ms_column: str, gran: str) -> pl.Expr:
    """The period (UTC hour or day) an epoch-ms column falls in, as the windows' start."""
    return (pl.from_epoch(ms_column, time_unit="ms").dt.replace_time_zone("UTC").dt.truncate(_PERIOD[gran])
            .dt.cast_time_unit("ms").alias("period"))


def _exact_quantiles(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    minutes = pl.col("response_ms") / 60_000
    return frame.group_by(by).agg(*[minutes.quantile(q, "linear").alias(name) for name, q in _Q],
                                  pl.lit("exact").alias("quantiles"))


def _sketch_quantiles(sketches: dict[tuple, list[dict[str, int]]], by: list[str]) -> pl.DataFrame:
    rows = []
    for group, parts in sketches.items():
        merged = sketch.merge(parts)
        row = dict(zip(by, group, strict=True))
        for name, q in _Q:
            v = sketch.quantile(merged, q)
            row[name] = None if v is None else v / 60_000
        row["quantiles"] = "sketch"
        rows.append(row)
    schema: dict[str, Any] = {c: pl.Utf8 for c in by} | {name: pl.Float64 for name, _ in _Q} | {"quantiles": pl.Utf8}
    if "period" in by:
        schema["period"] = pl.Datetime("ms", "UTC")
    return pl.DataFrame(rows, schema=schema)


def _rates(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        (pl.col("negative") / pl.col("mentions")).alias("negative_share"),
        pl.when(pl.max_horizontal("authors", "new_authors") > 0)
        .then(pl.col("new_authors") / pl.max_horizontal("authors", "new_authors")).alias("attraction_rate"),
        pl.when(pl.col("queries") > 0).then(pl.col("answered") / pl.col("queries")).alias("answer_rate"),
        pl.when(pl.col("mentions") > 0).then(pl.col("replies") / pl.col("mentions")).alias("reply_rate"),
        pl.col("response_count").alias("first_response_count"),
        pl.when(pl.col("response_count") > 0).then(pl.col("response_ms_sum") / pl.col("response_count") / 60_000)
        .alias("first_response_mean_min"))


def _with_quantiles(counts: pl.DataFrame, exact: pl.DataFrame, sketched: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    quantiles = pl.concat([exact.select(*by, *[n for n, _ in _Q], "quantiles"),
                           sketched.select(*by, *[n for n, _ in _Q], "quantiles")], how="vertical_relaxed")
    return _rates(counts).join(quantiles, on=by, how="left")


def build_report(client: redis.Redis, keys: Keys, since: datetime | None = None, until: datetime | None = None,
                 gran: Literal["h", "d"] = "d", brands: list[str] | None = None, exact_quantiles: bool = True) -> Report:
    """The analytics of ``[since, until)`` (None: everything retained) per hour (``h``) or day (``d``).

    ``exact_quantiles=False`` takes every quantile from the windows' sketches (within 1 %) instead of reading the
    range's exact response times (the dashboard over long ranges: a week holds tens of thousands)."""
    lo, hi = _ms(since), _ms(until)
    windows = windows_between(client, keys, lo, None if hi is None else hi - 1, gran, brands)
    if not windows:
        return Report.empty(since, until, gran)
    counts = (pl.DataFrame(windows).rename({"start": "period"})
              .with_columns(pl.col("period").dt.cast_time_unit("ms")))
    series = sorted({(w["brand"], w["channel"]) for w in windows})
    complete = exact_complete(client, keys, series, lo) if exact_quantiles else dict.fromkeys(series, False)
    # exact response times where they are all kept, else the windows' sketches (same windows as the counts)
    responses = pl.DataFrame([x for x in (response_times_between(client, keys, lo, None if hi is None else hi - 1,
                                                                 brands) if exact_quantiles else [])
                              if complete[x["brand"], x["channel"]]],
                             schema={"brand": pl.Utf8, "channel": pl.Utf8, "mention_id": pl.Utf8,
                                     "mention_ms": pl.Int64, "response_ms": pl.Float64})
    responses = responses.with_columns(_period("mention_ms", gran))
    pipe = client.pipeline(transaction=False)
    for w in windows:
        pipe.hgetall(keys.sketch(w["brand"], w["channel"], Keys.bucket_id(gran, int(w["start"].timestamp() * 1000)),
                                 gran))
    by_window = {(w["brand"], w["channel"], w["start"]): {k.decode(): int(v) for k, v in h.items()}
                 for w, h in zip(windows, pipe.execute(), strict=True)}
    # a group is exact only when every series in it is
    def sketched(by: list[str]) -> pl.DataFrame:
        groups: dict[tuple, list[dict[str, int]]] = {}
        inexact: set[tuple] = set()
        for (b, c, start), h in by_window.items():
            key = {"period": start, "brand": b, "channel": c}
            group = tuple(key[x] for x in by)
            groups.setdefault(group, []).append(h)
            if not complete[b, c]:
                inexact.add(group)
        return _sketch_quantiles({g: v for g, v in groups.items() if g in inexact}, by)

    def exact(by: list[str]) -> pl.DataFrame:
        inexact = {tuple((b, c)[["brand", "channel"].index(x)] for x in by if x != "period")
                   for (b, c), ok in complete.items() if not ok}
        stats = _exact_quantiles(responses, by)
        if not inexact:
            return stats
        keep = [tuple(row[x] for x in by if x != "period") not in inexact for row in stats.iter_rows(named=True)]
        return stats.filter(pl.Series(keep, dtype=pl.Boolean))

    # distinct authors and active CRM customers: HyperLogLog unions per period, per channel, per brand
    customers = int(client.scard(CrmKeys(keys.prefix).customers))
    counts = counts.with_columns(pl.Series("active_customers", _pfcounts(client, [
        [keys.customers_active(w["brand"], w["channel"], Keys.bucket_id(gran, int(w["start"].timestamp() * 1000)), gran)]
        for w in windows]), dtype=pl.Int64))
    per_series: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for w in windows:
        per_series[w["brand"], w["channel"]].append((str(gran), Keys.bucket_id(gran, int(w["start"].timestamp() * 1000))))
    active = insights.participation(client, keys, per_series)
    channel_authors = dict(zip(series, _pfcounts(client, [[keys.authors(b, c, bucket, g) for g, bucket in ws]
                                                          for (b, c), ws in per_series.items()]), strict=True))
    after = insights.after_reply(client, keys, sorted({b for b, _ in series}), lo, hi)
    cases = insights.case_times(client, keys.prefix, lo, hi)

    def participation(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns((pl.col("active_customers") / customers if customers else pl.lit(None))
                                  .cast(pl.Float64).alias("participation_rate"))

    def range_insights(frame: pl.DataFrame) -> pl.DataFrame:
        rows = []
        for row in frame.iter_rows(named=True):
            b, c = row["brand"], row.get("channel")
            ar = after.get(b, {}) if c is None else after.get(b, {}).get("channels", {}).get(c, {})
            ct = cases.get(b, {})
            res = ct.get("resolution", {}) if c is None else ct.get("resolution", {}).get("channels", {}).get(c, {})
            nxt = ct.get("next_response", {}) if c is None else ct.get("next_response", {}).get("channels", {}).get(c, {})
            rows.append({"after_reply_before": ar.get("before"), "after_reply_after": ar.get("after"),
                         "after_reply_improved_share": ar.get("improved_share"),
                         "after_reply_worsened_share": ar.get("worsened_share"),
                         "after_reply_customers": ar.get("customers", 0), "resolution_count": res.get("count", 0),
                         "resolution_mean_min": _minutes(res.get("mean_ms")), "next_response_count": nxt.get("count", 0),
                         "next_response_mean_min": _minutes(nxt.get("mean_ms"))})
        extra = pl.DataFrame(rows, schema=dict.fromkeys(_RANGE_COLUMNS, pl.Float64), strict=False)
        return pl.concat([frame, extra], how="horizontal")

    cols = ["period", "brand", "channel"]
    periods = participation(_with_quantiles(counts, exact(cols), sketched(cols), cols))
    periods = periods.select(_COLUMNS).sort("period", "brand", "channel")
    by_channel = counts.group_by("brand", "channel").agg(pl.col(_SUMMED).sum()).with_columns(
        pl.struct("brand", "channel").map_elements(lambda x: channel_authors[x["brand"], x["channel"]],
                                                   return_dtype=pl.Int64).alias("authors"),
        pl.struct("brand", "channel").map_elements(
            lambda x: active["brands"][x["brand"]]["channels"][x["channel"]], return_dtype=pl.Int64)
        .alias("active_customers"))
    channels = participation(_with_quantiles(by_channel, exact(["brand", "channel"]), sketched(["brand", "channel"]),
                                             ["brand", "channel"]))
    by_brand = counts.group_by("brand").agg(pl.col(_SUMMED).sum())
    authors = distinct_authors(client, keys, lo if lo is not None else 0, (hi - 1) if hi is not None else 2**62,
                               gran, sorted(by_brand["brand"].to_list()))
    by_brand = by_brand.with_columns(pl.col("brand").replace_strict(authors, default=0).alias("authors"),
                                     pl.col("brand").replace_strict({b: v["active"] for b, v in active["brands"].items()},
                                                                    default=0).alias("active_customers"))
    brands_frame = participation(_with_quantiles(by_brand, exact(["brand"]), sketched(["brand"]), ["brand"]))
    brand_cols = [c for c in _COLUMNS if c not in ("period", "channel")]
    return Report(since, until, gran, periods,
                  range_insights(brands_frame.select(brand_cols).sort("brand")),
                  range_insights(channels.select([c for c in _COLUMNS if c != "period"]).sort("brand", "channel")))


def _minutes(ms: float | None) -> float | None:
    return None if ms is None else ms / 60_000


def _pfcounts(client: redis.Redis, groups: list[list[str]]) -> list[int]:
    """PFCOUNT of each group of HyperLogLogs (their union), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for group in groups:
        pipe.pfcount(*group)
    return [int(n) for n in pipe.execute()] if groups else []


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
        "by the mention's period; quantiles exact while the exact values are kept, else from sketches (within 1 %). "
        "Answer rate: answered queries ÷ queries; reply rate: brand replies ÷ customer mentions. Authors: distinct "
        "(HyperLogLog) per period, channel and brand; attraction rate: new authors ÷ authors; participation rate: "
        "active CRM customers ÷ CRM customers. Behaviour after interaction, resolution and next response: over the "
        "whole range (README, Insights).</p></body></html>",
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
