"""The per-mention entry point of the flow: normalise once, then intent, sentiment and department.

:class:`MentionClassifier` holds the three text models, normalises a mention's text once and feeds the
same :class:`~models.text.NormalisedText` to all three (the tokenisation is the expensive part), and
routes feedback (``learn_one(model, x, label)``) to the right model, refusing unknown models and labels
with a :class:`ValueError` whose message is fit for a dead letter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from models._online import OnlineTextClassifier
from models.department import DepartmentClassifier
from models.intent import IntentClassifier
from models.sentiment import SentimentClassifier, sentiment_score
from models.text import NormalisedText, TextNormalizer, require_text

__all__ = ["TEXT_MODELS", "MentionClassifier"]

logger = logging.getLogger(__name__)

#: The models :class:`MentionClassifier` runs, by name (the names feedback and the registry use).
TEXT_MODELS = ("intent", "sentiment", "department")
_TYPES: dict[str, type[OnlineTextClassifier]] = {
    "intent": IntentClassifier,
    "sentiment": SentimentClassifier,
    "department": DepartmentClassifier,
}


class MentionClassifier:
    """Classify a mention with the three text models, sharing one normalisation pass.

    Parameters
    ----------
    intent, sentiment, department
        The models (``None``: an untrained one, which answers from its prior). The flow usually builds
        this with :meth:`default`, which warm-starts them from the shipped data.
    max_keywords
        How many keywords ``classify_one`` returns.

    Examples
    --------
    >>> clf = MentionClassifier()
    >>> out = clf.classify_one({"text": "@acme my parcel is LOST, can u help?? :(", "channel": "twitter"})
    >>> out["intent"], out["sentiment"], out["department"], out["keywords"]
    ('query', 'negative', 'service', ['parcel', 'lost', 'help'])
    >>> -1.0 <= out["sentiment_score"] < 0 and 0.5 < out["intent_proba"] <= 1.0
    True
    >>> clf.learn_one("department", {"text": "any discount on the premium plan"}, "sales")
    >>> clf.learn_one("mood", {"text": "hi"}, "happy")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'mood'; expected one of ['intent', 'sentiment', 'department']
    """

    def __init__(
        self,
        intent: IntentClassifier | None = None,
        sentiment: SentimentClassifier | None = None,
        department: DepartmentClassifier | None = None,
        max_keywords: int = 5,
    ) -> None:
        self.intent = intent if intent is not None else IntentClassifier()
        self.sentiment = sentiment if sentiment is not None else SentimentClassifier()
        self.department = department if department is not None else DepartmentClassifier()
        self.max_keywords = max_keywords

    @classmethod
    def default(
        cls, data_dir: Path | str | None = None, cache_dir: Path | str | None = None
    ) -> MentionClassifier:
        """The three default models, warm-started from the shipped data (cached under ``.pulse/models``)."""
        from models import registry

        return cls(
            intent=registry.load_default("intent", data_dir=data_dir, cache_dir=cache_dir),  # type: ignore[arg-type]
            sentiment=registry.load_default("sentiment", data_dir=data_dir, cache_dir=cache_dir),  # type: ignore[arg-type]
            department=registry.load_default("department", data_dir=data_dir, cache_dir=cache_dir),  # type: ignore[arg-type]
        )

    @property
    def models(self) -> dict[str, OnlineTextClassifier]:
        """The models by name."""
        return {"intent": self.intent, "sentiment": self.sentiment, "department": self.department}

    def model(self, name: str) -> OnlineTextClassifier:
        """One model by name, or :class:`ValueError` for an unknown name."""
        if name not in _TYPES:
            raise ValueError(f"unknown model {name!r}; expected one of {list(TEXT_MODELS)}")
        return getattr(self, name)

    def replace(self, name: str, model: OnlineTextClassifier) -> None:
        """Swap one model (after a registry load or rollback); the type must match the name."""
        expected = _TYPES.get(name)
        if expected is None:
            raise ValueError(f"unknown model {name!r}; expected one of {list(TEXT_MODELS)}")
        if not isinstance(model, expected):
            raise ValueError(f"model {name!r} must be a {expected.__name__}, got {type(model).__name__}")
        setattr(self, name, model)

    def labels(self, name: str) -> tuple[str, ...]:
        """The labels a model accepts as feedback."""
        return self.model(name).classes

    def _normalise(self, x: Any) -> dict[int, NormalisedText]:
        # One pass per distinct normaliser configuration: normally all three models share one.
        out: dict[int, NormalisedText] = {}
        by_config: dict[tuple[str | None, int, int], NormalisedText] = {}
        for m in (self.intent, self.sentiment, self.department):
            normalizer: TextNormalizer = m.text_normalizer
            key = normalizer.config
            norm = by_config.get(key)
            if norm is None:
                norm = by_config[key] = normalizer.normalise_one(x if isinstance(x, dict) else {})
            out[id(m)] = norm
        return out

    def classify_one(self, x: dict[str, Any]) -> dict[str, Any]:
        """Predict (no learning) for a mention dict ``{"text": ..., "channel": ...}``.

        Returns ``{"intent", "intent_proba" (P(query)), "sentiment", "sentiment_score" in [-1, 1],
        "department", "keywords"}``. Never raises: empty, odd or missing text gets the priors' answer.
        A mention with ``"from_brand": True`` (the brand's own account) is always a ``comment``.
        """
        norms = self._normalise(x)
        if isinstance(x, dict) and x.get("from_brand") is True:
            intent_p = {"query": 0.0, "comment": 1.0}  # the brand's own posts never wait for a reply
        else:
            intent_p = self.intent.predict_proba_normalised(norms[id(self.intent)])
        sent_norm = norms[id(self.sentiment)]
        sent_p = self.sentiment.predict_proba_normalised(sent_norm)
        dep_p = self.department.predict_proba_normalised(norms[id(self.department)])
        return {
            "intent": max(intent_p, key=intent_p.__getitem__),
            "intent_proba": round(intent_p.get("query", 0.0), 6),
            "sentiment": max(sent_p, key=sent_p.__getitem__),
            "sentiment_score": sentiment_score(sent_p),
            "department": max(dep_p, key=dep_p.__getitem__),
            "keywords": sent_norm.keywords[: self.max_keywords],
        }

    def learn_one(self, model: str, x: dict[str, Any], label: str) -> None:
        """Learn from feedback: ``model`` is one of :data:`TEXT_MODELS`, ``label`` one of its classes.

        Raises :class:`ValueError` (with a reason fit for a dead letter) for an unknown model, an unknown
        label or a mention whose text cannot be read; nothing is learned then.
        """
        target = self.model(model)
        checked = target.check_label(label)
        text = require_text(x)
        channel = x.get("channel")
        norm = target.text_normalizer.normalise(text, channel if isinstance(channel, str) else None)
        target.learn_normalised(norm, checked)
