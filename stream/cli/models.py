"""``pulse classify`` / ``train`` / ``evaluate`` / ``models``: the text models on a CSV file, and their versions.

The *current* model is the checkpoint in Redis (``{prefix}model:{name}``; the embedded server under
``.pulse/`` when ``REDIS_URL`` is unset), else the default warm-started from the shipped data; ``--fresh``
starts from an untrained model (its prior alone). ``classify`` only predicts; ``train`` learns and saves a
new checkpoint version recording what it was trained on (file, sha256, rows, label map, time);
``evaluate`` splits by time (the newest 20 % held out), says when the held-out rows were in the current
model's training data, and prints the majority class (and VADER for sentiment) beside the model;
``models list`` / ``models rollback`` show and switch versions. Checkpoints are signed with the model key
(``PULSE_MODEL_KEY`` or ``.pulse/model.key``); one that does not match is refused. ``stream/cli/__init__.py``
calls :func:`register`. ``pulse feedback`` sends one label to the running flow.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models import registry
from models.classifiers import TEXT_MODELS
from models.prequential import holdout_scores, majority_scores, prequential_scores, vader_scores
from stream.cli.common import ConfigOpt, PrefixOpt, RedisUrlOpt, VerboseOpt, load_settings, redis_for
from stream.keys import Keys
from stream.learning import model_signing_key
from stream.redisconn import RedisUnavailable, connect, ensure_redis_url
from stream.schema import SchemaError, parse_ts
from stream.settings import Settings, SettingsError

__all__ = ["ModelInputError", "Origin", "labelled_rows", "overlap_report", "parse_label_map", "read_table",
           "register"]

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
#: Columns taken as event times for the default time split, in this order.
_TIME_COLUMNS = ("tweet_created", "created_at", "timestamp", "ts", "time", "date", "TweetDate")
#: Cells shorter than this are not compared as texts (labels, ids, dates).
_MIN_TEXT_CHARS = 12
#: Files remembered per version as what its lineage was trained on.
_MAX_LINEAGE = 20


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


@dataclass
class Origin:
    """Where the model a command starts from came from, and what it was trained on (for overlap checks)."""

    label: str  # e.g. "checkpoint v3", "default (warm-started)", "fresh (untrained)"
    version: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    default_files: tuple[str, ...] = ()  # data files of the default warm start, when the lineage has one

    def trained_on(self) -> list[dict[str, Any]]:
        """Every file this model (and the versions it started from) was trained on, oldest first."""
        found = list(self.provenance.get("trained_on") or [])
        if self.default_files and not any(f.get("default") for f in found):
            found.insert(0, {"default": True, "files": list(self.default_files)})
        return found


def _signing_key(settings: Settings) -> bytes:
    try:
        return model_signing_key(settings)
    except (OSError, ValueError) as exc:
        raise ModelInputError(f"cannot read or create the model signing key: {exc}") from None


def _current_model(
    name: str, settings: Settings, client: Any, fresh: bool, data_dir: Path | None, command: str = "models"
) -> tuple[Any, Origin]:
    """The model to start from and where it came from (for the report and the overlap check)."""
    if fresh:
        return registry.new_model(name), Origin("fresh (untrained)")
    if client is not None:
        version = registry.current_version(client, settings.prefix, name)
        try:
            model = registry.load(client, settings.prefix, name, key=_signing_key(settings))
        except registry.CheckpointRefused as exc:
            print(f"pulse {command}: warning: {exc}; using the default model instead", file=sys.stderr)
            model = None
        if model is not None:
            meta = registry.info(client, settings.prefix, name) or {}
            return model, Origin(f"checkpoint v{version}", version, meta.get("provenance") or {})
    cache = Path(settings.data_dir) / "models"
    model = registry.load_default(name, data_dir=data_dir, cache_dir=cache)
    files = registry.default_data_files(name) if getattr(model, "n_learned", 0) else ()
    return model, Origin("default (warm-started)" if files else "default (prior only)", default_files=files)


def _file_facts(path: Path, rows: int) -> dict[str, Any]:
    """What a trained-on or evaluated file is: its name, sha256, size and rows."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "name": path.name, "sha256": digest.hexdigest(), "bytes": path.stat().st_size,
            "rows": rows}


def _data_dir(data_dir: Path | None) -> Path:
    return data_dir if data_dir is not None else registry.DEFAULT_DATA_DIR


def _default_file_fingerprints(files: tuple[str, ...], data_dir: Path | None) -> tuple[set[int], dict[str, str]]:
    """Fingerprints of every text cell of the default's training files, and each file's sha256."""
    texts: set[int] = set()
    hashes: dict[str, str] = {}
    for rel in files:
        path = _data_dir(data_dir) / rel
        if not path.is_file():
            continue
        hashes[rel] = _file_facts(path, 0)["sha256"]
        try:
            frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
            continue
        for col in frame.columns:
            for cell in frame[col].to_list():
                if isinstance(cell, str) and len(cell) >= _MIN_TEXT_CHARS:
                    texts.add(registry.text_fingerprint(cell))
    return texts, hashes


def overlap_report(
    origin: Origin, client: Any, settings: Settings, name: str, input_facts: dict[str, Any],
    test_texts: list[str], data_dir: Path | None,
) -> dict[str, Any]:
    """How much of the held-out data the current model was trained on: same file (sha256) and same texts."""
    sources: list[str] = []
    same_file: list[str] = []
    seen: set[int] = set()
    for entry in origin.trained_on():
        if entry.get("default"):
            files = tuple(entry.get("files") or ())
            fps, hashes = _default_file_fingerprints(files, data_dir)
            seen |= fps
            sources.append("default warm start on " + ", ".join(files))
            same_file += [rel for rel, h in hashes.items() if h == input_facts["sha256"]]
        else:
            sources.append(f"{entry.get('name', '?')} ({entry.get('rows', '?')} rows)")
            if entry.get("sha256") == input_facts["sha256"]:
                same_file.append(str(entry.get("name") or entry.get("path")))
    if origin.version is not None and client is not None:
        seen |= registry.trained_texts(client, settings.prefix, name, origin.version)
    test_fps = [registry.text_fingerprint(t) for t in test_texts]
    hits = sum(1 for f in test_fps if f in seen)
    return {
        "model_trained_on": sources,
        "same_file": same_file[:1],  # every entry has the input's sha256: one name says it
        "test_rows": len(test_fps),
        "test_rows_trained_on": hits,
        "share": round(hits / len(test_fps), 4) if test_fps else 0.0,
    }


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


def _lineage(origin: Origin, name: str) -> list[dict[str, Any]]:
    """What a new version trained from ``origin`` inherits as already trained on (bounded)."""
    return origin.trained_on()[-(_MAX_LINEAGE - 1):]


def _print_scores(rows: list[tuple[str, dict[str, Any] | None]]) -> None:
    for label, s in rows:
        if s is None:
            continue
        print(f"  {label:<52} accuracy {s['accuracy']:.3f}  macro recall {s['macro_recall']:.3f}  "
              f"macro F1 {s['macro_f1']:.3f}")


def _time_column(frame: pl.DataFrame, time_col: str | None) -> str | None:
    if time_col:
        return time_col
    return next((c for c in _TIME_COLUMNS if c in frame.columns), None)


def register(app: typer.Typer) -> None:
    """Add ``classify``, ``train``, ``evaluate``, ``feedback`` and the ``models`` group to the ``pulse`` app."""
    app.command()(feedback)
    app.add_typer(models_app, name="models")

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
            clf, origin = _current_model(name, settings, client, fresh, data_dir, "classify")
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
            f"pulse classify: {len(predictions)} rows -> {output} with {name} model ({origin.label}): {summary}",
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
        """Warm-start the current model on a labelled CSV and save it as a new checkpoint version.

        The version records what it was trained on (the file's name, sha256 and rows, the columns, label
        map and time, and what the model had been trained on before), shown by 'pulse models list' and
        used by 'pulse evaluate' to tell when its data overlaps.
        """
        try:
            name = _check_model(model)
            frame = read_table(input, [text_col, label_col] + ([channel_col] if channel_col else []))
            settings = _settings(config, redis_url, prefix)
            client = _client(settings)
            key = _signing_key(settings)
            clf, origin = _current_model(name, settings, client, fresh, data_dir, "train")
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
        facts = _file_facts(input, frame.height)
        facts["rows_used"] = len(rows)
        provenance = {
            "command": "pulse train",
            "files": [facts],
            "rows": len(rows),
            "skipped": sum(skipped.values()),
            "text_col": text_col,
            "label_col": label_col,
            "label_map": label_map or "",
            "channel": channel_col or channel,
            "epochs": epochs,
            "started_from": origin.label,
            "parent_version": origin.version,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "trained_on": [*_lineage(origin, name), facts],
        }
        texts = {registry.text_fingerprint(x["text"]) for x, _ in rows}
        if origin.version is not None:
            texts |= registry.trained_texts(client, settings.prefix, name, origin.version)
        version = registry.save(client, settings.prefix, name, clf, metrics, key=key, provenance=provenance,
                                texts=texts)
        result = {
            "model": name,
            "started_from": origin.label,
            "rows": len(rows),
            "skipped": sum(skipped.values()),
            "epochs": epochs,
            "learned": clf.n_learned - before,
            "n_learned": clf.n_learned,
            "version": version,
            "key": registry.model_key(settings.prefix, name),
            "provenance": provenance,
            "prequential": {k: scores[k] for k in ("accuracy", "macro_recall", "macro_f1")},
        }
        if json_out:
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(
                f"pulse train: {name} learned {result['learned']} examples ({origin.label} -> version {version} "
                f"at {result['key']}; {input.name} sha256 {facts['sha256'][:12]}); prequential accuracy "
                f"{scores['accuracy']:.3f}, macro F1 {scores['macro_f1']:.3f}",
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
        holdout: Annotated[
            float,
            typer.Option("--holdout", "--test-size", min=0.05, max=0.95,
                         help="Share of rows held out for testing: the newest ones (time split) or a random "
                              "share (--split random)."),
        ] = 0.2,
        split: Annotated[
            str,
            typer.Option("--split", help="'time': train on the older rows, test on the newer (by --time-col, "
                                         "else a column named like a timestamp, else file order); 'random': "
                                         "a seeded shuffle."),
        ] = "time",
        time_col: Annotated[
            str | None,
            typer.Option(
                "--time-col",
                help="Column of event times for the time split (default: tweet_created, created_at, timestamp, "
                     "ts, time or date when present, else file order).",
                show_default=False,
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the random split.")] = 42,
        fresh: FreshOpt = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the scores as JSON on stdout.")] = False,
        redis_url: RedisUrlOpt = None,
        prefix: PrefixOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Score the current model on a held-out part of a labelled CSV, beside baselines.

        Rows are split by time by default (the newest --holdout share is the test set). On the test set it
        reports: the current model as it is; the current model after learning the train split; a fresh
        (untrained) model after learning the train split; the majority class of the train split; and VADER
        (sentiment). It says how much of the test set the current model was already trained on (same file
        by sha256, same texts), in which case only the fresh model's score is a held-out score. Prequential
        (test-then-train) scores over the whole file come last.
        """
        try:
            name = _check_model(model)
            if split not in ("time", "random"):
                raise ModelInputError(f"--split must be 'time' or 'random', got {split!r}")
            if time_col and split == "random":
                raise ModelInputError("--time-col goes with --split time")
            needed = [text_col, label_col] + ([channel_col] if channel_col else []) + ([time_col] if time_col else [])
            frame = read_table(input, needed)
            order_col = _time_column(frame, time_col) if split == "time" else None
            if order_col:
                frame = _sort_by_time(frame, order_col)
            settings = _settings(config, redis_url, prefix)
            client = None if fresh else _client(settings)
            clf, origin = _current_model(name, settings, client, fresh, data_dir, "evaluate")
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
        if split == "random":
            random.Random(seed).shuffle(ordered)
        cut = max(1, min(len(ordered) - 1, round(len(ordered) * (1 - holdout))))
        train_rows, test_rows = ordered[:cut], ordered[cut:]
        facts = _file_facts(input, frame.height)
        overlap = overlap_report(origin, client, settings, name, facts, [x["text"] for x, _ in test_rows], data_dir)
        current = holdout_scores(copy.deepcopy(clf), _tracked(test_rows, f"evaluate ({name}) current model"))
        holdout_model = copy.deepcopy(clf)
        for x, y in _tracked(train_rows, f"evaluate ({name}) training the current model"):
            holdout_model.learn_one(x, y)
        after = holdout_scores(holdout_model, _tracked(test_rows, f"evaluate ({name}) after training"))
        fresh_model = registry.new_model(name)
        for x, y in _tracked(train_rows, f"evaluate ({name}) training a fresh model"):
            fresh_model.learn_one(x, y)
        fresh_after = holdout_scores(fresh_model, _tracked(test_rows, f"evaluate ({name}) fresh model"))
        majority = majority_scores([y for _, y in train_rows], [y for _, y in test_rows])
        vader = vader_scores([x["text"] for x, _ in test_rows], [y for _, y in test_rows]) \
            if name == "sentiment" else None
        preq = prequential_scores(copy.deepcopy(clf), _tracked(rows, f"evaluate ({name}) prequential"))
        if split == "random":
            split_label = f"random (seed {seed})"
        else:
            split_label = f"time ({order_col})" if order_col else "time (file order)"
        result = {
            "model": name,
            "source": origin.label,
            "input": str(input),
            "input_sha256": facts["sha256"],
            "rows": len(rows),
            "skipped": sum(skipped.values()),
            "overlap": overlap,
            "holdout": {
                "split": split_label,
                "train": len(train_rows),
                "test": len(test_rows),
                "before_training": current,
                "after_training": after,
                "fresh_after_training": fresh_after,
                "majority_baseline": majority,
                **({"vader_baseline": vader} if vader is not None else {}),
            },
            "prequential": preq,
        }
        warning = None
        if overlap["test_rows_trained_on"] or overlap["same_file"]:
            warning = (
                f"{overlap['test_rows_trained_on']} of {overlap['test_rows']} held-out rows "
                f"({overlap['share']:.0%}) are texts the current model ({origin.label}) was trained on"
                + (f"; the input is the very file it was trained on ({', '.join(overlap['same_file'])})"
                   if overlap["same_file"] else "")
                + ": its scores are not held-out scores (the fresh model's are)"
            )
            print(f"pulse evaluate: warning: {warning}", file=sys.stderr)
            result["warning"] = warning
        if json_out:
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        print(f"{name} on {input} ({len(rows)} rows; model: {origin.label}; split: {split_label}, "
              f"{len(train_rows)} train / {len(test_rows)} test)")
        if warning:
            print(f"  WARNING: {warning}")
        else:
            print(f"  overlap: none of the {overlap['test_rows']} held-out rows were in the current model's "
                  f"training data ({'; '.join(overlap['model_trained_on']) or 'untrained'})")
        _print_scores([
            ("holdout, current model" + (" (NOT held out)" if warning else ""), current),
            ("holdout, current model + train split" + (" (NOT held out)" if warning else ""), after),
            ("holdout, fresh model + train split", fresh_after),
            ("holdout, baseline: majority class", majority),
            ("holdout, baseline: VADER", vader),
            ("prequential (test-then-train, all rows)" + (" (NOT held out)" if warning else ""), preq),
        ])


models_app = typer.Typer(
    help="Model versions in the registry: what each was trained on, its scores, and rollback.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@models_app.command("list")
def models_list(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model.", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Every kept version of each model: which one is served, what it was trained on (files, rows, sha256,
    label map, time) and its scores."""
    from stream.model_admin import model_versions

    try:
        settings = _settings(config, redis_url, prefix)
        client = _client(settings)
        found = model_versions(client, settings.prefix, model)
    except ModelInputError as exc:
        raise _fail("models list", str(exc)) from None
    if json_out:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not found:
        print("no checkpointed models: the flow serves the defaults (warm-started from the shipped data)")
        return
    for meta in found:
        extra = ""
        if meta.get("rolled_back_from"):
            extra = f" (rolled back from v{meta['rolled_back_from']}: {meta.get('rolled_back_reason') or 'cli'})"
        print(f"{meta['name']}: serving v{meta['version']}{extra}")
        for v in meta["versions"]:
            prov = v.get("provenance") or {}
            files = ", ".join(f"{f.get('name')} ({f.get('rows_used', f.get('rows'))} rows, sha256 "
                              f"{str(f.get('sha256'))[:12]})" for f in prov.get("files") or [])
            what = files or prov.get("source") or "?"
            if prov.get("label_map"):
                what += f", labels {prov['label_map']}"
            scores = v.get("metrics") or {}
            acc = scores.get("train_prequential_accuracy", scores.get("accuracy"))
            score = f"; accuracy {acc:.3f}" if isinstance(acc, int | float) else ""
            mark = "*" if v.get("current") else " "
            print(f"  {mark} v{v['version']}  {str(v.get('saved_at'))[:19]}  {v.get('n_learned')} learned; "
                  f"from {prov.get('started_from', '?')}; trained on {what}{score}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model: sentiment, intent or department.", show_default=False)],
    version: Annotated[
        int | None,
        typer.Argument(help="Version to serve (default: the one before the current).", show_default=False),
    ] = None,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve an earlier kept version of a model; a running flow follows within seconds."""
    from stream.model_admin import rollback_model

    try:
        key = _check_model(name)
        settings = _settings(config, redis_url, prefix)
        client = _client(settings)
        done = rollback_model(client, settings.prefix, key, version, reason="cli")
    except (ModelInputError, LookupError) as exc:
        msg = exc.args[0] if isinstance(exc, LookupError) and exc.args else str(exc)
        raise _fail("models rollback", str(msg)) from None
    print(f"pulse models rollback: {done['model']} now serves version {done['version']} "
          f"(was {done['previous'] if done['previous'] is not None else 'none'})", file=sys.stderr)
