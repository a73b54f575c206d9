"""``pulse spikes``: run the default spike detector over a CSV series of counts (one row per interval).

``stream/cli/__init__.py`` calls :func:`register`.
"""

from __future__ import annotations

import logging
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.spike_alerter import SpikeAlerter
from models.spikes import SpikeDetector, snap_interval, to_epoch_seconds

__all__ = ["SpikeInputError", "SpikeRun", "infer_interval", "register", "run_spikes"]

log = logging.getLogger(__name__)
err = Console(stderr=True)

#: Series at least this long show a progress bar (on stderr, so ``--json`` output stays clean).
PROGRESS_MIN_ROWS = 20_000


class SpikeInputError(ValueError):
    """The input cannot be read as a series: the message is the one line the user sees."""


class SpikeRun:
    """The result of :func:`run_spikes`: per-row scores and alert flags, and the alerts (one per incident).

    >>> run = SpikeRun(timestamps=["t0"], values=[1.0], scores=[0.0], alerting=[False], alerts=[])
    >>> run.rows
    1
    """

    def __init__(self, timestamps: list[str], values: list[float | None], scores: list[float],
                 alerting: list[bool], alerts: list[dict[str, Any]]) -> None:
        self.timestamps = timestamps
        self.values = values
        self.scores = scores
        self.alerting = alerting
        self.alerts = alerts

    @property
    def rows(self) -> int:
        return len(self.scores)

    def scores_frame(self) -> pl.DataFrame:
        """``timestamp,value,score,alert``: one row per input row, in input order."""
        return pl.DataFrame(
            {"timestamp": self.timestamps, "value": self.values, "score": self.scores, "alert": self.alerting},
            schema={"timestamp": pl.String, "value": pl.Float64, "score": pl.Float64, "alert": pl.Boolean},
        )


#: Column names tried, in order, when ``--time-col`` / ``--value-col`` are not given.
TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date", "window_start", "interval_start", "created_at")
VALUE_NAMES = ("value", "count", "mentions", "volume", "n", "total")


def _read_series(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise SpikeInputError(f"{path}: no such file")
    if path.is_dir():
        raise SpikeInputError(f"{path}: is a directory, not a CSV file")
    try:
        return pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=False, truncate_ragged_lines=True)
    except pl.exceptions.NoDataError:
        raise SpikeInputError(f"{path}: empty file (expected a CSV header with a time and a count column)") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpikeInputError(f"{path}: cannot read as CSV ({first[:160]})") from None


def _columns_list(df: pl.DataFrame) -> str:
    return ", ".join(df.columns[:20]) + (", ..." if len(df.columns) > 20 else "")


def _looks_like_time(col: pl.Series) -> bool:
    if col.dtype in (pl.Datetime, pl.Date):
        return True
    if col.dtype == pl.String:
        sample = [v for v in col.head(20).to_list() if v]
        return bool(sample) and all(to_epoch_seconds(v.strip()) is not None for v in sample)
    return False


def _pick_columns(df: pl.DataFrame, path: Path, time_col: str | None, value_col: str | None,
                  negative_col: str | None) -> tuple[str, str]:
    """The time and count columns: as given, else by their usual names, else by their contents."""
    for wanted in (time_col, value_col, negative_col):
        if wanted is not None and wanted not in df.columns:
            raise SpikeInputError(f"{path}: no column {wanted!r} (columns: {_columns_list(df)})")
    lower = {c.lower(): c for c in df.columns}
    if time_col is None:
        time_col = next((lower[n] for n in TIME_NAMES if n in lower), None)
        if time_col is None:
            time_col = next((c for c in df.columns if _looks_like_time(df.get_column(c))), None)
        if time_col is None:
            raise SpikeInputError(f"{path}: no time column found; name it with --time-col "
                                  f"(columns: {_columns_list(df)})")
    if value_col is None:
        value_col = next((lower[n] for n in VALUE_NAMES if n in lower and lower[n] != time_col), None)
        if value_col is None:
            value_col = next((c for c in df.columns if c not in (time_col, negative_col)
                              and df.get_column(c).dtype.is_numeric()), None)
        if value_col is None:
            raise SpikeInputError(f"{path}: no count column found; name it with --value-col "
                                  f"(columns: {_columns_list(df)})")
    return time_col, value_col


def _times(col: pl.Series) -> list[datetime | None]:
    """Event times as aware UTC datetimes (None where a value cannot be read)."""
    if col.dtype == pl.Datetime:
        tz = getattr(col.dtype, "time_zone", None)
        s = col if tz else col.dt.replace_time_zone("UTC")
        return s.dt.convert_time_zone("UTC").to_list()
    if col.dtype == pl.Date:
        return [datetime(d.year, d.month, d.day, tzinfo=UTC) if d else None for d in col.to_list()]
    if col.dtype.is_numeric():
        out: list[datetime | None] = []
        for v in col.cast(pl.Float64, strict=False).to_list():
            secs = to_epoch_seconds(v) if v is not None else None
            out.append(datetime.fromtimestamp(secs, tz=UTC) if secs is not None else None)
        return out
    text = col.cast(pl.String, strict=False).str.strip_chars()
    out = []
    for v in text.to_list():
        secs = to_epoch_seconds(v) if v else None
        if secs is None and v:
            try:  # epoch seconds or milliseconds in a column that also holds text
                secs = to_epoch_seconds(float(v))
            except ValueError:
                secs = None
        out.append(datetime.fromtimestamp(secs, tz=UTC) if secs is not None else None)
    return out


def infer_interval(epochs: list[float]) -> int:
    """The interval of a series from its timestamps: the median spacing between distinct times,
    snapped to a length that divides an hour or a week (1, 5, 15 minutes, 1 hour, 1 day...).

    >>> infer_interval([0, 300, 600, 1200, 1500])
    300
    >>> infer_interval([0])
    60
    """
    distinct = sorted(set(epochs))
    gaps = sorted(b - a for a, b in zip(distinct, distinct[1:], strict=False))
    if not gaps:
        return 60
    return snap_interval(gaps[len(gaps) // 2])


def run_spikes(
    path: Path,
    time_col: str | None = None,
    value_col: str | None = None,
    negative_col: str | None = None,
    brand: str | None = None,
    channel: str | None = None,
    alerts_per_week: float | None = None,
    interval_s: float | None = None,
    progress: bool = True,
) -> SpikeRun:
    """Score every row of a CSV series with the default detector (prequential: score, then learn).

    Rows are processed in time order and reported in input order; each row is one interval (its length
    inferred from the timestamps unless ``interval_s`` is given), intervals without a row count as empty
    and rows sharing a time are summed. Rows without a readable time or a usable count (empty, NaN,
    negative) score 0 and never alert. Raises :class:`SpikeInputError`.
    """
    df = _read_series(path)
    time_col, value_col = _pick_columns(df, path, time_col, value_col, negative_col)
    times = _times(df.get_column(time_col))
    values = df.get_column(value_col).cast(pl.Float64, strict=False).to_list()
    negatives = (df.get_column(negative_col).cast(pl.Float64, strict=False).to_list()
                 if negative_col else [None] * len(values))
    n = len(values)
    raw_ts = df.get_column(time_col).cast(pl.String, strict=False).to_list()
    stamps = [t.isoformat() if t is not None else (r or "") for t, r in zip(times, raw_ts, strict=True)]
    scores = [0.0] * n
    alerting = [False] * n
    epochs = [t.timestamp() if t is not None else None for t in times]
    step = snap_interval(interval_s) if interval_s else infer_interval([e for e in epochs if e is not None])
    detector = SpikeDetector() if alerts_per_week is None else SpikeDetector(alerts_per_week=alerts_per_week)
    alerter = SpikeAlerter(detector=detector, interval_s=step, window_s=step, align=False)
    brand = brand or path.stem
    emitted: dict[str, dict[str, Any]] = {}
    order = sorted((i for i in range(n) if epochs[i] is not None), key=lambda i: epochs[i])  # type: ignore[arg-type, return-value]
    # Rows sharing a time are one interval: summed, and given the interval's score.
    groups: list[list[int]] = []
    for i in order:
        if groups and epochs[groups[-1][0]] == epochs[i]:
            groups[-1].append(i)
        else:
            groups.append([i])

    bar: Progress | None = None
    if progress and n >= PROGRESS_MIN_ROWS:
        bar = Progress(TextColumn("[bold]spikes"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                       TimeElapsedColumn(), console=err, transient=True)
        bar.start()
        task = bar.add_task("spikes", total=len(order))
    done = 0
    try:
        for rows in groups:
            usable = [i for i in rows if values[i] is not None and math.isfinite(values[i]) and values[i] >= 0]  # type: ignore[operator, arg-type]
            done += len(rows)
            if not usable:
                continue
            count = sum(values[i] for i in usable)  # type: ignore[misc]
            neg = None
            if negative_col:
                negs = [negatives[i] for i in usable if negatives[i] is not None and math.isfinite(negatives[i])]  # type: ignore[arg-type]
                neg = sum(negs) if negs else None  # type: ignore[arg-type]
            obs = alerter.observe(brand, channel, epochs[usable[0]], count, topic=None,  # type: ignore[arg-type]
                                  negative=neg if negative_col else None)
            for i in usable:
                scores[i] = round(min(1.0, max(0.0, obs.score)), 6)
                alerting[i] = obs.spiking
            for a in obs.alerts:
                emitted[a["id"]] = a
            if bar is not None and (done % 2000 < len(rows) or done == len(order)):
                bar.update(task, completed=done)
    finally:
        if bar is not None:
            bar.stop()
    for a in alerter.active():  # still open at the end of the series: its latest state
        emitted[a["id"]] = a
    alerts = sorted(emitted.values(), key=lambda a: (a["window_start"], a["id"]))
    log.info("pulse spikes: %d rows, interval %d s, %d alerts", n, step, len(alerts))
    return SpikeRun(stamps, values, scores, alerting, alerts)


def _fail(message: str) -> typer.Exit:
    print(f"pulse spikes: error: {message}", file=sys.stderr)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``pulse spikes`` to the CLI."""

    @app.command("spikes")
    def spikes(
        path: Annotated[Path, typer.Argument(help="CSV file with one row per interval.", show_default=False)],
        time_col: Annotated[str | None, typer.Option("--time-col", help="Column with the interval start (ISO 8601 or epoch seconds/ms); default: a column named timestamp, time, ts, date... or the first that holds times.", show_default=False)] = None,
        value_col: Annotated[str | None, typer.Option("--value-col", help="Column with the count of mentions in the interval; default: a column named value, count, mentions... or the first numeric one.", show_default=False)] = None,
        scores_out: Annotated[Path | None, typer.Option("--scores-out", help="Write timestamp,value,score,alert per input row to this CSV (score in [0, 1]).", show_default=False)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the alerts (one per incident) as a JSON array.")] = False,
        negative_col: Annotated[str | None, typer.Option("--negative-col", help="Optional column with the negative mentions per interval: only spikes of complaints alert.", show_default=False)] = None,
        brand: Annotated[str | None, typer.Option("--brand", help="Brand named in the alerts (default: the file's name).", show_default=False)] = None,
        channel: Annotated[str | None, typer.Option("--channel", help="Channel named in the alerts.", show_default=False)] = None,
        alerts_per_week: Annotated[float | None, typer.Option("--alerts-per-week", help="How many spikes a week of ordinary traffic may raise: the detector learns how often each surprise happens in this series and alerts on rarer ones [default: 0.25].", min=0.001, show_default=False)] = None,
        interval: Annotated[float | None, typer.Option("--interval", help="Seconds per row; default: inferred from the timestamps (missing rows count as zero).", min=1.0, show_default=False)] = None,
    ) -> None:
        """Detect spikes in a series of counts per interval: seasonal, online (each row is scored before it
        is learned), one alert per incident; its window_start is the interval at which it opened."""
        try:
            run = run_spikes(path, time_col, value_col, negative_col=negative_col, brand=brand,
                             channel=channel, alerts_per_week=alerts_per_week, interval_s=interval)
        except SpikeInputError as exc:
            raise _fail(str(exc)) from None
        if scores_out is not None:
            try:
                run.scores_frame().write_csv(scores_out)
            except OSError as exc:
                raise _fail(f"cannot write {scores_out}: {exc.strerror or exc}") from None
        if as_json:
            sys.stdout.write(orjson.dumps(run.alerts, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        out = Console()
        if run.alerts:
            table = Table(title=f"{len(run.alerts)} spike(s) in {run.rows} rows")
            for name in ("window_start", "severity", "observed", "expected", "score", "message"):
                table.add_column(name)
            for a in run.alerts:
                table.add_row(a["window_start"], a["severity"], f"{a['observed']:g}", f"{a['expected']:.1f}",
                              f"{a['score']:.3f}", a["message"])
            out.print(table)
        else:
            out.print(f"no spikes in {run.rows} rows")
