"""Real mention-volume series from ``../shared/data``, with incidents labelled from the text.

Each series is a count of mentions per 5 minutes (empty intervals included) from one source's first to
last tweet, with its negative mentions where the source has sentiment labels. Labels mark the *onset*
of an event (NAB centres its window on it). Every rule reads something the detector never sees (crowd
labels of the complaint's reason, retweets of one text, what the tweets are about), so the labels are
not the detector's own criterion, a burst of volume:

* ``airline:<airline>`` (Twitter US Airline Sentiment, 2015-02-17 to 02-24): an **operational
  disruption** is a UTC day whose tweets crowd-labelled with the reason "Cancelled Flight" or "Late
  Flight" number at least twice that airline's median day and at least 60; its onset is the first hour
  of that day with at least twice the airline's median hourly count of such tweets (and at least 5).
  These are the winter storms of 21-23 February 2015. American is left out: the collection holds 4 of
  its tweets before 22 February and hundreds a day after (a change of collection, not of traffic), so
  there is no ordinary stretch to learn from. Virgin America (3 tweets an hour) has no disruption day.
* ``apple_dfe`` (tweets matching ``#AAPL OR @Apple``, 2014-12-01 to 12-10): a **retweet cascade** is
  one text retweeted at least 50 times within an hour; its onset is its first copy's 5-minute interval
  (a musician's viral complaint about battery life on 4 December, a protest in an Apple store on 9 December).
* ``sanders:apple`` (tweets at ``@apple``, 2011-10-15 to 10-18): an **announcement** is the first hour
  with at least 3 tweets quoting the iPhone 4S's first-weekend sales ("4 million" / "four million" /
  "sold"), published by Apple on 17 October 2011. Sanders' other topics span 3 to 23 hours only.

These series are short (4 to 9 days) and sparse (0 to 20 mentions per 5 minutes), so they are extra
evidence beside the simulator, not a benchmark of their own; benchmarks/spikes.py also reports the
alerts they raise per week outside the labelled windows (ordinary traffic).

>>> [s.name for s in load_all(Path("/nonexistent"))]
[]
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

__all__ = ["STEP_S", "RealSeries", "airline_series", "apple_dfe_series", "load_all", "sanders_series"]

log = logging.getLogger(__name__)

STEP_S = 300  # counts per 5 minutes, like the held-out Twitter volume series


@dataclass
class RealSeries:
    """Counts per ``STEP_S`` seconds from ``start`` (epoch seconds), with labelled onsets (indices)."""

    name: str
    start: int
    counts: list[int]
    negatives: list[int] | None = None
    labels: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def timestamps(self) -> list[int]:
        return [self.start + i * STEP_S for i in range(len(self.counts))]

    def frame(self) -> pl.DataFrame:
        """``timestamp`` (ISO, UTC), ``value`` and, where known, ``negative`` — what ``pulse spikes`` reads."""
        cols: dict[str, list] = {
            "timestamp": [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in self.timestamps()],
            "value": self.counts,
        }
        if self.negatives is not None:
            cols["negative"] = self.negatives
        return pl.DataFrame(cols)


def _bin(ts: pl.Series, start: int | None = None, end: int | None = None) -> tuple[int, list[int]]:
    secs = (ts.dt.epoch("s")).to_list()
    lo = (min(secs) // STEP_S) * STEP_S if start is None else start
    hi = (max(secs) // STEP_S) * STEP_S if end is None else end
    counts = [0] * ((hi - lo) // STEP_S + 1)
    for s in secs:
        if lo <= s <= hi + STEP_S - 1:
            counts[(s - lo) // STEP_S] += 1
    return lo, counts


def airline_series(data_dir: Path) -> list[RealSeries]:
    """One series per airline (American left out, see the module docstring)."""
    path = data_dir / "airline" / "Tweets.csv"
    if not path.exists():
        return []
    df = pl.read_csv(path).with_columns(
        pl.col("tweet_created").str.to_datetime("%Y-%m-%d %H:%M:%S %z").dt.convert_time_zone("UTC").alias("ts"),
        pl.col("negativereason").is_in(["Cancelled Flight", "Late Flight"]).fill_null(False).alias("ops"),
        (pl.col("airline_sentiment") == "negative").alias("neg"),
    )
    out = []
    for airline in sorted(df["airline"].unique().to_list()):
        if airline == "American":
            continue
        part = df.filter(pl.col("airline") == airline).sort("ts")
        start, counts = _bin(part["ts"])
        _, negs = _bin(part.filter(pl.col("neg"))["ts"], start, start + (len(counts) - 1) * STEP_S)
        series = RealSeries(f"airline:{airline}", start, counts, negs)
        ops = part.filter(pl.col("ops"))
        daily = ops.group_by(pl.col("ts").dt.truncate("1d").alias("day")).agg(pl.len().alias("n")).sort("day")
        hourly = ops.group_by(pl.col("ts").dt.truncate("1h").alias("hour")).agg(pl.len().alias("n")).sort("hour")
        all_days = part.select(pl.col("ts").dt.truncate("1d").unique()).to_series().sort()
        day_counts = {d: 0 for d in all_days.to_list()}
        day_counts.update(dict(zip(daily["day"].to_list(), daily["n"].to_list(), strict=True)))
        all_hours = part.select(pl.col("ts").dt.truncate("1h").unique()).to_series().sort()
        hour_counts = {h: 0 for h in all_hours.to_list()}
        hour_counts.update(dict(zip(hourly["hour"].to_list(), hourly["n"].to_list(), strict=True)))
        med_day = statistics.median(day_counts.values())
        med_hour = statistics.median(hour_counts.values())
        previous = False
        for day, n in sorted(day_counts.items()):
            disrupted = n >= max(2 * med_day, 60)
            if disrupted and not previous:
                onset = next((h for h, c in sorted(hour_counts.items())
                              if h >= day and h.date() == day.date() and c >= max(2 * med_hour, 5)), None)
                if onset is not None:
                    idx = (int(onset.timestamp()) - start) // STEP_S
                    series.labels.append(idx)
                    series.notes.append(f"{onset:%Y-%m-%d %H:%M} UTC: {n} cancellation/delay complaints "
                                        f"that day (median day {med_day:g})")
            previous = disrupted
        out.append(series)
    return out


def apple_dfe_series(data_dir: Path) -> list[RealSeries]:
    path = data_dir / "apple_dfe" / "Apple-Twitter-Sentiment-DFE.csv"
    if not path.exists():
        return []
    df = pl.read_csv(path).with_columns(
        pl.col("date").str.to_datetime("%a %b %d %H:%M:%S %z %Y").dt.convert_time_zone("UTC").alias("ts"),
        (pl.col("sentiment").cast(pl.String) == "1").alias("neg"),
    ).sort("ts")
    start, counts = _bin(df["ts"])
    _, negs = _bin(df.filter(pl.col("neg"))["ts"], start, start + (len(counts) - 1) * STEP_S)
    series = RealSeries("apple_dfe", start, counts, negs)
    cascades = (df.filter(pl.col("text").str.starts_with("RT "))
                .group_by([pl.col("ts").dt.truncate("1h").alias("hour"), "text"])
                .agg(pl.len().alias("n"), pl.col("ts").min().alias("first"))
                .filter(pl.col("n") >= 50).sort("first"))
    seen: set[str] = set()
    for row in cascades.iter_rows(named=True):
        if row["text"] in seen:
            continue
        seen.add(row["text"])
        first = df.filter(pl.col("text") == row["text"])["ts"].min()
        assert isinstance(first, datetime)
        series.labels.append((int(first.timestamp()) - start) // STEP_S)
        series.notes.append(f"{first:%Y-%m-%d %H:%M} UTC: retweet cascade ({row['n']} in an hour) of "
                            f"{row['text'][:60]!r}")
    return [series]


def sanders_series(data_dir: Path) -> list[RealSeries]:
    path = data_dir / "sanders" / "full-corpus.csv"
    if not path.exists():
        return []
    df = pl.read_csv(path).with_columns(
        pl.col("TweetDate").str.to_datetime("%a %b %d %H:%M:%S %z %Y").dt.convert_time_zone("UTC").alias("ts"),
        (pl.col("Sentiment") == "negative").alias("neg"),
        pl.col("TweetText").str.to_lowercase().str.contains("4 million|four million|sold").alias("sales"),
    ).filter(pl.col("Topic") == "apple").sort("ts")
    start, counts = _bin(df["ts"])
    _, negs = _bin(df.filter(pl.col("neg"))["ts"], start, start + (len(counts) - 1) * STEP_S)
    series = RealSeries("sanders:apple", start, counts, negs)
    hourly = (df.filter(pl.col("sales")).group_by(pl.col("ts").dt.truncate("1h").alias("hour"))
              .agg(pl.len().alias("n"), pl.col("ts").min().alias("first")).sort("hour"))
    hit = hourly.filter(pl.col("n") >= 3)
    if hit.height:
        first = hit["first"][0]
        series.labels.append((int(first.timestamp()) - start) // STEP_S)
        series.notes.append(f"{first:%Y-%m-%d %H:%M} UTC: iPhone 4S first-weekend sales quoted "
                            f"{hit['n'][0]} times in the hour")
    return [series]


def load_all(data_dir: Path) -> list[RealSeries]:
    """Every real series that can be built from ``data_dir`` (none if it is absent)."""
    out: list[RealSeries] = []
    for build in (airline_series, apple_dfe_series, sanders_series):
        try:
            out += build(data_dir)
        except (OSError, pl.exceptions.PolarsError) as exc:  # a broken file costs its series, not the run
            log.warning("%s: %s", build.__name__, exc)
    return out
