"""``pulse spikes``: run the default spike detector over a CSV series of counts (one row per interval).

``stream/cli/__init__.py`` calls :func:`register`.
"""

from __future__ import annotations

import logging
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

from models.spikes import SpikeAlerter, SpikeDetector, to_epoch_seconds

__all__ = ["SpikeRun", "register", "run_spikes"]

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


def _read_series(path: Path, time_col: str, value_col: str, negative_col: str | None) -> pl.DataFrame:
    if not path.exists():
        raise SpikeInputError(f"{path}: no such file")
    if path.is_dir():
        raise SpikeInputError(f"{path}: is a directory, not a CSV file")
    try:
        df = pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=False, truncate_ragged_lines=True)
    except pl.exceptions.NoDataError:
        raise SpikeInputError(f"{path}: empty file (expected a CSV header with {time_col!r} and {value_col!r})") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpikeInputError(f"{path}: cannot read as CSV ({first[:160]})") from None
    wanted = [time_col, value_col] + ([negative_col] if negative_col else [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        cols = ", ".join(df.columns[:20]) + (", ..." if len(df.columns) > 20 else "")
        raise SpikeInputError(f"{path}: no column {missing[0]!r} (columns: {cols})")
    return df


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


def run_spikes(
    path: Path,
    time_col: str,
    value_col: str,
    negative_col: str | None = None,
    brand: str | None = None,
    channel: str | None = None,
    threshold: float = 4.0,
    progress: bool = True,
) -> SpikeRun:
    """Score every row of a CSV series with the default detector (prequential: score, then learn).

    Rows are processed in time order and reported in input order; rows without a readable time or a
    usable count (empty, NaN, negative) score 0 and never alert. Raises :class:`SpikeInputError`.
    """
    df = _read_series(path, time_col, value_col, negative_col)
    times = _times(df.get_column(time_col))
    values = df.get_column(value_col).cast(pl.Float64, strict=False).to_list()
    negatives = (df.get_column(negative_col).cast(pl.Float64, strict=False).to_list()
                 if negative_col else [None] * len(values))
    n = len(values)
    raw_ts = df.get_column(time_col).cast(pl.String, strict=False).to_list()
    stamps = [t.isoformat() if t is not None else (r or "") for t, r in zip(times, raw_ts, strict=True)]
    scores = [0.0] * n
    alerting = [False] * n
    alerter = SpikeAlerter(detector=SpikeDetector(threshold=threshold), interval_s=None)
    brand = brand or path.stem
    emitted: dict[str, dict[str, Any]] = {}
    order = sorted((i for i in range(n) if times[i] is not None), key=lambda i: times[i])  # type: ignore[arg-type, return-value]

    bar: Progress | None = None
    if progress and n >= PROGRESS_MIN_ROWS:
        bar = Progress(TextColumn("[bold]spikes"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                       TimeElapsedColumn(), console=err, transient=True)
        bar.start()
        task = bar.add_task("spikes", total=len(order))
    try:
        for done, i in enumerate(order, 1):
            v = values[i]
            neg = negatives[i]
            when = times[i]
            assert when is not None  # only rows with a time are in ``order``
            obs = alerter.observe(brand, channel, when, v if v is not None else float("nan"),
                                  topic=None, negative=neg if negative_col else None)
            scores[i] = round(min(1.0, max(0.0, obs.score)), 6)
            alerting[i] = obs.spiking
            for a in obs.alerts:
                emitted[a["id"]] = a
            if bar is not None and (done % 2000 == 0 or done == len(order)):
                bar.update(task, completed=done)
    finally:
        if bar is not None:
            bar.stop()
    for a in alerter.active():  # still open at the end of the series: its latest state
        emitted[a["id"]] = a
    alerts = sorted(emitted.values(), key=lambda a: (a["window_start"], a["id"]))
    return SpikeRun(stamps, values, scores, alerting, alerts)


def _fail(message: str) -> typer.Exit:
    print(f"pulse spikes: error: {message}", file=sys.stderr)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``pulse spikes`` to the CLI."""

    @app.command("spikes")
    def spikes(
        path: Annotated[Path, typer.Argument(help="CSV file with one row per interval.", show_default=False)],
        time_col: Annotated[str, typer.Option("--time-col", help="Column with the interval start (ISO 8601 or epoch seconds/ms).")],
        value_col: Annotated[str, typer.Option("--value-col", help="Column with the count of mentions in the interval.")],
        scores_out: Annotated[Path | None, typer.Option("--scores-out", help="Write timestamp,value,score,alert per input row to this CSV (score in [0, 1]).", show_default=False)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the alerts (one per incident) as a JSON array.")] = False,
        negative_col: Annotated[str | None, typer.Option("--negative-col", help="Optional column with the negative mentions per interval: only spikes of complaints alert.", show_default=False)] = None,
        brand: Annotated[str | None, typer.Option("--brand", help="Brand named in the alerts (default: the file's name).", show_default=False)] = None,
        channel: Annotated[str | None, typer.Option("--channel", help="Channel named in the alerts.", show_default=False)] = None,
        threshold: Annotated[float, typer.Option("--threshold", help="Robust sigmas above the expectation at which a spike alerts.", min=0.5)] = 4.0,
    ) -> None:
        """Detect spikes in a series of counts per interval (seasonality-aware, online)."""
        try:
            run = run_spikes(path, time_col, value_col, negative_col=negative_col, brand=brand,
                             channel=channel, threshold=threshold)
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
