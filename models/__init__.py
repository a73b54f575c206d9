"""Online models of Social Pulse, following River's protocol (dict in; ``learn_one`` / ``predict_one`` /
``predict_proba_one`` / ``score_one``).

Text (one normalisation pass per mention, shared by the three classifiers):

- :class:`TextNormalizer` — tokens, negation scope, slang/leetspeak/abbreviations from per-channel TOML
  taxonomies (``models/taxonomies``), and a VADER-lexicon polarity prior;
- :class:`IntentClassifier` (query / comment), :class:`SentimentClassifier` (negative / neutral /
  positive, score in [-1, 1]), :class:`DepartmentClassifier` (service / sales / marketing / pr);
- :class:`MentionClassifier` — the flow's entry point: ``classify_one(x)`` and
  ``learn_one(model, x, label)``.

Sentiment's domain-general cues: :mod:`models.lexicons` (VADER, Pattern adjectives and the Emoji Sentiment
Ranking, read from the installed wheels) and :mod:`models.sentiment_features`; :mod:`models.corpora` reads
the labelled public sets the defaults are warm-started on.

Spikes: :class:`SpikeDetector` (counts per interval: seasonal expectation, surprise calibrated on the series'
own history, O(1) per record whatever the gap) and :class:`SpikeAlerter` (per-series detectors at 1, 5 or 60
minutes, one alert per incident).

Around the models: :mod:`models.registry` (defaults warm-started from the shipped data, Redis
checkpoints, rollback) and :mod:`models.prequential` (prequential metrics per model and channel).
"""

from __future__ import annotations

from models.churn import ChurnFeatures, ChurnModel
from models.classifiers import TEXT_MODELS, MentionClassifier
from models.department import DepartmentClassifier
from models.intent import IntentClassifier
from models.prequential import PrequentialMetrics
from models.sentiment import SentimentClassifier
from models.spike_alerter import SpikeAlerter
from models.spikes import SpikeDetector
from models.text import NormalisedText, TextNormalizer

__all__ = [
    "TEXT_MODELS",
    "ChurnFeatures",
    "ChurnModel",
    "DepartmentClassifier",
    "IntentClassifier",
    "MentionClassifier",
    "NormalisedText",
    "PrequentialMetrics",
    "SentimentClassifier",
    "SpikeAlerter",
    "SpikeDetector",
    "TextNormalizer",
]
