"""Domain-general sentiment cues of a normalised mention: lexicon scores with negation scope.

For each lexicon of :mod:`models.lexicons` (VADER, Pattern adjectives, Emoji Sentiment Ranking) the
mention's words are scored (a word inside a negation scope counts half, with its sign flipped, as
VADER's own ``N_SCALAR`` does roughly), and summarised as named features the online model weighs:

``_{l}_ps`` / ``_{l}_ns``: positive / negative mass, squashed to [0, 1) by ``s / (1 + s)``;
``_{l}_np`` / ``_{l}_nn``: how many positive / negative words (capped at 3, over 3);
``_{l}_mx`` / ``_{l}_mn``: the strongest positive / negative word; ``_{l}_last``: the last scored word
(tweets often end on their verdict). ``l`` is ``v``, ``p`` or ``e``. Zeros are left out.

These depend on the words alone, never on which brand or domain the text is about, which is what lets
a model trained on airline and gadget tweets carry over to tweets about anything else.

>>> from models.text import TextNormalizer
>>> feats = lexicon_features(TextNormalizer().normalise("not good at all, but the crew was lovely 😍"))
>>> feats["_v_ns"] > 0 and feats["_v_ps"] > 0 and feats["_e_ps"] > 0
True
>>> feats["_v_last"] > 0
True
>>> lexicon_features(TextNormalizer().normalise("gate 12 at 9am"))
{}
"""

from __future__ import annotations

from models.lexicons import shared_lexicons
from models.text import NormalisedText

__all__ = ["lexicon_features"]

_NAMES = ("v", "p", "e")
# Precomputed feature names per lexicon, to build the dict without string formatting per mention.
_KEYS = tuple(
    tuple(f"_{n}_{suffix}" for suffix in ("ps", "np", "mx", "ns", "nn", "mn", "last")) for n in _NAMES
)
_NEGATED = -0.5
_MEMO_KEY = "lexicon_features"


def lexicon_features(norm: NormalisedText) -> dict[str, float]:
    """The lexicon features of a normalised mention (memoised on it; treat the result as read-only)."""
    memo = norm.memo.get(_MEMO_KEY)
    if memo is not None:
        return memo
    scores = shared_lexicons().scores
    negated = set(norm.negated_at) if norm.negated_at else ()
    # Per lexicon: positive mass, count, max; negative mass, count, min; last score.
    acc = [[0.0, 0, 0.0, 0.0, 0, 0.0, 0.0] for _ in _NAMES]
    for i, word in enumerate(norm.words):
        triple = scores(word)
        if triple[0] == 0.0 and triple[1] == 0.0 and triple[2] == 0.0:
            continue
        flip = i in negated
        for a, value in zip(acc, triple, strict=True):
            if value == 0.0:
                continue
            if flip:
                value *= _NEGATED
            if value > 0:
                a[0] += value
                a[1] += 1
                if value > a[2]:
                    a[2] = value
            else:
                a[3] -= value
                a[4] += 1
                if value < a[5]:
                    a[5] = value
            a[6] = value
    out: dict[str, float] = {}
    for a, keys in zip(acc, _KEYS, strict=True):
        if a[1]:
            out[keys[0]] = a[0] / (1.0 + a[0])
            out[keys[1]] = min(a[1], 3) / 3.0
            out[keys[2]] = a[2]
        if a[4]:
            out[keys[3]] = a[3] / (1.0 + a[3])
            out[keys[4]] = min(a[4], 3) / 3.0
            out[keys[5]] = a[5]
        if a[6]:
            out[keys[6]] = a[6]
    norm.memo[_MEMO_KEY] = out
    return out
