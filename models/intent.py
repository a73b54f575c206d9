"""Query vs comment: does a mention ask the brand for something (a reply, an action) or just say something?

Transparent cues (a question mark, a question word or auxiliary opening the text, request phrases such as
"how do I", "can you", "help", "DM me"; editable in ``models/taxonomies/intent.toml``) give a rule prior
that works before any learning, and also feed an online logistic model over the shared word features.
A second online logistic model also reads the text's character n-grams (spelling, punctuation, "pls",
"?!", "#gifhistory"); it learns from every example but is only asked when the first model is unsure
(``detail_band``; off by default, see benchmarks/RESULTS.md).
The default model is warm-started on ``tweet_acts_5000.csv`` (QUE + REQ = query, the rest = comment;
:func:`warm_start_intent`) and keeps learning from agents' corrections.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from river import linear_model

from models._online import OnlineTextClassifier, _p_true
from models.text import NormalisedText, TextNormalizer, on_reload, read_taxonomy_file

__all__ = ["INTENTS", "IntentClassifier", "intent_from_act", "warm_start_intent"]

#: Labels: ``query`` needs a reply or an action; ``comment`` does not.
INTENTS = ("query", "comment")
#: Speech acts of the tweet_acts data set that a service team treats as a query.
QUERY_ACTS = frozenset({"QUE", "REQ"})


def intent_from_act(act: str) -> str:
    """Map a tweet_acts speech act to an intent label.

    >>> intent_from_act("QUE"), intent_from_act("REQ"), intent_from_act("EXP")
    ('query', 'query', 'comment')
    """
    return "query" if act.strip().upper() in QUERY_ACTS else "comment"


class _Cues:
    """Intent cue tables of one taxonomy folder, compiled once."""

    def __init__(self, taxonomy_dir: str | None) -> None:
        cfg = read_taxonomy_file("intent.toml", taxonomy_dir)
        self.wh = frozenset(str(w).lower() for w in cfg.get("wh_words", []))
        self.openers = frozenset(str(w).lower() for w in cfg.get("question_openers", []))
        self.request_words = frozenset(str(w).lower() for w in cfg.get("request_words", []))
        phrases = sorted({str(p).lower().strip() for p in cfg.get("request_phrases", []) if str(p).strip()})
        self.imperatives = frozenset(str(w).lower() for w in cfg.get("imperative_openers", []))
        self.auxiliaries = frozenset(str(w).lower() for w in cfg.get("question_auxiliaries", []))
        self.phrases = re.compile(
            r"(?<= )(?:" + "|".join(re.escape(p) for p in phrases) + r")(?= )" if phrases else r"(?!x)x"
        )


_URL = re.compile(r"(?:https?://|www\.)\S+")
_LEAD = re.compile(r"^(?:RT\s+)?(?:[.]?@\w+[:,]?\s*)+")
_TRAIL = re.compile(r"(?:\s*(?:#\w+|@\w+|…|\.\.\.))+\s*$")
_SENTENCE = re.compile(r"[^.!?\n]*[.!?\n]+|[^.!?\n]+$")
_WORD = re.compile(r"[a-z']+")
_QUOTED_QUESTION = re.compile(r"\"[^\"]*\?[^\"]*\"|“[^”]*\?[^”]*”")
_SHARE_ASK = re.compile(r"\b(?:rt|retweet|share|sign) (?:if|this|and|to)\b")
_YOU = frozenset(("you", "your", "u", "ur", "ya"))
_HANDLE = re.compile(r"@\w+")
#: Character n-gram keys live above every hashed word (``< 2 ** n_bits``) and named cue.
_CHAR_OFFSET = 1 << 40
#: Only the text's first characters give n-grams (a long post costs no more than a tweet).
_CHAR_TEXT = 320


def char_ngrams(text: str, low: int, high: int, mask: int) -> dict[int, float]:
    """Hashed character n-grams (``low``..``high``) of the text, links dropped and @handles as ``@``.

    Each distinct n-gram weighs ``1 / sqrt(count of distinct n-grams)``, so a long text does not outweigh
    the word and cue features; keys are stable across processes (crc32), in ``2 ** n_bits`` buckets.

    >>> grams = char_ngrams("@acme Pls? https://t.co/x", 1, 2, (1 << 18) - 1)  # " @ pls? ": 6 chars, 7 pairs
    >>> len(grams), round(sum(v * v for v in grams.values()), 6)
    (13, 1.0)
    """
    t = " ".join(_URL.sub(" ", _HANDLE.sub("@", text[:_CHAR_TEXT].lower())).split())
    if not t:
        return {}
    t = f" {t} "
    keys = set()
    n = len(t)
    for size in range(low, high + 1):
        for i in range(n - size + 1):
            keys.add(_CHAR_OFFSET + (zlib.crc32(t[i : i + size].encode("utf-8", "surrogatepass")) & mask))
    if not keys:
        return {}
    value = 1.0 / len(keys) ** 0.5
    return dict.fromkeys(keys, value)


def _sentence_cues(text: str, cues: _Cues) -> dict[str, float]:
    """Cues that need the text's punctuation: which sentence asks, how it opens, what it opens with."""
    out: dict[str, float] = {}
    body = _LEAD.sub("", _URL.sub("", text).strip())
    if _TRAIL.sub("", body).strip().endswith(("?", "？")):
        out["_i_q_end"] = 1.0
    if "?" in body:
        for sentence in _SENTENCE.findall(body):
            sentence = sentence.strip()
            if not sentence.endswith("?"):
                continue
            words = _WORD.findall(sentence.lower())
            if not words:
                continue
            if words[0] in cues.wh:
                out["_i_q_wh"] = 1.0
            if words[0] in cues.auxiliaries:
                out["_i_q_aux"] = 1.0
            if not _YOU.isdisjoint(words):
                out["_i_q_you"] = 1.0
            if len(words) <= 3:
                out["_i_q_short"] = 1.0
        if _QUOTED_QUESTION.search(text):
            out["_i_q_quoted"] = 1.0
    first = _WORD.match(body.lower())
    if first is not None and first.group() in cues.imperatives:
        out["_i_imperative"] = 1.0
    if _SHARE_ASK.search(text.lower()):
        out["_i_share_ask"] = 1.0
    return out


@lru_cache(maxsize=16)
def _cues(taxonomy_dir: str | None) -> _Cues:
    return _Cues(taxonomy_dir)


on_reload(_cues.cache_clear)


class IntentClassifier(OnlineTextClassifier):
    """Classify a mention as ``query`` or ``comment``: rule cues as a prior, an online model on top.

    Parameters
    ----------
    normalizer
        The shared :class:`~models.text.TextNormalizer` (``None``: the default tables).
    learning_rate
        AdaGrad step of the online logistic model.
    l2
        L2 penalty of the online model.
    prior_weight
        How many labelled examples the rule prior is worth; its weight fades as the model learns.
    balance
        Weight examples by inverse class frequency to this power (0: no weighting, 1: fully balanced,
        which favours macro-averaged recall).
    char_range
        Character n-gram sizes ``(low, high)`` the second-stage model reads.
    detail_band
        When the first model's P(query) falls in ``[low, high]`` the second-stage model (cues, words and
        character n-grams) answers instead; ``None`` (the default) turns the second stage off. ``(0.2, 0.8)``
        gains ~0.007 macro F1 in stratified CV on tweet_acts but nothing once retweets are kept in one
        fold, and halves intent's speed on airline tweets (benchmarks/RESULTS.md): opt in only.

    Examples
    --------
    >>> model = IntentClassifier()
    >>> model.predict_one({"text": "How do I reset my password?", "channel": "twitter"})
    'query'
    >>> model.predict_one({"text": "Lovely weather at the airport today", "channel": "twitter"})
    'comment'
    >>> stream = [("my parcel never came, sort it out", "query"), ("great job team", "comment")] * 20
    >>> for text, label in stream:
    ...     model.learn_one({"text": text, "channel": "twitter"}, label)
    >>> model.predict_one({"text": "my parcel never came", "channel": "twitter"})
    'query'
    >>> model.n_learned
    40
    """

    def __init__(
        self,
        normalizer: TextNormalizer | None = None,
        learning_rate: float = 0.1,
        l2: float = 0.0,
        prior_weight: float = 20.0,
        balance: float = 0.5,
        char_range: tuple[int, int] = (1, 4),
        detail_band: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(
            normalizer=normalizer,
            learning_rate=learning_rate,
            l2=l2,
            prior_weight=prior_weight,
            balance=balance,
        )
        if not 1 <= char_range[0] <= char_range[1]:
            raise ValueError(f"char_range must be (low, high) with 1 <= low <= high, got {char_range!r}")
        if detail_band is not None and not 0.0 <= detail_band[0] <= detail_band[1] <= 1.0:
            raise ValueError(
                f"detail_band must be (low, high) with 0 <= low <= high <= 1, got {detail_band!r}"
            )
        self.char_range = char_range
        self.detail_band = detail_band
        self._detail: linear_model.LogisticRegression | None = None

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"prior_weight": 0.0, "balance": 0.0, "detail_band": (0.2, 0.8)}
        yield {"char_range": (2, 3), "detail_band": (0.0, 1.0)}

    @property
    def classes(self) -> tuple[str, ...]:
        return INTENTS

    def cues(self, norm: NormalisedText) -> dict[str, float]:
        """The transparent cues of a normalised mention (also the online model's named features).

        >>> model = IntentClassifier()
        >>> cues = model.cues(model.normalise_one({"text": "@acme can u help me pls?"}))
        >>> cues["_i_request"], cues["_i_question"], cues["_i_opener"]
        (1.0, 1.0, 1.0)
        """
        cues = _cues(self.text_normalizer.taxonomy_dir)
        key = ("intent", id(cues))
        memo = norm.memo.get(key)
        if memo is not None:
            return memo
        words = norm.words
        first = ""
        for w in words:
            if not w.startswith("<"):
                first = w
                break
        n_phrases = len(cues.phrases.findall(norm.joined)) if len(words) < 400 else 0
        head = words[:40]
        wh_any = not cues.wh.isdisjoint(head)
        req_word = not cues.request_words.isdisjoint(head)
        result = norm.memo[key] = {
            "_i_question": 1.0 if norm.n_questions else 0.0,
            "_i_wh_first": 1.0 if first in cues.wh else 0.0,
            "_i_opener": 1.0 if first in cues.openers or first in cues.wh else 0.0,
            "_i_wh_any": 1.0 if wh_any else 0.0,
            "_i_request": 1.0 if n_phrases else 0.0,
            "_i_requests": 1.0 if n_phrases > 1 else 0.0,
            "_i_request_word": 1.0 if req_word else 0.0,
        }
        if norm.text:
            result.update(_sentence_cues(norm.text[:1000], cues))
        return result

    def extra_features(self, norm: NormalisedText) -> dict[str, float]:
        return self.cues(norm)

    def detail_features(self, norm: NormalisedText) -> dict[Any, float]:
        """The second-stage model's input: the first model's features plus hashed character n-grams."""
        feats = self.features(norm)
        mask = (1 << self.text_normalizer.n_bits) - 1
        feats.update(char_ngrams(norm.text, self.char_range[0], self.char_range[1], mask))
        return feats

    def _example_weight(self, label: str, w: float | None) -> float:
        # The weight the base class gives this example (its counts as they will be once it is counted).
        if w is not None:
            return float(w) if w > 0 else 0.0
        if not self.balance:
            return 1.0
        k = len(self.classes)
        weight = ((self._n + 1 + k) / (k * (self._counts.get(label, 0) + 2))) ** self.balance
        return min(5.0, max(0.2, weight))

    def learn_normalised(self, norm: NormalisedText, label: str, w: float | None = None) -> None:
        """Learn both stages from an already normalised mention and a checked label."""
        weight = self._example_weight(label, w)
        super().learn_normalised(norm, label, weight)
        if self.detail_band is None or not weight:
            return
        if self._detail is None:
            self._detail = self._new_model()
        self._detail.learn_one(self.detail_features(norm), label == "query", weight)

    def _unsure(self, proba: dict[str, float]) -> bool:
        band = self.detail_band
        return band is not None and self._detail is not None and band[0] <= proba["query"] <= band[1]

    def second_stage_answers(self, norm: NormalisedText) -> bool:
        """Whether the second stage answers for this mention (the first model is unsure of it)."""
        return self._unsure(super().predict_proba_normalised(norm))

    def predict_proba_normalised(self, norm: NormalisedText) -> dict[str, float]:
        """P(query) of the first model, or of the second stage when the first is unsure (pure)."""
        proba = super().predict_proba_normalised(norm)
        if not self._unsure(proba):
            return proba
        assert self._detail is not None
        p = _p_true(self._detail, self.detail_features(norm))
        lam = self.prior_weight / (self.prior_weight + self._n) if self.prior_weight > 0 else 0.0
        if lam >= 1e-3:
            p = lam * self.prior_proba(norm)["query"] + (1.0 - lam) * p
        return {"query": p, "comment": 1.0 - p}

    def rule_says_query(self, norm: NormalisedText) -> bool:
        """The rule-only decision (the baseline the benchmark compares against)."""
        c = self.cues(norm)
        return bool(c["_i_question"] or c["_i_request"] or (c["_i_wh_first"] and len(norm.words) > 2))

    def prior_proba(self, norm: NormalisedText) -> dict[str, float]:
        c = self.cues(norm)
        score = -2.0
        score += (
            2.2 * c["_i_question"] + 2.4 * c["_i_request"] + 0.5 * c["_i_requests"] + 1.2 * c["_i_wh_first"]
        )
        score += 0.4 * c["_i_opener"] + 0.3 * c["_i_request_word"]
        p = 1.0 / (1.0 + pow(2.718281828459045, -score))
        return {"query": p, "comment": 1.0 - p}


def warm_start_intent(model: IntentClassifier, path: Path, epochs: int = 2) -> int:
    """Learn from the tweet_acts CSV (``text``, ``act``) in a seeded order; returns examples learned."""
    import random

    import polars as pl

    frame = pl.read_csv(path, columns=["text", "act"]).drop_nulls()
    normalizer = model.text_normalizer
    # Each text is normalised once (its cues memoised on it) and learned from every epoch.
    rows = [
        (normalizer.normalise(text, "twitter"), intent_from_act(act))
        for text, act in zip(frame["text"].to_list(), frame["act"].to_list(), strict=True)
    ]
    rng = random.Random(42)
    n = 0
    for _ in range(epochs):
        rng.shuffle(rows)
        for norm, label in rows:
            model.learn_normalised(norm, label)
            n += 1
    return n
