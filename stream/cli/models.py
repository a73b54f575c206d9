"""``pulse classify`` / ``pulse train`` / ``pulse evaluate``: the text models on a CSV file.

The *current* model is the checkpoint in Redis (``{prefix}model:{name}``; the embedded server under
``.pulse/`` when ``REDIS_URL`` is unset), else the default warm-started from the shipped data; ``--fresh``
starts from an untrained model (its prior alone). ``classify`` only predicts; ``train`` learns and saves a
new checkpoint version; ``evaluate`` scores on a holdout split (before and after training on the rest,
beside the majority-class baseline) and prequentially (test-then-train over the file).
``stream/cli/__init__.py`` calls :func:`register`. ``pulse feedback`` sends one label to the running flow.
"""

from __future__ import annotations

import copy
import logging
import random
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models import registry
from models.classifiers import TEXT_MODELS
from models.prequential import holdout_scores, majority_scores, prequential_scores
from stream.cli.common import ConfigOpt, PrefixOpt, RedisUrlOpt, VerboseOpt, load_settings, redis_for
from stream.keys import Keys
from stream.redisconn import RedisUnavailable, connect, ensure_redis_url
from stream.schema import SchemaError, parse_ts
from stream.settings import Settings, SettingsError

__all__ = ["ModelInputError", "labelled_rows", "parse_label_map", "read_table", "register"]

log = logging.getLogger(__name__)
err = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Text model: sentiment, intent or department.")]
TextColOpt = Annotated[str, typer.Option("--text-col", help="Column holding the mention text.")]
LabelColOpt = Annotated[str, typer.Option("--label-col", help="Column holding the true label.")]
ChannelColOpt = Annotated[
    str | None,
    typer.Option(
        "--channel-col",
        help="Column holding each row's channel (picks the slang tables).",
        show_default=False,
    ),
]
ChannelOpt = Annotated[
    str, typer.Option("--channel", help="Channel of every row when --channel-col is not given.")
]
LabelMapOpt = Annotated[
    str | None,
    typer.Option(
        "--label-map",
        help="Relabel before use, e.g. 'QUE=query,REQ=query,*=comment' ('*' = every other value).",
        show_default=False,
    ),
]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start from an untrained model (its prior alone).")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder of the shipped data sets used for the default warm start (default ../shared/data).",
        show_default=False,
    ),
]

#: Files at least this long show a progress bar (on stderr, so ``--json`` output stays clean).
PROGRESS_MIN_ROWS = 2_000


class ModelInputError(ValueError):
    """Input that the model commands cannot use; the message is the one line the user sees."""


def _fail(command: str, message: str, code: int = 2) -> typer.Exit:
    print(f"pulse {command}: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _check_model(name: str) -> str:
    key = name.strip().lower()
    if key not in TEXT_MODELS:
        raise ModelInputError(f"unknown model {name!r}; expected one of {', '.join(TEXT_MODELS)}")
    return key


def read_table(path: Path, columns: list[str]) -> pl.DataFrame:
    """Read a CSV as text columns and check that ``columns`` exist.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "in.csv"
    >>> _ = p.write_text("text,label\\nhello,comment\\n")
    >>> read_table(p, ["text", "lbl"])
    Traceback (most recent call last):
    ...
    stream.cli.models.ModelInputError: column 'lbl' is not in ... (columns: text, label)
    """
    if not path.is_file():
        raise ModelInputError(f"cannot read {path}: no such file")
    try:
        frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelInputError(f"cannot read {path} as CSV: {first}") from None
    for col in columns:
        if col not in frame.columns:
            raise ModelInputError(f"column {col!r} is not in {path} (columns: {', '.join(frame.columns)})")
    return frame


def parse_label_map(spec: str | None) -> Callable[[str], str] | None:
    """Parse ``FROM=TO,...`` (``*=TO`` for every other value) into a relabelling function.

    >>> f = parse_label_map("QUE=query, REQ=query, *=comment")
    >>> f("QUE"), f("EXP")
    ('query', 'comment')
    >>> parse_label_map("oops")
    Traceback (most recent call last):
    ...
    stream.cli.models.ModelInputError: --label-map: 'oops' is not FROM=TO
    """
    if not spec:
        return None
    table: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ModelInputError(f"--label-map: {part.strip()!r} is not FROM=TO")
        src, dst = (s.strip() for s in part.split("=", 1))
        table[src] = dst
    default = table.pop("*", None)

    def relabel(value: str) -> str:
        if value in table:
            return table[value]
        return default if default is not None else value

    return relabel


def labelled_rows(
    frame: pl.DataFrame,
    text_col: str,
    label_col: str,
    channel_col: str | None,
    channel: str,
    accepted: tuple[str, ...],
    relabel: Callable[[str], str] | None = None,
) -> tuple[list[tuple[dict[str, Any], str]], dict[str, int]]:
    """``(x, label)`` pairs from a frame, and the count of skipped rows per reason."""
    rows: list[tuple[dict[str, Any], str]] = []
    skipped: dict[str, int] = {}
    texts = frame[text_col].to_list()
    labels = frame[label_col].to_list()
    channels = frame[channel_col].to_list() if channel_col else [channel] * len(texts)
    for text, label, ch in zip(texts, labels, channels, strict=True):
        if label is None or not str(label).strip():
            skipped["missing label"] = skipped.get("missing label", 0) + 1
            continue
        value = str(label).strip()
        if relabel is not None:
            value = relabel(value)
        if value not in accepted:
            value = value.lower()
        if value not in accepted:
            reason = f"unknown label {value!r}"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        rows.append(({"text": text or "", "channel": (ch or channel)}, value))
    return rows, skipped


def _time_key(value: str | None) -> tuple[int, float, str]:
    """Sort key of a timestamp cell: parsed times first (in time order), then unparseable ones as text."""
    if value is None:
        return (2, 0.0, "")
    text = str(value).strip()
    for parse in (
        lambda v: parse_ts(v),
        lambda v: datetime.strptime(v, "%Y-%m-%d %H:%M:%S %z"),
    ):
        try:
            return (0, parse(text).timestamp(), "")
        except (SchemaError, ValueError):
            continue
    return (1, 0.0, text)


def _sort_by_time(frame: pl.DataFrame, time_col: str) -> pl.DataFrame:
    """Rows in event-time order (stable for ties)."""
    keys = [_time_key(v) for v in frame[time_col].to_list()]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return frame[order]


def _settings(config: Path | None, redis_url: str | None, prefix: str | None) -> Settings:
    try:
        return Settings.load(
            {"redis_url": redis_url, "prefix": prefix}, config_path=config if config is not None else True
        )
    except SettingsError as exc:
        raise ModelInputError(str(exc)) from None


def _client(settings: Settings) -> Any:
    try:
        return connect(ensure_redis_url(settings.redis_url, Path(settings.data_dir)))
    except RedisUnavailable as exc:
        raise ModelInputError(str(exc)) from None


def _current_model(
    name: str, settings: Settings, client: Any, fresh: bool, data_dir: Path | None
) -> tuple[Any, str]:
    """The model to start from and where it came from (for the report)."""
    if fresh:
        return registry.new_model(name), "fresh (untrained)"
    model = registry.load(client, settings.prefix, name) if client is not None else None
    if model is not None:
        version = client.hget(registry.model_key(settings.prefix, name), "version")
        version = version.decode() if isinstance(version, bytes) else version
        return model, f"checkpoint v{version}"
    cache = Path(settings.data_dir) / "models"
    return registry.load_default(name, data_dir=data_dir, cache_dir=cache), "default (warm-started)"


def _progress(total: int, label: str, quiet: bool) -> tuple[Progress | None, Callable[[], None] | None]:
    if quiet or total < PROGRESS_MIN_ROWS or not err.is_terminal:
        return None, None
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )
    task = progress.add_task(label, total=total)
    progress.start()

    def step() -> None:
        progress.advance(task)

    return progress, step


def _tracked(rows: list[Any], label: str) -> Iterator[Any]:
    progress, step = _progress(len(rows), label, False)
    try:
        for row in rows:
            yield row
            if step is not None:
                step()
    finally:
        if progress is not None:
            progress.stop()


def _skipped_note(command: str, skipped: dict[str, int]) -> None:
    if skipped:
        total = sum(skipped.values())
        worst = ", ".join(
            f"{reason}: {n}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1])[:3]
        )
        print(f"pulse {command}: skipped {total} row(s) ({worst})", file=sys.stderr)


def feedback(
    mention_id: Annotated[str, typer.Argument(help="Id of the mention the label is for (e.g. twitter:1234).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Which model the label corrects: intent, sentiment or department.")],
    label: Annotated[str, typer.Option("--label", "-l", help="The right answer, e.g. query, negative, sales.")],
    author: Annotated[str, typer.Option("--author", help="Who gives the label (agent or analyst id).")] = "",
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Send a label to the running flow (pulse run / pulse demo): the models learn from it.

    Labels the flow cannot use (unknown mention id, model or class) land in the dead-letter stream.
    """
    from connectors.redis_streams import FMT_FIELD, PAYLOAD_FIELD
    from stream.schema import Feedback

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    _, client = redis_for(settings)
    body = orjson.dumps(Feedback(mention_id=mention_id, model=model, label=label, author=author).to_dict())
    entry = client.xadd(Keys(settings.prefix).feedback, {PAYLOAD_FIELD: body, FMT_FIELD: "jsonl"})
    entry_id = entry.decode() if isinstance(entry, bytes) else entry
    err.print(f"feedback queued as {Keys(settings.prefix).feedback} {entry_id}")


def register(app: typer.Typer) -> None:
    """Add ``classify``, ``train``, ``evaluate`` and ``feedback`` to the ``pulse`` app."""
    app.command()(feedback)

    @app.command("classify")
    def classify(
        path: Annotated[Path, typer.Argument(help="CSV file of mentions.", show_default=False)],
        model: ModelOpt,
        text_col: TextColOpt,
        output: Annotated[
            Path, typer.Option("--output", "-o", help="CSV to write: the input columns plus 'prediction'.")
        ],
        channel_col: ChannelColOpt = None,
        channel: ChannelOpt = "twitter",
        fresh: FreshOpt = False,
        redis_url: RedisUrlOpt = None,
        prefix: PrefixOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Predict with the current model (no learning): one output row per input row."""
        try:
            name = _check_model(model)
            frame = read_table(path, [text_col] + ([channel_col] if channel_col else []))
            settings = _settings(config, redis_url, prefix)
            client = None if fresh else _client(settings)
            clf, source = _current_model(name, settings, client, fresh, data_dir)
        except ModelInputError as exc:
            raise _fail("classify", str(exc)) from None
        texts = frame[text_col].to_list()
        channels = frame[channel_col].to_list() if channel_col else [channel] * len(texts)
        predictions = [
            clf.predict_one({"text": t or "", "channel": c or channel})
            for t, c in _tracked(list(zip(texts, channels, strict=True)), f"classify ({name})")
        ]
        out = frame.with_columns(pl.Series("prediction", predictions, dtype=pl.String))
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            out.write_csv(output)
        except OSError as exc:
            raise _fail("classify", f"cannot write {output}: {exc.strerror or exc}") from None
        counts = out["prediction"].value_counts(sort=True).rows()
        summary = ", ".join(f"{label} {n}" for label, n in counts)
        print(
            f"pulse classify: {len(predictions)} rows -> {output} with {name} model ({source}): {summary}",
            file=sys.stderr,
        )

    @app.command("train")
    def train(
        model: ModelOpt,
        input: Annotated[Path, typer.Option("--input", "-i", help="Labelled CSV file.")],
        text_col: TextColOpt,
        label_col: LabelColOpt,
        channel_col: ChannelColOpt = None,
        channel: ChannelOpt = "twitter",
        label_map: LabelMapOpt = None,
        epochs: Annotated[
            int,
            typer.Option(
                "--epochs", help="Passes over the file (later passes shuffled, seeded).", min=1, max=20
            ),
        ] = 1,
        fresh: FreshOpt = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
        redis_url: RedisUrlOpt = None,
        prefix: PrefixOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Warm-start the current model on a labelled CSV and save it as a new checkpoint version."""
        try:
            name = _check_model(model)
            frame = read_table(input, [text_col, label_col] + ([channel_col] if channel_col else []))
            settings = _settings(config, redis_url, prefix)
            client = _client(settings)
            clf, source = _current_model(name, settings, client, fresh, data_dir)
            rows, skipped = labelled_rows(
                frame, text_col, label_col, channel_col, channel, clf.classes, parse_label_map(label_map)
            )
            if not rows:
                raise ModelInputError(
                    f"no usable rows in {input}: labels must be one of {', '.join(clf.classes)}"
                    + (f" ({', '.join(sorted(skipped))})" if skipped else "")
                )
        except ModelInputError as exc:
            raise _fail("train", str(exc)) from None
        _skipped_note("train", skipped)
        before = clf.n_learned
        scores = prequential_scores(clf, _tracked(rows, f"train ({name}) pass 1"))
        rng = random.Random(42)
        for epoch in range(2, epochs + 1):
            shuffled = list(rows)
            rng.shuffle(shuffled)
            for x, y in _tracked(shuffled, f"train ({name}) pass {epoch}"):
                clf.learn_one(x, y)
        metrics = {
            "train_rows": len(rows),
            "train_prequential_accuracy": scores["accuracy"],
            "train_prequential_macro_f1": scores["macro_f1"],
            "train_prequential_macro_recall": scores["macro_recall"],
        }
        version = registry.save(client, settings.prefix, name, clf, metrics)
        result = {
            "model": name,
            "started_from": source,
            "rows": len(rows),
            "skipped": sum(skipped.values()),
            "epochs": epochs,
            "learned": clf.n_learned - before,
            "n_learned": clf.n_learned,
            "version": version,
            "key": registry.model_key(settings.prefix, name),
            "prequential": {k: scores[k] for k in ("accuracy", "macro_recall", "macro_f1")},
        }
        if json_out:
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(
                f"pulse train: {name} learned {result['learned']} examples ({source} -> version {version} "
                f"at {result['key']}); prequential accuracy {scores['accuracy']:.3f}, macro F1 {scores['macro_f1']:.3f}",
                file=sys.stderr,
            )

    @app.command("evaluate")
    def evaluate(
        model: ModelOpt,
        input: Annotated[Path, typer.Option("--input", "-i", help="Labelled CSV file.")],
        text_col: TextColOpt,
        label_col: LabelColOpt,
        channel_col: ChannelColOpt = None,
        channel: ChannelOpt = "twitter",
        label_map: LabelMapOpt = None,
        time_col: Annotated[
            str | None,
            typer.Option(
                "--time-col",
                help="Split by time on this column (oldest rows train) instead of a seeded shuffle.",
                show_default=False,
            ),
        ] = None,
        test_size: Annotated[
            float, typer.Option("--test-size", help="Share of rows held out for testing.", min=0.05, max=0.95)
        ] = 0.2,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the random split.")] = 42,
        fresh: FreshOpt = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the scores as JSON on stdout.")] = False,
        redis_url: RedisUrlOpt = None,
        prefix: PrefixOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Score the current model on a labelled CSV: holdout (before/after training) and prequential."""
        try:
            name = _check_model(model)
            needed = (
                [text_col, label_col]
                + ([channel_col] if channel_col else [])
                + ([time_col] if time_col else [])
            )
            frame = read_table(input, needed)
            if time_col:
                frame = _sort_by_time(frame, time_col)
            settings = _settings(config, redis_url, prefix)
            client = None if fresh else _client(settings)
            clf, source = _current_model(name, settings, client, fresh, data_dir)
            rows, skipped = labelled_rows(
                frame, text_col, label_col, channel_col, channel, clf.classes, parse_label_map(label_map)
            )
            if len(rows) < 10:
                raise ModelInputError(
                    f"only {len(rows)} usable row(s) in {input}; need at least 10 with labels in {', '.join(clf.classes)}"
                )
        except ModelInputError as exc:
            raise _fail("evaluate", str(exc)) from None
        _skipped_note("evaluate", skipped)
        ordered = list(rows)
        if not time_col:
            random.Random(seed).shuffle(ordered)
        cut = max(1, min(len(ordered) - 1, round(len(ordered) * (1 - test_size))))
        train_rows, test_rows = ordered[:cut], ordered[cut:]
        holdout_model = copy.deepcopy(clf)
        before = holdout_scores(holdout_model, _tracked(test_rows, f"evaluate ({name}) holdout, before"))
        for x, y in _tracked(train_rows, f"evaluate ({name}) holdout, training"):
            holdout_model.learn_one(x, y)
        after = holdout_scores(holdout_model, _tracked(test_rows, f"evaluate ({name}) holdout, after"))
        majority = majority_scores([y for _, y in train_rows], [y for _, y in test_rows])
        preq = prequential_scores(copy.deepcopy(clf), _tracked(rows, f"evaluate ({name}) prequential"))
        split = f"time ({time_col})" if time_col else f"random (seed {seed})"
        result = {
            "model": name,
            "source": source,
            "input": str(input),
            "rows": len(rows),
            "skipped": sum(skipped.values()),
            "holdout": {
                "split": split,
                "train": len(train_rows),
                "test": len(test_rows),
                "before_training": before,
                "after_training": after,
                "majority_baseline": majority,
            },
            "prequential": preq,
        }
        if json_out:
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        print(f"{name} on {input} ({len(rows)} rows; model: {source}; split: {split})")
        for label, s in (
            ("holdout, before training", before),
            ("holdout, after training", after),
            ("holdout, majority baseline", majority),
            ("prequential (test-then-train)", preq),
        ):
            print(
                f"  {label:<30} accuracy {s['accuracy']:.3f}  macro recall {s['macro_recall']:.3f}  macro F1 {s['macro_f1']:.3f}"
            )
