"""The model desk: what data scientists do to the text models from the dashboard or the command line.

Compare checkpoint versions (what each learned from and its prequential scores at the time), roll back to
a kept version (:func:`models.registry.rollback`), and label a sample of recent mentions the current
model is least sure about: labels go to the flow's feedback stream (``{prefix}feedback``, as
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
    "flatten_version",
    "label_classes",
    "low_confidence_sample",
    "model_versions",
    "rollback_model",
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


def _short(v: Any, limit: int = 200) -> str:
    text = orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_versions(client: redis.Redis, keys: Keys, name: str) -> dict[str, Any] | None:
    """The registry's view of a model (:func:`models.registry.info`): current version and every kept one."""
    return registry.info(client, keys.prefix, _check_model(name))


def rollback_model(client: redis.Redis, keys: Keys, name: str, version: int, user: str) -> int:
    """Make ``version`` of ``name`` current (as ``pulse models rollback`` does); returns it.

    Raises :class:`ModelDeskError` for a version the registry does not keep.
    """
    user = check_user(user)
    _check_model(name)
    before = (registry.info(client, keys.prefix, name) or {}).get("version")
    try:
        now = registry.rollback(client, keys.prefix, name, int(version))
    except LookupError as exc:
        record_action(client, keys, user, "model.rollback", name, {"from": before, "to": int(version)},
                      outcome=f"refused: {exc}")
        raise ModelDeskError(str(exc)) from None
    record_action(client, keys, user, "model.rollback", name, {"from": before, "to": now})
    return now


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
