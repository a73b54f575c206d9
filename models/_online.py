"""The machinery the text classifiers share: a transparent prior blended with online logistic models.

Each text classifier (intent, sentiment, department) is a River classifier over mention dicts. It owns a
prior (rules or a lexicon, usable before any learning) and one River ``LogisticRegression`` per class
(one-vs-rest; a single one for two classes) over the hashed words and named cues of the shared
:class:`~models.text.NormalisedText`. The prior's weight fades as labelled examples arrive:
``p = λ · prior + (1 - λ) · online`` with ``λ = prior_weight / (prior_weight + n_learned)``.
"""

from __future__ import annotations

import abc
import math
from typing import Any

from river import base, linear_model, optim

from models.text import MENTION_INPUT, NormalisedText, TextNormalizer, require_text

__all__ = ["OnlineTextClassifier"]

_DEFAULT_NORMALIZER = TextNormalizer()


def _p_true(model: linear_model.LogisticRegression, x: dict[Any, float]) -> float:
    """P(y = True) of a River logistic regression: ``predict_proba_one(x)[True]`` without the dict.

    The flow runs up to eight of these per mention, so the raw dot product is read directly.
    """
    z = model._raw_dot_one(x)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-min(z, 50.0)))
    e = math.exp(max(z, -50.0))
    return e / (1.0 + e)


class OnlineTextClassifier(base.Classifier, abc.ABC):
    """Base class: a prior blended with one-vs-rest online logistic regressions (not used directly)."""

    def __init__(
        self,
        normalizer: TextNormalizer | None = None,
        learning_rate: float = 0.05,
        l2: float = 0.0,
        prior_weight: float = 20.0,
        balance: float = 1.0,
    ) -> None:
        self.normalizer = normalizer
        self.learning_rate = learning_rate
        self.l2 = l2
        self.prior_weight = prior_weight
        self.balance = balance
        self._models: dict[str, linear_model.LogisticRegression] = {}
        self._counts: dict[str, int] = {}
        self._n = 0

    # -- what a subclass provides ---------------------------------------------------------------
    @property
    @abc.abstractmethod
    def classes(self) -> tuple[str, ...]:
        """The labels this model predicts and accepts."""

    @abc.abstractmethod
    def prior_proba(self, norm: NormalisedText) -> dict[str, float]:
        """The transparent prior: a distribution over :attr:`classes` from rules or a lexicon."""

    def extra_features(self, norm: NormalisedText) -> dict[str, float]:
        """Named cues this model adds to the shared word features (none by default)."""
        return {}

    # -- River protocol -------------------------------------------------------------------------
    def _more_tags(self) -> set[str]:
        return {MENTION_INPUT}

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def text_normalizer(self) -> TextNormalizer:
        """The normaliser this model reads text with (a stateless default when none was given)."""
        return self.normalizer if self.normalizer is not None else _DEFAULT_NORMALIZER

    @property
    def n_learned(self) -> int:
        """How many labelled examples the online part has learned from."""
        return self._n

    @property
    def class_counts(self) -> dict[str, int]:
        """Labelled examples learned per class."""
        return dict(self._counts)

    def check_label(self, y: Any) -> str:
        """``y`` as a label of this model, or :class:`ValueError` naming the labels it accepts."""
        if isinstance(y, str) and y in self.classes:
            return y
        raise ValueError(
            f"unknown class {y!r} for {type(self).__name__}; expected one of {list(self.classes)}"
        )

    def normalise_one(self, x: dict[str, Any]) -> NormalisedText:
        """Normalise a mention dict with this model's normaliser (never raises)."""
        return self.text_normalizer.normalise_one(x)

    def learn_one(self, x: dict[Any, Any], y: Any, w: float | None = None) -> None:
        """Learn from one labelled mention; an unknown label or unreadable text raises ``ValueError``.

        ``w`` is the example's weight as the caller balanced it (a warm start weighing data sets and
        classes); ``None`` weighs by this model's own running class counts (see ``balance``).
        """
        label = self.check_label(y)
        text = require_text(x)
        channel = x.get("channel")
        norm = self.text_normalizer.normalise(text, channel if isinstance(channel, str) else None)
        self.learn_normalised(norm, label, w)

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[Any, float]:
        """Class probabilities for a mention dict; pure, and never raises on bad input."""
        return self.predict_proba_normalised(self.normalise_one(x))

    def predict_one(self, x: dict[Any, Any], **kwargs: Any) -> Any:
        """The most probable class."""
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__)

    # -- shared-normalisation entry points (used by MentionClassifier) --------------------------
    def features(self, norm: NormalisedText) -> dict[Any, float]:
        """The online models' input: shared word features plus this model's named cues (a new dict)."""
        feats = dict(norm.features)
        for name, value in self.extra_features(norm).items():
            if value:
                feats[name] = value
        return feats

    def _new_model(self) -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression(
            optimizer=optim.AdaGrad(self.learning_rate), l2=self.l2, intercept_lr=self.learning_rate
        )

    def _online_classes(self) -> tuple[str, ...]:
        classes = self.classes
        return classes[:1] if len(classes) == 2 else classes

    def learn_normalised(self, norm: NormalisedText, label: str, w: float | None = None) -> None:
        """Learn from an already normalised mention and a label already checked by :meth:`check_label`."""
        classes = self.classes
        for c in self._online_classes():
            if c not in self._models:
                self._models[c] = self._new_model()
        self._counts[label] = self._counts.get(label, 0) + 1
        self._n += 1
        weight = 1.0
        if w is not None:
            weight = float(w) if w > 0 else 0.0
        elif self.balance:
            # Inverse class frequency (smoothed) to the power `balance`: 1 fully balanced, 0.5 milder.
            k = len(classes)
            weight = ((self._n + k) / (k * (self._counts[label] + 1))) ** self.balance
            weight = min(5.0, max(0.2, weight))
        x = self.features(norm)
        for c, model in self._models.items():
            model.learn_one(x, c == label, weight)

    def predict_proba_normalised(self, norm: NormalisedText) -> dict[str, float]:
        """Class probabilities for an already normalised mention (pure)."""
        if not self._n or not self._models:
            return self.prior_proba(norm)
        online = self._online_proba(self.features(norm))
        lam = self.prior_weight / (self.prior_weight + self._n) if self.prior_weight > 0 else 0.0
        if lam < 1e-3:  # the prior's share no longer shows in the output: skip computing it
            return online
        prior = self.prior_proba(norm)
        return {c: lam * prior.get(c, 0.0) + (1.0 - lam) * online.get(c, 0.0) for c in self.classes}

    def _online_proba(self, x: dict[Any, float]) -> dict[str, float]:
        classes = self.classes
        if len(classes) == 2:
            model = self._models.get(classes[0])
            p = _p_true(model, x) if model is not None else 0.5
            return {classes[0]: p, classes[1]: 1.0 - p}
        scores = {}
        for c in classes:
            model = self._models.get(c)
            scores[c] = _p_true(model, x) if model is not None else 0.0
        total = sum(scores.values())
        if total <= 0.0:
            return {c: 1.0 / len(classes) for c in classes}
        return {c: s / total for c, s in scores.items()}
