"""The model desk: what data scientists do to the text models from the dashboard or the command line.

Versions and rollback are :mod:`stream.model_admin`'s (the same functions as ``pulse models list`` and
``pulse models rollback``); this module lays a version out for comparison (:func:`describe_version`: what it
learned from, its lineage and its prequential scores at the time) and labels a sample of recent mentions
the current model is least sure about: labels go to the flow's feedback stream (``{prefix}feedback``, as
``pulse feedback`` sends them), where the running flow learns from them and scores the prediction it made
(prequential). Every action is recorded in the audit trail with its user.

>>> flat = flatten_version({"version": 3, "n_learned": 12, "metrics": {"accuracy": 0.8, "confusion": {"a": {}}},
...                         "files": ["airline/Tweets.csv"]})
>>> flat["version"], flat["metrics.accuracy"], flat["files"]
(3, 0.8, 'airline/Tweets.csv')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis

from connectors.redis_streams import FMT_FIELD, PAYLOAD_FIELD
from models import registry
from models.classifiers import TEXT_MODELS
from stream.audit import check_user, record_action
from stream.keys import Keys
from stream.schema import Feedback

__all__ = [
    "FEEDBACK_MAXLEN",
    "ModelDeskError",
    "describe_version",
    "flatten_version",
    "label_classes",
    "low_confidence_sample",
    "send_labels",
]

log = logging.getLogger(__name__)

#: The feedback stream keeps about this many labels (the flow reads them as they come, in a consumer group).
FEEDBACK_MAXLEN = 100_000
#: At most this many labels are sent at once.
MAX_LABELS = 500


class ModelDeskError(ValueError):
    """An action that cannot be taken (unknown model, version or label); the message says which."""


def _check_model(name: str) -> str:
    if name not in TEXT_MODELS:
        raise ModelDeskError(f"unknown model {name!r}; expected one of {list(TEXT_MODELS)}")
    return name


def label_classes(name: str) -> tuple[str, ...]:
    """The labels a model accepts.

    >>> label_classes("sentiment")
    ('negative', 'neutral', 'positive')
    """
    classes: tuple[str, ...] = registry.new_model(_check_model(name)).classes
    return classes


def flatten_version(meta: dict[str, Any]) -> dict[str, Any]:
    """One version's metadata as flat ``name -> value`` pairs for a side-by-side table.

    Nested dicts become dotted names (one level: ``metrics.accuracy``); lists and deeper values become
    short text, so whatever provenance a version carries (files, rows, hashes, ...) is shown as is.
    """
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = v2 if isinstance(v2, (int, float, str, bool)) or v2 is None else _short(v2)
        elif isinstance(v, (list, tuple)):
            out[k] = ", ".join(str(x) for x in v) if all(isinstance(x, (str, int, float)) for x in v) else _short(v)
        else:
            out[k] = v
    return out


#: Prequential scores a version may record, in the order they are compared (``pulse train`` records the
#: ``train_prequential_*`` ones over its file; the flow the ones over the labels it learned from).
SCORES = ("n_labels", "accuracy", "macro_f1", "macro_recall", "rolling_accuracy", "rolling_macro_f1",
          "train_rows", "train_prequential_accuracy", "train_prequential_macro_f1", "train_prequential_macro_recall",
          "prediction_drift", "label_drift", "drifts_detected")


def describe_version(meta: dict[str, Any]) -> dict[str, Any]:
    """One kept version (an entry of :func:`stream.model_admin.model_versions`'s ``versions``) as readable
    ``field -> value`` pairs, in a fixed order so versions line up side by side: what it is, what it was
    trained on (files with rows and sha256, label map, where it started, its lineage), then its scores
    (``score: accuracy``, ...) and whatever else it recorded (dotted names).

    >>> d = describe_version({"version": 2, "current": True, "n_learned": 40, "metrics": {"accuracy": 0.8},
    ...     "provenance": {"command": "pulse train", "started_from": "v1", "label_map": "QUE=query,*=comment",
    ...                    "files": [{"name": "acts.csv", "rows_used": 40, "sha256": "ab" * 32}]}})
    >>> d["trained on"], d["label map"], d["score: accuracy"]
    ('acts.csv (40 rows, sha256 abababababab)', 'QUE=query,*=comment', 0.8)
    """
    from stream.model_admin import describe_files

    prov = dict(meta.get("provenance") or {})
    metrics = dict(meta.get("metrics") or {})
    drift = prov.pop("drift", None)
    lineage = prov.pop("trained_on", None) or []
    out: dict[str, Any] = {
        "version": meta.get("version"),
        "current": bool(meta.get("current")),
        "saved at": str(meta.get("saved_at") or "")[:19].replace("T", " "),
        "learned (examples)": meta.get("n_learned"),
        "made by": prov.pop("command", None) or prov.pop("source", None),
        "started from": prov.pop("started_from", None),
        "trained on": describe_files(prov.pop("files", None)) or None,
        "rows": prov.pop("rows", None),
        "label map": prov.pop("label_map", None) or None,
        "labels learned (flow)": prov.pop("labels", None),
        "lineage": describe_files(lineage) or None,
        "trained at": prov.pop("trained_at", None),
    }
    if isinstance(drift, dict):
        out["drift guard"] = ", ".join(f"{k} {v}" for k, v in drift.items() if v not in (None, False, 0)) or "quiet"
    for name in SCORES:
        if name in metrics:
            out[f"score: {name}"] = metrics.pop(name)
    for k, v in flatten_version({"score": {k: v for k, v in metrics.items()
                                           if not isinstance(v, dict)}}).items():
        out[k.replace("score.", "score: ")] = v
    for k, v in flatten_version(prov).items():
        out[f"provenance: {k}"] = v
    if meta.get("bytes") is not None:
        out["size (bytes)"] = meta["bytes"]
    return out


def _short(v: Any, limit: int = 200) -> str:
    text = orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def low_confidence_sample(client: redis.Redis, keys: Keys, name: str, model: Any, n: int = 20,
                          scan: int = 500) -> list[dict[str, Any]]:
    """The ``n`` recent customer mentions ``model`` is least sure about, least sure first.

    Reads the newest ``scan`` mentions the flow kept; rows carry ``id``, ``brand``, ``channel``,
    ``author``, ``text`` (as posted), ``flow`` (what the flow predicted then), ``predicted`` and
    ``confidence`` (the model's top probability now).
    """
    _check_model(name)
    rows = []
    latest: list[bytes] = client.zrevrange(keys.latest, 0, scan - 1)  # type: ignore[assignment]
    for raw in latest:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(d, dict) or d.get("from_brand") or not d.get("id") or not isinstance(d.get("text"), str):
            continue
        proba = model.predict_proba_one({"text": d["text"], "channel": d.get("channel")})
        if not proba:
            continue
        top = max(proba, key=proba.__getitem__)
        rows.append({"id": str(d["id"]), "brand": str(d.get("brand") or ""), "channel": str(d.get("channel") or ""),
                     "author": str(d.get("author") or ""), "text": d["text"], "flow": str(d.get(name) or ""),
                     "predicted": str(top), "confidence": round(float(proba[top]), 4)})
    rows.sort(key=lambda r: (r["confidence"], r["id"]))
    return rows[:n]


def send_labels(client: redis.Redis, keys: Keys, name: str, labels: Iterable[tuple[str, str]], user: str,
                classes: Sequence[str] | None = None) -> int:
    """Queue labels ``(mention id, label)`` for ``name`` on the flow's feedback stream; returns how many.

    Each label is checked first (model, class, mention id), so a bad one sends nothing.
    """
    user = check_user(user)
    _check_model(name)
    allowed = set(classes if classes is not None else label_classes(name))
    chosen = [(str(m).strip(), str(label).strip()) for m, label in labels if str(label).strip()]
    if not chosen:
        raise ModelDeskError("no labels chosen")
    if len(chosen) > MAX_LABELS:
        raise ModelDeskError(f"at most {MAX_LABELS} labels at once, got {len(chosen)}")
    for mention_id, label in chosen:
        if not mention_id:
            raise ModelDeskError("a label needs a mention id")
        if label not in allowed:
            raise ModelDeskError(f"{label!r} is not a {name} label; expected one of {sorted(allowed)}")
    pipe = client.pipeline(transaction=False)
    for mention_id, label in chosen:
        body = orjson.dumps(Feedback(mention_id=mention_id, model=name, label=label, author=user).to_dict())
        pipe.xadd(keys.feedback, {PAYLOAD_FIELD: body, FMT_FIELD: "jsonl"}, maxlen=FEEDBACK_MAXLEN, approximate=True)
    pipe.execute()
    counts: dict[str, int] = {}
    for _, label in chosen:
        counts[label] = counts.get(label, 0) + 1
    record_action(client, keys, user, "model.label", name, {"labels": len(chosen), "by_class": counts,
                                                           "mentions": [m for m, _ in chosen][:50]})
    return len(chosen)
