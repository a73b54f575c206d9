"""``pulse classify`` / ``train`` / ``evaluate`` on small CSV files, against a real Redis."""

from __future__ import annotations

import hashlib
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
KEY = "cmd-models-test-key"


@pytest.fixture(autouse=True)
def model_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Checkpoints are signed with the model key: the CLI reads PULSE_MODEL_KEY."""
    monkeypatch.setenv("PULSE_MODEL_KEY", KEY)
    return KEY.encode()


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
    model = registry.load(r, key_prefix, "sentiment", key=KEY.encode())
    assert model.n_learned == 360
    meta = registry.info(r, key_prefix, "sentiment")
    assert meta["metrics"]["train_rows"] == 120
    # What each version was trained on: the file (sha256, rows), the columns, and its lineage.
    prov = meta["provenance"]
    sha = hashlib.sha256(labelled.read_bytes()).hexdigest()
    assert prov["files"] == [{"path": str(labelled), "name": "labelled.csv", "sha256": sha,
                              "bytes": labelled.stat().st_size, "rows": 121, "rows_used": 120}]
    assert prov["label_col"] == "mood" and prov["started_from"] == "checkpoint v1" and prov["parent_version"] == 1
    assert [f["sha256"] for f in prov["trained_on"]] == [sha, sha] and prov["trained_at"].startswith("20")
    assert registry.text_fingerprint("thanks for the lovely trip number 3") in registry.trained_texts(
        r, key_prefix, "sentiment", 2)


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
    assert hold["split"] == "time (when)" and (hold["train"], hold["test"]) == (96, 24)
    for part in ("before_training", "after_training", "fresh_after_training", "majority_baseline",
                 "vader_baseline"):
        assert {"accuracy", "macro_recall", "macro_f1", "confusion"} <= set(hold[part])
    # time order: the newest 20 % (the neutral rows of hour 2 and the forum row) are the test set
    assert set(hold["majority_baseline"]["confusion"]) == {"neutral"}
    assert out["prequential"]["n"] == 120 and "rolling" in out["prequential"]
    assert out["overlap"]["test_rows_trained_on"] == 0 and "warning" not in out


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
    assert "holdout, current model + train split" in result.stdout and "macro recall" in result.stdout
    assert "split: time (file order)" in result.stdout and "baseline: majority class" in result.stdout
    assert "VADER" not in result.stdout  # a sentiment lexicon says nothing about intent


def _evaluate(app: typer.Typer, path: Path, redis_url: str, key_prefix: str, *extra: str) -> tuple[dict, str]:
    result = runner.invoke(app, ["evaluate", "--model", "sentiment", "--input", str(path), "--text-col", "body",
                                 "--label-col", "mood", "--json", *extra, *_opts(redis_url, key_prefix)])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout), result.stderr


def test_evaluate_says_when_the_input_was_trained_on(
    app: typer.Typer, labelled: Path, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    trained = runner.invoke(app, ["train", "--model", "sentiment", "--input", str(labelled), "--text-col", "body",
                                  "--label-col", "mood", "--fresh", *_opts(redis_url, key_prefix)])
    assert trained.exit_code == 0, trained.output
    out, stderr = _evaluate(app, labelled, redis_url, key_prefix)
    overlap = out["overlap"]
    assert overlap["same_file"] == ["labelled.csv"] and overlap["share"] == 1.0
    assert overlap["test_rows_trained_on"] == overlap["test_rows"] == out["holdout"]["test"]
    assert "warning" in out and "not held-out scores" in stderr and out["source"] == "checkpoint v1"
    # The same texts in another file are caught too; new texts are not.
    frame = pl.read_csv(labelled)
    copy_path = tmp_path / "copy.csv"
    frame.write_csv(copy_path)
    with copy_path.open("a") as fh:
        fh.write("500,a brand new complaint about the lounge,negative,2024-01-03T00:00:00Z,twitter\n")
    out, _ = _evaluate(app, copy_path, redis_url, key_prefix, "--split", "random", "--holdout", "0.5")
    assert out["overlap"]["same_file"] == [] and 0.9 < out["overlap"]["share"] <= 1.0
    assert out["holdout"]["split"] == "random (seed 42)"
    fresh_rows = tmp_path / "fresh.csv"
    pl.DataFrame([{"body": f"unseen text number {i} about a delayed flight", "mood": "negative"}
                  for i in range(20)]).write_csv(fresh_rows)
    out, _ = _evaluate(app, fresh_rows, redis_url, key_prefix)
    assert out["overlap"]["test_rows_trained_on"] == 0 and "warning" not in out


def test_evaluate_finds_a_time_column_by_name(
    app: typer.Typer, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    rows = [{"body": f"text {i} is {'bad' if i % 2 else 'great'}", "mood": "negative" if i % 2 else "positive",
             "created_at": f"2024-01-{1 + (39 - i) // 2:02d}T00:00:{i:02d}Z"} for i in range(40)]
    path = tmp_path / "t.csv"
    pl.DataFrame(rows).write_csv(path)
    out, _ = _evaluate(app, path, redis_url, key_prefix, "--fresh")
    assert out["holdout"]["split"] == "time (created_at)" and out["holdout"]["test"] == 8
    bad = runner.invoke(app, ["evaluate", "--model", "sentiment", "--input", str(path), "--text-col", "body",
                              "--label-col", "mood", "--split", "sideways", *_opts(redis_url, key_prefix)])
    assert bad.exit_code == 2 and "--split must be" in bad.output


def test_models_list_and_rollback(app: typer.Typer, labelled: Path, r: redis.Redis, redis_url: str,
                                  key_prefix: str) -> None:
    empty = runner.invoke(app, ["models", "list", *_opts(redis_url, key_prefix)])
    assert empty.exit_code == 0 and "no checkpointed models" in empty.stdout
    args = ["train", "--model", "sentiment", "--input", str(labelled), "--text-col", "body", "--label-col", "mood",
            *_opts(redis_url, key_prefix)]
    assert runner.invoke(app, [*args, "--fresh"]).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    listed = runner.invoke(app, ["models", "list", *_opts(redis_url, key_prefix)])
    assert listed.exit_code == 0, listed.output
    assert "sentiment: serving v2" in listed.stdout and "labelled.csv (120 rows, sha256" in listed.stdout
    assert "* v2" in listed.stdout and "from checkpoint v1" in listed.stdout
    back = runner.invoke(app, ["models", "rollback", "sentiment", *_opts(redis_url, key_prefix)])
    assert back.exit_code == 0 and "now serves version 1 (was 2)" in back.stderr
    as_json = orjson.loads(runner.invoke(app, ["models", "list", "--json", *_opts(redis_url, key_prefix)]).stdout)
    assert as_json[0]["version"] == 1 and as_json[0]["rolled_back_reason"] == "cli"
    assert registry.load(r, key_prefix, "sentiment", key=KEY.encode()).n_learned == 120
    for bad, message in ((["models", "rollback", "sentiment", "9"], "no kept version 9"),
                         (["models", "rollback", "mood"], "unknown model 'mood'"),
                         (["models", "rollback", "intent"], "no checkpoints")):
        result = runner.invoke(app, [*bad, *_opts(redis_url, key_prefix)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_checkpoint_with_a_bad_signature_is_refused(
    app: typer.Typer, labelled: Path, tmp_path: Path, r: redis.Redis, redis_url: str, key_prefix: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["train", "--model", "sentiment", "--input", str(labelled), "--text-col", "body",
                               "--label-col", "mood", "--fresh", *_opts(redis_url, key_prefix)]).exit_code == 0
    monkeypatch.setenv("PULSE_MODEL_KEY", "another key")
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["classify", str(labelled), "--model", "sentiment", "--text-col", "body",
                                 "--output", str(out), *_opts(redis_url, key_prefix)])
    assert result.exit_code == 0, result.output
    assert "checkpoint refused: signature does not match" in result.stderr
    assert "using the default model instead" in result.stderr and "with sentiment model (default" in result.stderr
