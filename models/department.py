"""Department routing for the BPM step: service / sales / marketing / pr (or whatever the taxonomy lists).

The prior is a keyword taxonomy per department (``models/taxonomies/departments.toml``: keywords and
phrases, a default department for mentions that match nothing); hits per department are also named
features of one-vs-rest online logistic models that learn from re-routing feedback. No public data set
labels departments, so the default model starts from the taxonomy alone and learns only from feedback.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from models._online import OnlineTextClassifier
from models.text import NormalisedText, TextNormalizer, on_reload, read_taxonomy_file

__all__ = ["DEPARTMENTS", "DepartmentClassifier", "load_departments"]

#: The departments of the shipped taxonomy.
DEPARTMENTS = ("service", "sales", "marketing", "pr")


class _Routing:
    """A department taxonomy, compiled: word -> departments, one phrase regex, default and weights."""

    def __init__(self, taxonomy_dir: str | None) -> None:
        cfg = read_taxonomy_file("departments.toml", taxonomy_dir)
        tables = cfg.get("departments", {}) or {}
        if not tables:
            raise ValueError("departments.toml lists no [departments.<name>] table")
        self.names: tuple[str, ...] = tuple(str(n) for n in tables)
        self.default = str(cfg.get("default", self.names[0]))
        if self.default not in self.names:
            raise ValueError(f"departments.toml: default {self.default!r} is not a listed department")
        self.hit_weight = float(cfg.get("hit_weight", 1.2))
        self.default_bias = float(cfg.get("default_bias", 0.8))
        self.feature_names = {name: f"_d_{name}" for name in self.names}
        self.by_word: dict[str, tuple[str, ...]] = {}
        self.by_phrase: dict[str, tuple[str, ...]] = {}
        for name, table in tables.items():
            for kw in table.get("keywords", []) or []:
                key = str(kw).lower().strip()
                if key:
                    self.by_word[key] = (*self.by_word.get(key, ()), str(name))
            for ph in table.get("phrases", []) or []:
                key = " ".join(str(ph).lower().split())
                if key:
                    self.by_phrase[key] = (*self.by_phrase.get(key, ()), str(name))
        phrases = sorted(self.by_phrase, key=len, reverse=True)
        self.phrase_re = re.compile(
            r"(?<= )(?:" + "|".join(re.escape(p) for p in phrases) + r")(?= )" if phrases else r"(?!x)x"
        )

    def hits(self, norm: NormalisedText) -> dict[str, int]:
        key = ("department", id(self))
        memo = norm.memo.get(key)
        if memo is not None:
            return memo
        counts = dict.fromkeys(self.names, 0)
        by_word = self.by_word
        for w in norm.words[:200]:
            deps = by_word.get(w)
            if deps:
                for d in deps:
                    counts[d] += 1
        if len(norm.words) < 400:
            for ph in self.phrase_re.findall(norm.joined):
                for d in self.by_phrase[ph]:
                    counts[d] += 1
        norm.memo[key] = counts
        return counts


@lru_cache(maxsize=16)
def load_departments(taxonomy_dir: str | None = None) -> _Routing:
    """The compiled department taxonomy of a folder (``None``: the shipped one), loaded once.

    >>> load_departments().names
    ('service', 'sales', 'marketing', 'pr')
    """
    return _Routing(taxonomy_dir)


on_reload(load_departments.cache_clear)


class DepartmentClassifier(OnlineTextClassifier):
    """Route a mention to a department: keyword taxonomy prior, online learning from re-routing.

    Parameters
    ----------
    normalizer
        The shared :class:`~models.text.TextNormalizer`; its ``taxonomy_dir`` also locates
        ``departments.toml``.
    learning_rate
        AdaGrad step of the online logistic models.
    l2
        L2 penalty of the online models.
    prior_weight
        How many re-routing examples the taxonomy is worth; its weight fades as feedback arrives
        (the keyword hits stay in the model as features).
    balance
        Weight examples by inverse class frequency to this power (0: no weighting, 1: fully balanced,
        which favours macro-averaged recall).

    Examples
    --------
    >>> model = DepartmentClassifier()
    >>> model.predict_one({"text": "My refund still hasn't arrived", "channel": "email"})
    'service'
    >>> model.predict_one({"text": "How much is the business plan? Any discount?", "channel": "twitter"})
    'sales'
    >>> model.predict_one({"text": "Journalist here, can we get a statement on the data breach?"})
    'pr'
    >>> for _ in range(30):
    ...     model.learn_one({"text": "loved the new billboard in town"}, "marketing")
    ...     model.learn_one({"text": "my order is stuck"}, "service")
    >>> model.predict_one({"text": "saw your billboard"})
    'marketing'
    """

    def __init__(
        self,
        normalizer: TextNormalizer | None = None,
        learning_rate: float = 0.1,
        l2: float = 0.0,
        prior_weight: float = 30.0,
        balance: float = 0.5,
    ) -> None:
        super().__init__(
            normalizer=normalizer,
            learning_rate=learning_rate,
            l2=l2,
            prior_weight=prior_weight,
            balance=balance,
        )

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"prior_weight": 0.0}

    @property
    def routing(self) -> _Routing:
        return load_departments(self.text_normalizer.taxonomy_dir)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.routing.names

    def keyword_hits(self, norm: NormalisedText) -> dict[str, int]:
        """Keyword and phrase hits per department.

        >>> model = DepartmentClassifier()
        >>> model.keyword_hits(model.normalise_one({"text": "price of the upgrade, and my bag is lost"}))
        {'service': 2, 'sales': 2, 'marketing': 0, 'pr': 0}
        """
        return self.routing.hits(norm)

    def extra_features(self, norm: NormalisedText) -> dict[str, float]:
        routing = self.routing
        names = routing.feature_names
        return {names[name]: min(n, 3) / 3.0 for name, n in routing.hits(norm).items() if n}

    def prior_proba(self, norm: NormalisedText) -> dict[str, float]:
        routing = self.routing
        hits = routing.hits(norm)
        logits = {
            name: routing.hit_weight * n + (routing.default_bias if name == routing.default else 0.0)
            for name, n in hits.items()
        }
        top = max(logits.values())
        exp = {name: math.exp(z - top) for name, z in logits.items()}
        total = sum(exp.values())
        return {name: e / total for name, e in exp.items()}
