"""``pulse spikes PATH --time-col C --value-col V [--scores-out CSV] [--json]`` as a user runs it."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from stream.cli.spikes import SpikeInputError, register, run_spikes
from stream.schema import Alert

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command("noop")
    def noop() -> None:  # a second command, so Typer keeps "spikes" as a sub-command name
        """Nothing."""

    return a


def write_series(path: Path, n: int = 3000, spike_at: int | None = 2500, seed: int = 1) -> Path:
    """Five-minute counts with a daily cycle and an optional hour-long spike."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = START + timedelta(minutes=5 * i)
        lam = 12 * (1 + 0.6 * math.sin(2 * math.pi * (t.hour * 60 + t.minute) / 1440))
        if spike_at is not None and spike_at <= i < spike_at + 12:
            lam *= 6
        rows.append({"when": t.strftime("%Y-%m-%d %H:%M:%S"), "mentions": sum(rng.random() < lam / 100 for _ in range(100))})
    pl.DataFrame(rows).write_csv(path)
    return path


def test_scores_and_json_alerts(app: typer.Typer, tmp_path: Path) -> None:
    src = write_series(tmp_path / "acme.csv")
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(app, ["spikes", str(src), "--time-col", "when", "--value-col", "mentions",
                                   "--scores-out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    alerts = orjson.loads(res.stdout)
    assert len(alerts) == 1
    a = Alert.from_dict(alerts[0])
    assert a.kind == "spike" and a.brand == "acme" and a.severity in ("medium", "high")
    assert a.window_start.startswith((START + timedelta(minutes=5 * 2500)).strftime("%Y-%m-%dT%H"))
    assert a.observed > 3 * a.expected
    scores = pl.read_csv(out)
    assert scores.columns == ["timestamp", "value", "score", "alert"]
    assert scores.height == 3000
    assert scores["score"].min() >= 0.0 and scores["score"].max() <= 1.0
    flagged = scores.with_row_index().filter(pl.col("alert"))["index"].to_list()
    assert flagged and 2500 <= min(flagged) and max(flagged) < 2500 + 12 + 3
    assert scores["timestamp"][0] == "2024-01-01T00:00:00+00:00"


def test_columns_and_interval_are_inferred(app: typer.Typer, tmp_path: Path) -> None:
    # The usual names are found without --time-col / --value-col; rows every 5 minutes, some missing.
    rng = random.Random(3)
    rows = []
    for i in range(4000):
        if i % 17 == 5:
            continue  # a missing row is an empty interval
        t = START + timedelta(minutes=5 * i, seconds=53)  # not on a round minute
        lam = 30 * (1 + 0.5 * math.sin(2 * math.pi * (t.hour * 60 + t.minute) / 1440))
        if 3500 <= i < 3512:
            lam *= 5
        rows.append({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": sum(rng.random() < lam / 200 for _ in range(200))})
    src = tmp_path / "Twitter_volume_ACME.csv"
    pl.DataFrame(rows).write_csv(src)
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(app, ["spikes", str(src), "--json", "--scores-out", str(out)])
    assert res.exit_code == 0, res.output
    alerts = orjson.loads(res.stdout)
    assert len(alerts) == 1 and alerts[0]["brand"] == "Twitter_volume_ACME"
    assert alerts[0]["window_start"] == (START + timedelta(minutes=5 * 3500, seconds=53)).isoformat()
    assert alerts[0]["interval_s"] == 300.0 and alerts[0]["expected"] < alerts[0]["expected_upper"]
    scores = pl.read_csv(out)
    assert scores.height == len(rows) and scores.columns == ["timestamp", "value", "score", "alert"]
    assert run_spikes(src, progress=False).alerts == alerts


def test_alerts_per_week_sets_how_rare_a_spike_must_be(tmp_path: Path) -> None:
    src = write_series(tmp_path / "s.csv", n=4000, spike_at=None, seed=9)
    eager = run_spikes(src, "when", "mentions", alerts_per_week=50.0, progress=False)
    default = run_spikes(src, "when", "mentions", progress=False)
    assert len(eager.alerts) > len(default.alerts)
    assert sum(s >= 0.5 for s in eager.scores) > sum(s >= 0.5 for s in default.scores)


def test_human_summary_without_json(app: typer.Typer, tmp_path: Path) -> None:
    src = write_series(tmp_path / "quiet.csv", n=600, spike_at=None)
    res = CliRunner().invoke(app, ["spikes", str(src), "--time-col", "when", "--value-col", "mentions"])
    assert res.exit_code == 0
    assert "no spikes in 600 rows" in res.stdout


def test_bad_rows_unsorted_and_epoch_times(tmp_path: Path) -> None:
    src = tmp_path / "messy.csv"
    base = int(START.timestamp())
    lines = ["ts,n"] + [f"{base + 3600 * i},{5 + i % 3}" for i in range(200)]
    lines[10], lines[50] = lines[50], lines[10]  # out of order
    lines += [f"{base + 3600 * 300},", f"{base + 3600 * 301},NaN", f"{base + 3600 * 302},-4",
              f"{base + 3600 * 303},many", "not a time,7", ",3"]
    src.write_text("\n".join(lines) + "\n")
    run = run_spikes(src, "ts", "n", progress=False)
    assert run.rows == 206
    frame = run.scores_frame()
    assert frame.height == 206 and frame["timestamp"][9] == (START + timedelta(hours=49)).isoformat()
    assert frame["score"][-6:].to_list() == [0.0] * 6 and not any(frame["alert"][-6:].to_list())
    assert frame["timestamp"][-2] == "not a time"
    assert all(0.0 <= s <= 1.0 for s in frame["score"].to_list())


def test_empty_and_constant_series(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("ts,n\n")
    run = run_spikes(empty, "ts", "n")
    assert run.rows == 0 and run.alerts == [] and run.scores_frame().height == 0
    flat = tmp_path / "flat.csv"
    flat.write_text("ts,n\n" + "".join(f"{(START + timedelta(minutes=i)).isoformat()},7\n" for i in range(3000)))
    run = run_spikes(flat, "ts", "n")
    assert run.alerts == [] and max(run.scores) == 0.0


def test_negative_column_tells_buzz_from_incident(tmp_path: Path) -> None:
    rng = random.Random(4)
    rows = []
    for i in range(4 * 1440):
        t = START + timedelta(minutes=i)
        buzz, outage = 1440 <= i < 1500, 3 * 1440 <= i < 3 * 1440 + 60
        n = sum(rng.random() < (0.5 if buzz or outage else 0.1) for _ in range(60))
        neg = sum(rng.random() < (0.8 if outage else 0.2) for _ in range(n))
        rows.append({"t": t.isoformat(), "n": n, "neg": neg})
    src = tmp_path / "s.csv"
    pl.DataFrame(rows).write_csv(src)
    with_neg = run_spikes(src, "t", "n", negative_col="neg", brand="acme", channel="twitter")
    counts_only = run_spikes(src, "t", "n")
    assert len(with_neg.alerts) == 1 and with_neg.alerts[0]["window_start"].startswith("2024-01-04")
    assert with_neg.alerts[0]["channel"] == "twitter"
    assert len(counts_only.alerts) == 2


@pytest.mark.parametrize("args, message", [
    (["--time-col", "nope", "--value-col", "mentions"], "no column 'nope' (columns: when, mentions)"),
    (["--time-col", "when", "--value-col", "count"], "no column 'count'"),
])
def test_missing_columns_are_one_line_errors(app: typer.Typer, tmp_path: Path, args: list[str], message: str) -> None:
    src = write_series(tmp_path / "s.csv", n=50, spike_at=None)
    res = CliRunner().invoke(app, ["spikes", str(src), *args])
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_no_time_column_is_one_line_error(app: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "numbers.csv"
    src.write_text("a,b\n1,2\n3,4\n")
    res = CliRunner().invoke(app, ["spikes", str(src)])
    assert res.exit_code == 2
    assert "no time column found; name it with --time-col (columns: a, b)" in res.stderr


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(SpikeInputError, match="no such file"):
        run_spikes(tmp_path / "missing.csv", "t", "n")
    with pytest.raises(SpikeInputError, match="is a directory"):
        run_spikes(tmp_path, "t", "n")
    zero = tmp_path / "zero.csv"
    zero.write_bytes(b"")
    with pytest.raises(SpikeInputError, match="empty file"):
        run_spikes(zero, "t", "n")
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x01binary\x00\x00,\n\x00\xff" * 50)
    with pytest.raises(SpikeInputError):
        run_spikes(garbage, "t", "n")


def test_through_the_pulse_entry_point(tmp_path: Path) -> None:
    src = write_series(tmp_path / "s.csv", n=400, spike_at=None)
    ok = subprocess.run([sys.executable, "-m", "stream.cli", "spikes", str(src), "--time-col", "when",
                         "--value-col", "mentions", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout) == []
    bad = subprocess.run([sys.executable, "-m", "stream.cli", "spikes", str(tmp_path / "none.csv"), "--time-col",
                          "when", "--value-col", "mentions"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("none.csv: no such file") and "Traceback" not in bad.stderr
    out_dir = subprocess.run([sys.executable, "-m", "stream.cli", "spikes", str(src), "--time-col", "when",
                              "--value-col", "mentions", "--scores-out", str(tmp_path / "no" / "dir.csv")],
                             capture_output=True, text=True, timeout=120)
    assert out_dir.returncode == 2 and "cannot write" in out_dir.stderr and "Traceback" not in out_dir.stderr
