"""River's estimator checks over every model class of the ``models`` package (as ``river/test_estimators.py``).

Every public class in any ``models.*`` module that subclasses :class:`river.base.Estimator` is found
automatically, built once per ``_unit_test_params()`` entry, and run through River's own checks
(``river.checks.common`` / ``river.checks.clf``): repr, clone, pickling, pure predictions, learning from
disappearing and emerging features, predictions before any learning, no aliasing of the input, bounded
memory. Add a model, and it is tested for free.

River feeds its checks with numeric datasets (Phishing, TrumpApproval, …); our inputs differ, so the stream
is chosen per model:

* a model may define ``_unit_test_dataset(self)`` returning ``(x, y)`` pairs (``y`` ``None`` for
  unsupervised models) — the most specific choice;
* models tagged :data:`models.text.MENTION_INPUT` get a seeded stream of mention dicts
  (``{"text", "channel", "lang", "author"}``) labelled with the model's ``classes``;
* anomaly detectors get a seeded hourly count series ``{"count", "ts"}`` with injected spikes (labelled);
* other classifiers get River's Phishing (and ImageSegments when multiclass), regressors and
  transformers TrumpApproval — the datasets River ships, which need no download.

River's own ROC AUC check needs scikit-learn, which the project does not install; an equivalent with
``river.metrics.ROCAUC`` runs instead. A model skips a check by listing its name in ``_unit_test_skips``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import pkgutil
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river import base, datasets
from river.checks import clf, common

import models
from models.text import MENTION_INPUT

_SCALE_SMALL = 200
_SCALE_LONG = 2000


def iter_model_classes() -> Iterator[type[base.Estimator]]:
    """Public, concrete River estimators defined anywhere in the ``models`` package."""
    seen: set[type] = set()
    for info in pkgutil.walk_packages(models.__path__, prefix="models."):
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if (
                obj in seen
                or name.startswith("_")
                or not obj.__module__.startswith("models.")
                or not issubclass(obj, base.Estimator)
                or inspect.isabstract(obj)
            ):
                continue
            seen.add(obj)
            yield obj


def iter_estimators() -> Iterator[base.Estimator]:
    for cls in sorted(iter_model_classes(), key=lambda c: (c.__module__, c.__name__)):
        for params in cls._unit_test_params():
            yield cls(**params)


# -- streams -------------------------------------------------------------------------------------------

_FILLER = (
    "the my your this that our their today again still just now really very so quite also then "
    "flight order parcel account app phone update store team staff price plan delivery service website "
    "week morning night weekend trip seat gate bag card payment login email message call chat"
).split()
_FLAVOUR = [
    "love it",
    "thanks a lot",
    "worst ever",
    "not happy",
    "so goood",
    "pls help",
    "thx",
    "smh",
    "lol",
    "r0xx0rs",
    "suxx0rs",
    "pwn3d",
    "can u",
    "how do i",
    "dm me",
    "any update?",
    "#fail",
    "#love",
    ":)",
    ":(",
    "😂",
    "😡",
    "👍",
    "@acme",
    "https://t.co/abc",
    "!!!",
    "???",
    "très bien",
    "非常好",
    "NOT good",
    "never again",
    "discount code?",
    "press statement",
    "giveaway",
    "refund",
    "",
]
_CHANNELS = ("twitter", "forum", "review", "email", "facebook", "blog")


def mention_stream(classes: tuple[Any, ...] | None, n: int, seed: int = 42) -> list[tuple[dict, Any]]:
    """Seeded mention dicts; each class has its own cue words so the labels are learnable."""
    rng = random.Random(seed)
    cues = {c: [f"cue{i}{j}" for j in range(6)] for i, c in enumerate(classes or ())}
    rows: list[tuple[dict, Any]] = []
    for i in range(n):
        y = classes[i % len(classes)] if classes else None
        words = rng.choices(_FILLER, k=rng.randint(0, 14))
        if y is not None:
            words += rng.choices(cues[y], k=2)
        words += rng.choices(_FLAVOUR, k=rng.randint(0, 3))
        rng.shuffle(words)
        text = " ".join(words)
        if i % 97 == 5:
            text = "loooong " * 1200  # about 10,000 characters
        x = {
            "text": text,
            "channel": rng.choice(_CHANNELS),
            "lang": rng.choice(["en", "fr", "zh"]),
            "author": f"user{rng.randint(0, 50)}",
        }
        rows.append((x, y))
    return rows


def count_stream(n: int, seed: int = 42) -> list[tuple[dict, bool]]:
    """Hourly mention counts with a daily cycle, slow growth and a few labelled spikes."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        ts = start + timedelta(hours=i)
        mean = (20 + 10 * math.sin(2 * math.pi * ts.hour / 24)) * (1 + i / 5000)
        count = sum(rng.random() < mean / 60 for _ in range(60))
        spike = i > 48 and rng.random() < 0.03
        if spike:
            count += 40 + rng.randint(0, 40)
        rows.append(({"count": count, "ts": ts.isoformat()}, spike))
    return rows


def datasets_for(model: base.Estimator, scale: int) -> list[list[tuple[Any, Any]]]:
    hook = getattr(model, "_unit_test_dataset", None)
    if callable(hook):
        rows = list(hook())
        if scale > _SCALE_SMALL:
            rows = list(itertools.islice(itertools.cycle(rows), max(len(rows), scale)))
        return [rows]
    if MENTION_INPUT in model._tags:
        classes = tuple(getattr(model, "classes", ())) if model._supervised else None
        return [mention_stream(classes, scale)]
    if isinstance(model, base.AnomalyDetector):
        return [count_stream(scale)]
    if isinstance(model, base.Classifier):
        out = [list(datasets.Phishing().take(scale))]
        if model._multiclass:
            out.append(list(datasets.ImageSegments().take(scale)))
        return out
    if isinstance(model, base.Regressor | base.Transformer | base.SupervisedTransformer):
        return [list(datasets.TrumpApproval().take(scale))]
    return []


# -- checks --------------------------------------------------------------------------------------------


def check_anomaly_ranking(model: base.AnomalyDetector, dataset: list[tuple[dict, bool]]) -> None:
    """Prequential ROC AUC >= 0.5 (River's ``check_roc_auc``, which needs scikit-learn).

    Each point is scored before it is learned; the AUC is computed exactly (Mann-Whitney).
    """
    pos, neg = [], []
    for x, y in dataset:
        (pos if y else neg).append(model.score_one(x))
        model.learn_one(x)
    if not pos or not neg:
        return
    neg.sort()
    wins = 0.0
    for s in pos:
        below = sum(1 for v in neg if v < s)
        ties = sum(1 for v in neg if v == s)
        wins += below + 0.5 * ties
    assert wins / (len(pos) * len(neg)) >= 0.5


def _general_checks(model: base.Estimator) -> list[Callable]:
    names = [
        "check_repr",
        "check_str",
        "check_tags",
        "check_clone_same_class",
        "check_clone_is_idempotent",
        "check_init_has_default_params_for_tests",
        "check_init_default_params_are_not_mutable",
        "check_doc",
        "check_clone_changes_memory_addresses",
        "check_mutate_can_be_idempotent",
        "check_pickling_supports_roundtrip",
        "check_repr_roundtrips_clone",
        "check_clone_with_new_params_applies",
        "check_get_params_matches_signature",
    ]
    if model._mutable_attributes:
        names.append("check_mutable_attributes_exist")
    return [getattr(common, n) for n in names if hasattr(common, n)]


def _dataset_checks(model: base.Estimator) -> list[Callable]:
    names = [
        "check_learn_one",
        "check_pickling",
        "check_shuffle_features_no_impact",
        "check_emerging_features",
        "check_disappearing_features",
        "check_radically_disappearing_features",
        "check_predict_one_pure",
        "check_predict_one_before_any_learn",
        "check_no_state_aliasing_with_input",
        "check_clone_is_independent",
    ]
    if isinstance(model, base.Transformer | base.SupervisedTransformer):
        names.append("check_transform_one")
    if hasattr(model, "debug_one"):
        names.append("check_debug_one")
    if model._is_stochastic:
        names.append("check_seeding_is_idempotent")
    out = [getattr(common, n) for n in names if hasattr(common, n)]
    if isinstance(model, base.Classifier) and not isinstance(model, base.MultiLabelClassifier):
        out += [clf.check_predict_proba_one, clf.check_classifier_tracks_seen_labels]
        if not model._multiclass:
            out.append(clf.check_predict_proba_one_binary)
    if isinstance(model, base.AnomalyDetector):
        out.append(check_anomaly_ranking)
    return out


def _cases() -> list[Any]:
    cases = []
    counter: dict[str, int] = {}
    for model in iter_estimators():
        name = type(model).__name__
        counter[name] = counter.get(name, 0) + 1
        tag = f"{name}{counter[name]}"
        skips = model._unit_test_skips()
        for check in _general_checks(model):
            if check.__name__ not in skips:
                cases.append(pytest.param(model, check, None, id=f"{tag}:{check.__name__}"))
        for check in _dataset_checks(model):
            if check.__name__ in skips:
                continue
            for i, data in enumerate(datasets_for(model, _SCALE_SMALL)):
                cases.append(pytest.param(model, check, data, id=f"{tag}:{check.__name__}:{i}"))
        if "check_bounded_memory_growth" not in skips:
            for i, data in enumerate(datasets_for(model, _SCALE_LONG)):
                cases.append(
                    pytest.param(model, common.check_bounded_memory_growth, data, id=f"{tag}:memory:{i}")
                )
    return cases


def test_models_are_discovered() -> None:
    names = {cls.__name__ for cls in iter_model_classes()}
    assert {"TextNormalizer", "IntentClassifier", "SentimentClassifier", "DepartmentClassifier"} <= names


@pytest.mark.parametrize("estimator, check, dataset", _cases())
def test_check_estimator(estimator: base.Estimator, check: Callable, dataset: list | None) -> None:
    model = estimator.clone()
    if dataset is None:
        check(model)
    else:
        check(model, dataset=dataset)
