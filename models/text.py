"""Text normalisation shared by every text model: tokens, negation scope, slang and a fast lexicon prior.

One pass over a mention's text yields a :class:`NormalisedText`: the normalised words (URLs, @handles,
#hashtags, emoji and emoticons turned into tokens; elongations collapsed; abbreviations expanded;
leetspeak and gamer slang mapped to plain words), hashed sparse features for the online models, a
VADER-style polarity computed with the VADER lexicon (from the ``vaderSentiment`` package), and the
keywords. The tables live in TOML files under ``models/taxonomies/`` (one per channel kind, over a
shared ``base.toml``), so a forum's gamer slang and a review site's vocabulary are edited without code.

>>> norm = TextNormalizer().normalise("sooo h4ppy!! thx @acme :) https://t.co/x", channel="twitter")
>>> norm.words
['so', 'happy', 'thanks', '<user>', '<smile>', '<url>']
>>> round(norm.compound, 2) > 0.5
True
>>> TextNormalizer().normalise("this game suxx0rs, totally pwn3d by hax0rs", channel="forum").words
['this', 'game', 'sucks', 'totally', 'owned', 'by', 'hacker']
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from river import base

__all__ = [
    "MENTION_INPUT",
    "TAXONOMY_DIR",
    "NormalisedText",
    "Taxonomy",
    "TextNormalizer",
    "load_taxonomy",
    "kind_for_channel",
    "mention_text",
    "on_reload",
    "read_taxonomy_file",
    "reload_taxonomies",
    "require_text",
]

logger = logging.getLogger(__name__)

#: Where the shipped taxonomies live; a ``taxonomy_dir`` given to a model overrides files by name.
TAXONOMY_DIR = Path(__file__).resolve().parent / "taxonomies"
#: Estimator tag: the model reads mention dicts ``{"text": ..., "channel": ...}`` (the generic
#: estimator test feeds such models a text stream instead of River's numeric datasets).
MENTION_INPUT = "mention input"

# VADER's constants (Hutto & Gilbert 2014), so our prior scores on the same scale as VADER.
_B_INCR = 0.293
_C_INCR = 0.733
_N_SCALAR = -0.74
_ALPHA = 15.0
# Memo sizes (entries per channel kind): a chunk entry takes about 1 KB, so at most ~50 MB per kind.
_TOKEN_CACHE_LIMIT = 100_000
_CHUNK_CACHE_LIMIT = 50_000

_ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can cannot could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself let
    me more most my myself no nor not of off on once only or other ought our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they this
    those through to too under until up very was we were what when where which while who whom why with
    would you your yours yourself yourselves will just also im i'm it's don't can't won't via get got""".split()
)

_EMOJI_CLASS = "[\U0001f000-\U0001faff\u2600-\u27bf\u2300-\u23ff\u2b00-\u2bff\u3030\u303d]"
# Skin tones, zero-width joiner and variation selectors carry no meaning of their own.
_EMOJI_SKIP = frozenset(["\u200d", "\ufe0f", "\ufe0e"] + [chr(c) for c in range(0x1F3FB, 0x1F400)])
_ELONGATION = re.compile(r"(\w)\1{2,}")
_DOUBLE = re.compile(r"(\w)\1+")
_GAMER_SUFFIX = re.compile(r"(?:zor|zorz|zors|ors|orz|or|z)$")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^\W\d_]+")


def _h(word: str) -> int:
    """A stable 32-bit hash (Python's own ``hash`` is salted per process, which would break pickles)."""
    return zlib.crc32(word.encode("utf-8", "surrogatepass"))


# A piece is one normalised word: (word, valence, booster, is_negator, hash, negated hash, is_content).
_Piece = tuple[str, float, float, bool, int, int, bool]
# An item is a piece in context: the piece, then (written in CAPS, elongated, from a hashtag).
_Item = tuple[str, float, float, bool, int, int, bool, bool, bool, bool]
_Fast = tuple[
    tuple[str, ...],
    dict[int, float],
    tuple[float, ...],
    tuple[tuple[float, bool, int], ...],
    tuple[str, ...],
    tuple[str, ...],
]
_Chunk = tuple[tuple["_Item", ...], "tuple[int, ...] | None", "_Fast | None"]
#: Punctuation inside a chunk: ends a negation scope.
_RESET: _Item = ("", 0.0, 0.0, False, 0, 0, False, False, False, False)


def _special(word: str) -> _Piece:
    return (word, 0.0, 0.0, False, _h(word), _h(word), False)


_ONE_WORD = (0, 0, 0, 0, 0, 0, 0, 1, 0)
_URL = _special("<url>")
_EMAIL = _special("<email>")
_USER = _special("<user>")
_HASHTAG = _special("<hashtag>")
_NUM = _special("<num>")


@lru_cache(maxsize=1)
def _vader_tables() -> tuple[dict[str, float], dict[str, str], frozenset[str], dict[str, float]]:
    """The VADER lexicon, emoji descriptions, negations and boosters shipped by ``vaderSentiment``."""
    from vaderSentiment import vaderSentiment as vs

    folder = Path(vs.__file__).resolve().parent
    lexicon: dict[str, float] = {}
    with open(folder / "vader_lexicon.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                try:
                    lexicon[parts[0]] = float(parts[1])
                except ValueError:
                    continue
    emoji: dict[str, str] = {}
    with open(folder / "emoji_utf8_lexicon.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2:
                emoji[parts[0]] = parts[1]
    negations = frozenset(vs.NEGATE)
    boosters = {k: v for k, v in vs.BOOSTER_DICT.items() if " " not in k}
    return lexicon, emoji, negations, boosters


def read_taxonomy_file(name: str, taxonomy_dir: str | None = None) -> dict[str, Any]:
    """Read a taxonomy TOML file: from ``taxonomy_dir`` when it has one of that name, else the shipped one.

    >>> read_taxonomy_file("base.toml")["default_kind"]
    'social'
    """
    candidates = [Path(taxonomy_dir) / name] if taxonomy_dir else []
    candidates.append(TAXONOMY_DIR / name)
    for path in candidates:
        if path.is_file():
            try:
                with open(path, "rb") as fh:
                    return tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"taxonomy file {path} is not valid TOML: {exc}") from exc
    return {}


@dataclass(eq=False)
class Taxonomy:
    """The normalisation tables for one channel kind (``base.toml`` overlaid with ``<kind>.toml``).

    Loaded once per kind and cached (:func:`load_taxonomy`); the token cache memoises how each
    distinct token normalises, which is what makes the hot path fast on Zipf-distributed text.

    >>> tax = load_taxonomy("forum")
    >>> tax.slang["pwned"]
    (('owned',), 1.5)
    >>> tax.abbreviations["u"]
    ('you',)
    """

    kind: str
    abbreviations: dict[str, tuple[str, ...]]
    slang: dict[str, tuple[tuple[str, ...], float]]
    emoticons: dict[str, tuple[str, float]]
    negations: frozenset[str]
    negation_scope: int
    boosters: dict[str, float]
    leet: dict[int, str]
    stopwords: frozenset[str]
    lexicon: dict[str, float]
    pattern: re.Pattern[str]
    cache: dict[str, tuple[tuple[_Piece, ...], bool]] = field(default_factory=dict)
    emoji_cache: dict[str, _Piece] = field(default_factory=dict)
    chunks: dict[int, dict[str, _Chunk]] = field(default_factory=dict)

    def chunk(self, chunk: str, mask: int) -> _Chunk:
        """Normalise one whitespace-separated chunk into items and counters (memoised).

        Items are words in order (a ``_RESET`` item where punctuation ends a negation scope); the
        counters are ``(?, !, urls, handles, hashtags, emoji, caps words, alphabetic words,
        elongated words)``, or ``None`` for the commonest chunk, one plain lowercase word. The third
        element, when not ``None``, is the chunk pre-digested for the common case where no negation
        scope is open and the chunk neither negates nor says "but": ``(words, {hashed word: 1.0},
        boosters, (valence, caps, offset) per scored word, keywords, hashtag keywords)``, hashed with
        ``mask`` (one cache per mask).
        """
        cache = self.chunks.get(mask)
        if cache is None:
            cache = self.chunks[mask] = {}
        hit = cache.get(chunk)
        if hit is not None:
            return hit
        result = self._chunk(chunk, mask)
        # URLs and long chunks rarely repeat: caching them would only churn the cache.
        if len(chunk) <= 40 and (result[1] is None or result[1][2] == 0):
            if len(cache) >= _CHUNK_CACHE_LIMIT:
                cache.clear()
            cache[chunk] = result
        return result

    def _chunk(self, chunk: str, mask: int) -> _Chunk:
        items: list[_Item] = []
        n_q = n_excl = n_url = n_user = n_tag = n_emoji = n_caps = n_alpha = n_elong = 0
        for m in self.pattern.finditer(chunk):
            kind = m.lastgroup
            if kind == "word":
                raw = m.group()
                caps = False
                if raw.isalpha():
                    n_alpha += 1
                    caps = len(raw) > 1 and raw.isupper()
                    n_caps += caps
                pieces, elongated = self.resolve(raw.lower().replace("’", "'"))
                n_elong += elongated
                items.extend((*p, caps, elongated, False) for p in pieces)
            elif kind == "punct":
                p = m.group()
                n_q += p.count("?") + p.count("？")
                n_excl += p.count("!") + p.count("！")
                items.append(_RESET)
            elif kind == "emoji":
                char = m.group()
                if char not in _EMOJI_SKIP:
                    n_emoji += 1
                    items.append((*self.emoji_piece(char), False, False, False))
            elif kind == "emo":
                name, polarity = self.emoticons[m.group()]
                n_emoji += 1
                w = f"<{name}>"
                items.append((w, polarity, 0.0, False, _h(w), _h(w), False, False, False, False))
            elif kind == "url":
                n_url += 1
                items.append((*_URL, False, False, False))
            elif kind == "handle":
                n_user += 1
                items.append((*_USER, False, False, False))
            elif kind == "hashtag":
                n_tag += 1
                items.append((*_HASHTAG, False, False, False))
                for part in _CAMEL.findall(m.group()[1:]):
                    pieces, elongated = self.resolve(part.lower())
                    items.extend((*p, False, elongated, True) for p in pieces)
            else:  # email
                items.append((*_EMAIL, False, False, False))
        stats: tuple[int, ...] | None = (n_q, n_excl, n_url, n_user, n_tag, n_emoji, n_caps, n_alpha, n_elong)
        if stats == _ONE_WORD:
            stats = None
        fast = None
        if not any(it[3] or it[0] == "but" for it in items):
            plain = [it for it in items if it[0]]
            scored = []
            for i, it in enumerate(plain):
                if it[1]:
                    valence = it[1] + ((_B_INCR if it[1] > 0 else -_B_INCR) if it[8] else 0.0)
                    scored.append((valence, it[7], i))
            fast = (
                tuple(it[0] for it in plain),
                {it[4] & mask: 1.0 for it in plain},
                tuple(it[2] for it in plain),
                tuple(scored),
                tuple(it[0] for it in plain if it[6] and not it[9]),
                tuple(it[0] for it in plain if it[6] and it[9]),
            )
        return tuple(items), stats, fast

    def resolve(self, token: str) -> tuple[tuple[_Piece, ...], bool]:
        """Normalise one lowercase word token into pieces, and whether it was elongated (memoised)."""
        hit = self.cache.get(token)
        if hit is not None:
            return hit
        if len(self.cache) >= _TOKEN_CACHE_LIMIT:
            self.cache.clear()
        result = self._resolve(token)
        self.cache[token] = result
        return result

    def _piece(self, word: str, valence: float | None = None) -> _Piece:
        if valence is None:
            valence = self.lexicon.get(word, 0.0)
        booster = self.boosters.get(word, 0.0)
        negator = word in self.negations or word.endswith("n't")
        content = (
            len(word) >= 3
            and word.isalpha()
            and word not in self.stopwords
            and not negator
            and booster == 0.0
        )
        return (word, valence, booster, negator, _h(word), _h("!" + word), content)

    def _known(self, token: str) -> tuple[_Piece, ...] | None:
        if token in self.slang:
            words, polarity = self.slang[token]
            if not words:
                return ()
            return tuple(self._piece(w, 0.0) for w in words[:-1]) + (self._piece(words[-1], polarity),)
        if token in self.abbreviations:
            return tuple(self._piece(w) for w in self.abbreviations[token])
        if token in self.lexicon or token in self.boosters or token in self.negations:
            return (self._piece(token),)
        return None

    def _resolve(self, token: str) -> tuple[tuple[_Piece, ...], bool]:
        if token.endswith("'s") and len(token) > 3:
            token = token[:-2]
        token = token.strip("'")
        if not token:
            return (), False
        if token.isdigit():
            return (_NUM,), False
        known = self._known(token)
        if known is not None:
            return known, False
        elongated = False
        candidates = [token]
        squeezed = _ELONGATION.sub(r"\1\1", token)
        if squeezed != token:
            elongated = True
            candidates.append(squeezed)
            candidates.append(_DOUBLE.sub(r"\1", squeezed))
        has_alpha = any(c.isalpha() for c in token)
        leet = has_alpha and any(ord(c) in self.leet for c in token)
        if leet:
            decoded = token.translate(self.leet)
            candidates.append(decoded)
            candidates.append(_ELONGATION.sub(r"\1\1", decoded))
            candidates.append(_DOUBLE.sub(r"\1", decoded))
        # Gamer suffixes ("suxxors", "pwnzor", "h4x0r") only on tokens that look like leetspeak, so
        # ordinary words ending in -or keep their meaning.
        if leet or "xx" in token or "zz" in token or token.endswith(("zor", "zors", "xor", "xors")):
            for cand in list(candidates):
                if cand.endswith("s") and len(cand) > 3:
                    candidates.append(cand[:-1])
            for cand in list(candidates):
                stem = _GAMER_SUFFIX.sub("", cand)
                if len(stem) >= 2 and stem != cand:
                    candidates.append(stem)
                    candidates.append(_DOUBLE.sub(r"\1", stem))
        for cand in candidates[1:]:
            known = self._known(cand)
            if known is not None:
                return known, elongated
        # An unknown elongated word keeps one letter of each run ("slooow" -> "slow", "yesss" -> "yes").
        word = _ELONGATION.sub(r"\1", token) if elongated else token
        return (self._piece(word),), elongated

    def emoji_piece(self, char: str) -> _Piece:
        hit = self.emoji_cache.get(char)
        if hit is None:
            _, emoji, _, _ = _vader_tables()
            description = emoji.get(char, "")
            valences = [self.lexicon.get(w, 0.0) for w in description.split()]
            valence = sum(valences)
            valence = max(-3.0, min(3.0, valence))
            hit = (char, valence, 0.0, False, _h(char), _h(char), False)
            self.emoji_cache[char] = hit
        return hit


def _build_pattern(emoticons: dict[str, tuple[str, float]]) -> re.Pattern[str]:
    emo = "|".join(re.escape(e) for e in sorted(emoticons, key=len, reverse=True))
    emo_group = rf"|(?P<emo>(?<![\w:;=^<>-])(?:{emo})(?![\w)(]))" if emo else ""
    return re.compile(
        r"(?P<url>(?:https?://|www\.)\S+)"
        r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
        r"|(?P<handle>(?<![\w@])@\w+)"
        r"|(?P<hashtag>(?<![\w#&])#\w+)" + emo_group + r"|(?P<word>\w(?:[\w'’@$]*\w)?)"
        rf"|(?P<emoji>{_EMOJI_CLASS})"
        r"|(?P<punct>[!?.,;:…。？！]+)"
    )


@lru_cache(maxsize=64)
def _base_config(taxonomy_dir: str | None) -> dict[str, Any]:
    return read_taxonomy_file("base.toml", taxonomy_dir)


def kind_for_channel(channel: str | None, taxonomy_dir: str | None = None) -> str:
    """The channel kind whose tables apply to ``channel`` (``base.toml`` [channels]).

    >>> kind_for_channel("twitter"), kind_for_channel("forum"), kind_for_channel("somewhere-new")
    ('microblog', 'forum', 'social')
    """
    cfg = _base_config(taxonomy_dir)
    default = str(cfg.get("default_kind", "social"))
    if not channel:
        return default
    return str(cfg.get("channels", {}).get(str(channel).lower(), default))


@lru_cache(maxsize=64)
def load_taxonomy(kind: str, taxonomy_dir: str | None = None) -> Taxonomy:
    """Load (once) the tables for a channel kind: ``base.toml`` overlaid with ``<kind>.toml``."""
    lexicon_base, _, vader_negations, vader_boosters = _vader_tables()
    base_cfg = _base_config(taxonomy_dir)
    kind_cfg = read_taxonomy_file(f"{kind}.toml", taxonomy_dir) if kind else {}

    def table(name: str) -> dict[str, Any]:
        merged = dict(base_cfg.get(name, {}) or {})
        merged.update(kind_cfg.get(name, {}) or {})
        return merged

    abbreviations = {str(k).lower(): tuple(str(v).lower().split()) for k, v in table("abbreviations").items()}
    slang: dict[str, tuple[tuple[str, ...], float]] = {}
    for key, value in table("slang").items():
        if isinstance(value, dict):
            slang[str(key).lower()] = (
                tuple(str(value.get("means", key)).lower().split()),
                float(value.get("polarity", 0.0)),
            )
        else:
            raise ValueError(
                f"taxonomy {kind!r}: slang entry {key!r} must be {{means = ..., polarity = ...}}"
            )
    emoticons: dict[str, tuple[str, float]] = {}
    for key, value in table("emoticons").items():
        name = str(value.get("name", "emoticon")) if isinstance(value, dict) else str(value)
        polarity = float(value.get("polarity", 0.0)) if isinstance(value, dict) else 0.0
        emoticons[str(key)] = (name, lexicon_base.get(str(key), polarity))
    negation_cfg = table("negation")
    negations = (
        frozenset(vader_negations)
        | frozenset(str(w).lower() for w in (base_cfg.get("negation", {}) or {}).get("words", []))
        | frozenset(str(w).lower() for w in (kind_cfg.get("negation", {}) or {}).get("words", []))
    )
    boosters = dict(vader_boosters)
    boosters.update({str(k).lower(): float(v) for k, v in table("boosters").items()})
    leet = {ord(str(k)[0]): str(v) for k, v in table("leet").items() if str(k)}
    stop = set(_ENGLISH_STOPWORDS)
    for cfg in (base_cfg, kind_cfg):
        stop.update(str(w).lower() for w in (cfg.get("keywords", {}) or {}).get("stopwords", []))
    lexicon = dict(lexicon_base)
    # Slang polarity wins over the lexicon for the plain word it maps to (e.g. "owned" in a game).
    return Taxonomy(
        kind=kind,
        abbreviations=abbreviations,
        slang=slang,
        emoticons=emoticons,
        negations=negations,
        negation_scope=int(negation_cfg.get("scope", 3)),
        boosters=boosters,
        leet=leet,
        stopwords=frozenset(stop),
        lexicon=lexicon,
        pattern=_build_pattern(emoticons),
    )


_RELOAD_HOOKS: list[Callable[[], None]] = []


def on_reload(hook: Callable[[], None]) -> None:
    """Register a cache to forget when :func:`reload_taxonomies` runs (models that read their own TOML)."""
    _RELOAD_HOOKS.append(hook)


def reload_taxonomies() -> None:
    """Forget every loaded table, so edited TOML files take effect on the next mention.

    >>> reload_taxonomies()
    >>> load_taxonomy("forum").kind
    'forum'
    """
    load_taxonomy.cache_clear()
    _base_config.cache_clear()
    _taxonomy_for.cache_clear()
    for hook in _RELOAD_HOOKS:
        hook()


@lru_cache(maxsize=256)
def _taxonomy_for(channel: str | None, taxonomy_dir: str | None) -> Taxonomy:
    return load_taxonomy(kind_for_channel(channel, taxonomy_dir), taxonomy_dir)


def mention_text(x: Any) -> str:
    """The text of a mention dict, leniently: missing, ``None`` or non-text values read as ``""``.

    >>> mention_text({"text": "hi"}), mention_text({}), mention_text({"text": b"caf\\xc3\\xa9"}), mention_text(3)
    ('hi', '', 'café', '')
    """
    if not isinstance(x, dict):
        return ""
    text = x.get("text")
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray):
        return bytes(text).decode("utf-8", "replace")
    return ""


def require_text(x: Any) -> str:
    """The text of a mention dict for *learning*: a record we cannot read is refused, never learned.

    A missing ``text`` reads as empty (River's convention for a feature that disappeared); a
    ``text`` of the wrong type raises :class:`ValueError` with a reason fit for a dead letter.

    >>> require_text({"text": 5})
    Traceback (most recent call last):
    ...
    ValueError: text: expected a string, got int
    """
    if not isinstance(x, dict):
        raise ValueError(f"mention: expected a dict, got {type(x).__name__}")
    text = x.get("text")
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray):
        return bytes(text).decode("utf-8", "replace")
    raise ValueError(f"text: expected a string, got {type(text).__name__}")


@dataclass(slots=True)
class NormalisedText:
    """One mention's text after normalisation; computed once and shared by every text model.

    ``features`` maps hashed words (ints) and named cues (``"_q"``, ``"_compound"`` …) to values; it
    is shared between models, so treat it as read-only. ``compound`` / ``pos`` / ``neg`` follow VADER's
    definitions (compound in [-1, 1]).

    >>> n = TextNormalizer().normalise("I am NOT happy with the delay!!!")
    >>> n.compound < 0, n.negated_words
    (True, ['happy', 'with', 'the'])
    """

    words: list[str]
    features: dict[Any, float]
    compound: float
    pos: float
    neg: float
    neu: float
    keywords: list[str]
    n_questions: int
    n_exclaims: int
    kind: str
    negated_words: list[str]
    joined: str = ""
    #: Positions in ``words`` of the words inside a negation scope (in order).
    negated_at: list[int] = field(default_factory=list)
    #: The text as read (cut at the normaliser's ``max_chars``), for cues that need its punctuation.
    text: str = ""
    #: Per-model derived values (cue counts, keyword hits), so a model computes them once per mention.
    memo: dict[Any, Any] = field(default_factory=dict)

    def has_phrase(self, phrase: str) -> bool:
        """Whether the words contain ``phrase`` (space-separated, already normalised)."""
        return f" {phrase} " in self.joined


class TextNormalizer(base.Transformer):
    """Normalise mention text with per-channel taxonomies and hash it into sparse features.

    ``transform_one`` gives River-style features (hashed words and named cues); ``normalise`` gives the
    full :class:`NormalisedText` that the classifiers share. Stateless: ``learn_one`` does nothing.

    Parameters
    ----------
    taxonomy_dir
        A folder whose TOML files replace the shipped ones of the same name (``base.toml``,
        ``<kind>.toml``); ``None`` uses ``models/taxonomies``.
    n_bits
        Words are hashed into ``2 ** n_bits`` buckets, which bounds every model's memory.
    max_chars
        Only the first ``max_chars`` characters are read (a 10,000-character post costs no more).

    Examples
    --------
    >>> norm = TextNormalizer()
    >>> x = {"text": "Can u help? My bag is LOST :( #fail", "channel": "twitter"}
    >>> n = norm.normalise_one(x)
    >>> n.words
    ['can', 'you', 'help', 'my', 'bag', 'is', 'lost', '<sad>', '<hashtag>', 'fail']
    >>> n.keywords
    ['fail', 'help', 'bag', 'lost']
    >>> n.n_questions, round(n.compound, 3) < 0
    (1, True)
    >>> sorted(k for k in norm.transform_one(x) if isinstance(k, str))
    ['_caps', '_compound', '_emoji', '_hashtag', '_len', '_lex_neg', '_lex_pos', '_q']
    """

    def __init__(self, taxonomy_dir: str | None = None, n_bits: int = 18, max_chars: int = 5000) -> None:
        self.taxonomy_dir = taxonomy_dir
        self.n_bits = n_bits
        self.max_chars = max_chars

    def _more_tags(self) -> set[str]:
        return {MENTION_INPUT}

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"n_bits": 12, "max_chars": 280}

    @property
    def config(self) -> tuple[str | None, int, int]:
        """The parameters that decide the output: two normalisers with equal configs agree."""
        return (self.taxonomy_dir, self.n_bits, self.max_chars)

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Nothing to learn: the tables are data, edited in TOML."""
        return None

    def transform_one(self, x: dict[Any, Any]) -> dict[Any, Any]:
        """Hashed words and named cues of a mention dict (a fresh dict the caller may change)."""
        return dict(self.normalise_one(x).features)

    def normalise_one(self, x: dict[str, Any]) -> NormalisedText:
        """Normalise a mention dict ``{"text": ..., "channel": ...}``; never raises on bad input."""
        channel = x.get("channel") if isinstance(x, dict) else None
        return self.normalise(mention_text(x), channel if isinstance(channel, str) else None)

    def normalise(self, text: str, channel: str | None = None) -> NormalisedText:
        """Normalise ``text`` with the tables of ``channel``'s kind."""
        tax = _taxonomy_for(channel.lower() if channel else None, self.taxonomy_dir)
        if len(text) > self.max_chars:
            text = text[: self.max_chars]
        mask = (1 << self.n_bits) - 1
        words: list[str] = []
        feats: dict[Any, float] = {}
        negated_words: list[str] = []
        negated_at: list[int] = []
        hashtag_kw: list[str] = []
        content_kw: list[str] = []
        # Per sentiment-bearing word: (valence, caps, index in words, negated).
        scored: list[tuple[float, bool, int, bool]] = []
        boosts: list[float] = []
        but_at = -1
        n_q = n_excl = n_url = n_user = n_tag = n_emoji = n_caps = n_alpha = n_elong = 0
        neg_left = 0
        scope = tax.negation_scope
        cache = tax.chunks.get(mask)
        if cache is None:
            cache = {}
        chunk_of = tax.chunk
        for chunk in text.split():
            hit = cache.get(chunk)
            if hit is None:
                hit = chunk_of(chunk, mask)
                cache = tax.chunks[mask]
            items, st, fast = hit
            if st is not None:
                q, e, u, us, t, em, c, a, el = st
                n_q += q
                n_excl += e
                n_url += u
                n_user += us
                n_tag += t
                n_emoji += em
                n_caps += c
                n_alpha += a
                n_elong += el
            else:
                n_alpha += 1
            if fast is not None and not neg_left:
                cw, cf, cb, cs, ck, ct = fast
                if cs:
                    offset = len(words)
                    for valence, caps, i in cs:
                        scored.append((valence, caps, offset + i, False))
                words += cw
                boosts += cb
                feats.update(cf)
                if ck:
                    content_kw.extend(ck)
                if ct:
                    hashtag_kw.extend(ct)
                continue
            for word, valence, booster, negator, h, hn, content, caps, elongated, from_tag in items:
                if not word:
                    neg_left = 0
                    continue
                if negator:
                    negated = False
                    neg_left = scope
                elif neg_left:
                    negated = word != "but"
                    neg_left = neg_left - 1 if negated else 0
                else:
                    negated = False
                if word == "but":
                    but_at = len(words)
                if negated:
                    feats[hn & mask] = 1.0
                    negated_words.append(word)
                    negated_at.append(len(words))
                else:
                    feats[h & mask] = 1.0
                if valence:
                    if elongated:
                        valence += _B_INCR if valence > 0 else -_B_INCR
                    scored.append((valence, caps, len(words), negated))
                boosts.append(booster)
                words.append(word)
                if content:
                    if from_tag:
                        hashtag_kw.append(word)
                    else:
                        content_kw.append(word)

        # VADER-style valence: boosters before a word, CAPS emphasis, negation, "but" shift.
        mixed_case = 0 < n_caps < n_alpha
        total = 0.0
        pos_sum = neg_sum = 0.0
        for valence, caps, idx, negated in scored:
            sign = 1.0 if valence > 0 else -1.0
            for dist, decay in ((1, 1.0), (2, 0.95), (3, 0.9)):
                j = idx - dist
                if j < 0:
                    break
                b = boosts[j]
                if b:
                    valence += sign * b * decay
            if caps and mixed_case:
                valence += sign * _C_INCR
            if negated:
                valence *= _N_SCALAR
            if but_at >= 0:
                valence *= 0.5 if idx < but_at else 1.5
            total += valence
            if valence > 0:
                pos_sum += valence + 1.0
            elif valence < 0:
                neg_sum += valence - 1.0
        emphasis = min(n_excl, 4) * 0.292
        if n_q > 1:
            emphasis += n_q * 0.18 if n_q <= 3 else 0.96
        if total > 0:
            total += emphasis
        elif total < 0:
            total -= emphasis
        compound = total / math.sqrt(total * total + _ALPHA) if total else 0.0
        compound = max(-1.0, min(1.0, compound))
        if pos_sum > -neg_sum:
            pos_sum += emphasis
        elif pos_sum < -neg_sum:
            neg_sum -= emphasis
        neu_count = max(0, len(words) - len(scored))
        denom = pos_sum - neg_sum + neu_count
        pos = pos_sum / denom if denom else 0.0
        neg = -neg_sum / denom if denom else 0.0
        neu = neu_count / denom if denom else 1.0

        # Named cues; zeros are left out (they add nothing to a linear model and cost a lookup).
        dense = (
            ("_q", 1.0 if n_q else 0.0),
            ("_excl", min(n_excl, 3) / 3.0),
            ("_url", 1.0 if n_url else 0.0),
            ("_user", min(n_user, 3) / 3.0),
            ("_hashtag", min(n_tag, 3) / 3.0),
            ("_emoji", min(n_emoji, 3) / 3.0),
            ("_len", min(len(words), 60) / 60.0),
            ("_caps", n_caps / n_alpha if n_alpha else 0.0),
            ("_elong", 1.0 if n_elong else 0.0),
            ("_compound", compound),
            ("_lex_pos", pos),
            ("_lex_neg", neg),
        )
        for name, value in dense:
            if value:
                feats[name] = value

        keywords: list[str] = []
        seen: set[str] = set()
        for w in hashtag_kw + content_kw:
            if w not in seen:
                seen.add(w)
                keywords.append(w)
                if len(keywords) >= 8:
                    break
        return NormalisedText(
            words=words,
            features=feats,
            compound=compound,
            pos=pos,
            neg=neg,
            neu=neu,
            keywords=keywords,
            n_questions=n_q,
            n_exclaims=n_excl,
            kind=tax.kind,
            negated_words=negated_words,
            negated_at=negated_at,
            text=text,
            joined=" " + " ".join(words) + " ",
        )
