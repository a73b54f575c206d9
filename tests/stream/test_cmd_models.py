"""``pulse classify`` / ``train`` / ``evaluate`` on small CSV files, against a real Redis."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest
import redis
import typer
from typer.testing import CliRunner

from models import registry
from stream.cli.models import register

runner = CliRunner()


@pytest.fixture()
def app() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    rows = []
    for i in range(40):
        rows.append(
            {
                "id": i,
                "body": f"my bag is lost again, flight {i} was awful",
                "mood": "negative",
                "when": f"2024-01-01T00:{i:02d}:00Z",
                "ch": "twitter",
            }
        )
        rows.append(
            {
                "id": 100 + i,
                "body": f"thanks for the lovely trip number {i}",
                "mood": "positive",
                "when": f"2024-01-01T01:{i:02d}:00Z",
                "ch": "review",
            }
        )
        rows.append(
            {
                "id": 200 + i,
                "body": f"flight {i} boards at gate 4",
                "mood": "neutral",
                "when": f"2024-01-01T02:{i:02d}:00Z",
                "ch": "twitter",
            }
        )
    rows.append(
        {"id": 999, "body": "what is this", "mood": "confused", "when": "2024-01-02T00:00:00Z", "ch": "forum"}
    )
    path = tmp_path / "labelled.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


def _opts(redis_url: str, key_prefix: str) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", key_prefix]


def test_classify_writes_input_columns_plus_prediction(
    app: typer.Typer, labelled: Path, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    out = tmp_path / "out" / "pred.csv"
    result = runner.invoke(
        app,
        [
            "classify",
            str(labelled),
            "--model",
            "sentiment",
            "--text-col",
            "body",
            "--output",
            str(out),
            "--channel-col",
            "ch",
            "--fresh",
            *_opts(redis_url, key_prefix),
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert frame.columns == ["id", "body", "mood", "when", "ch", "prediction"]
    assert frame.height == 121
    assert set(frame["prediction"].unique()) <= {"negative", "neutral", "positive"}
    assert frame.filter(pl.col("id") == 0)["prediction"][0] == "negative"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["classify", "{missing}", "--model", "intent", "--text-col", "body", "--output", "{out}"],
            "no such file",
        ),
        (
            ["classify", "{csv}", "--model", "mood", "--text-col", "body", "--output", "{out}"],
            "unknown model 'mood'",
        ),
        (
            ["classify", "{csv}", "--model", "intent", "--text-col", "nope", "--output", "{out}"],
            "column 'nope' is not in",
        ),
        (
            ["classify", "{binary}", "--model", "intent", "--text-col", "body", "--output", "{out}"],
            "cannot read",
        ),
        (
            ["train", "--model", "intent", "--input", "{csv}", "--text-col", "body", "--label-col", "mood"],
            "no usable rows",
        ),
        (
            [
                "evaluate",
                "--model",
                "sentiment",
                "--input",
                "{csv}",
                "--text-col",
                "body",
                "--label-col",
                "gone",
            ],
            "column 'gone'",
        ),
        (
            [
                "train",
                "--model",
                "intent",
                "--input",
                "{csv}",
                "--text-col",
                "body",
                "--label-col",
                "mood",
                "--label-map",
                "x",
            ],
            "not FROM=TO",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(
    app: typer.Typer,
    labelled: Path,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    args: list[str],
    message: str,
) -> None:
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    filled = [
        a.format(missing=tmp_path / "none.csv", out=tmp_path / "o.csv", csv=labelled, binary=binary)
        for a in args
    ]
    result = runner.invoke(app, [*filled, *_opts(redis_url, key_prefix)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_saves_a_new_checkpoint_version(
    app: typer.Typer, labelled: Path, r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    args = [
        "train",
        "--model",
        "sentiment",
        "--input",
        str(labelled),
        "--text-col",
        "body",
        "--label-col",
        "mood",
        "--fresh",
        "--json",
        *_opts(redis_url, key_prefix),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    assert out["version"] == 1 and out["rows"] == 120 and out["skipped"] == 1 and out["learned"] == 120
    assert "unknown label 'confused'" in result.stderr
    # Without --fresh the next run starts from that checkpoint and adds a version.
    again = runner.invoke(app, args[:-6] + ["--epochs", "2", "--json", *_opts(redis_url, key_prefix)])
    assert again.exit_code == 0, again.output
    out2 = orjson.loads(again.stdout)
    assert out2["started_from"] == "checkpoint v1" and out2["version"] == 2 and out2["n_learned"] == 360
    model = registry.load(r, key_prefix, "sentiment")
    assert model.n_learned == 360
    assert registry.info(r, key_prefix, "sentiment")["metrics"]["train_rows"] == 120


def test_evaluate_reports_holdout_and_prequential(
    app: typer.Typer, labelled: Path, redis_url: str, key_prefix: str
) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "sentiment",
            "--input",
            str(labelled),
            "--text-col",
            "body",
            "--label-col",
            "mood",
            "--time-col",
            "when",
            "--fresh",
            "--json",
            *_opts(redis_url, key_prefix),
        ],
    )
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    hold = out["holdout"]
    assert hold["split"] == "time (when)" and hold["train"] + hold["test"] == 120
    for part in ("before_training", "after_training", "majority_baseline"):
        assert {"accuracy", "macro_recall", "macro_f1", "confusion"} <= set(hold[part])
    assert out["prequential"]["n"] == 120 and "rolling" in out["prequential"]


def test_evaluate_intent_with_a_label_map(
    app: typer.Typer, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    path = tmp_path / "acts.csv"
    rows = [{"text": f"how do I reset password {i}?", "act": "QUE"} for i in range(20)]
    rows += [{"text": f"great match tonight {i}", "act": "EXP"} for i in range(20)]
    pl.DataFrame(rows).write_csv(path)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "intent",
            "--input",
            str(path),
            "--text-col",
            "text",
            "--label-col",
            "act",
            "--label-map",
            "QUE=query,REQ=query,*=comment",
            "--fresh",
            *_opts(redis_url, key_prefix),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "holdout, after training" in result.stdout and "macro recall" in result.stdout
