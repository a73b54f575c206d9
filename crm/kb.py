"""Knowledge base: articles (title, body, tags), BM25 search with ``bm25s``, and learning from agents' picks.

Articles live in the store, so every process searches the same set; each process keeps a BM25 index
in memory and rebuilds it when an import bumps the version. When an agent answers a case with an
article, the terms of the case are credited to that article; later searches add a learned boost
``w * tanh(mean over query terms of log(1 + credits))`` to the normalised BM25 score, so articles
agents actually use rise, even for wording the article itself does not contain.

>>> tokenize("How do I reset my passwords?? Refunds & delivery")
['reset', 'password', 'refund', 'delivery']
>>> articles, rejected = parse_articles_csv_text("id,title,body,tags\\nk1,Reset password,Use the link,login\\n,,x,")
>>> [a["id"] for a in articles], rejected
(['k1'], ['line 3: missing title'])
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import orjson
from bm25s.stopwords import STOPWORDS_EN_PLUS

from crm.errors import KnowledgeBaseError
from crm.store import CrmStore

__all__ = ["KnowledgeBase", "load_articles", "parse_articles_csv_text", "tokenize"]

log = logging.getLogger(__name__)

_STOP = frozenset(STOPWORDS_EN_PLUS) | {"pls", "please", "hi", "hello", "thanks", "thank", "im", "ive", "u", "ur",
                                         "get", "got", "can", "could", "would", "help", "need", "want"}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SLUG = re.compile(r"[^a-z0-9]+")


def _stem(token: str) -> str:
    """A light plural stemmer: enough that 'refunds' finds 'refund' without mangling words."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Lower-case words of 2+ characters, stop words dropped, plurals folded."""
    out = []
    for word in _WORD.findall(text.lower()):
        if len(word) < 2 or word in _STOP:
            continue
        out.append(_stem(word))
    return out


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:64]


def _article(raw: dict[str, Any], where: str) -> dict[str, str]:
    title = str(raw.get("title") or "").strip()
    body = str(raw.get("body") or raw.get("text") or raw.get("content") or "").strip()
    if not title:
        raise ValueError(f"{where}: missing title")
    if not body:
        raise ValueError(f"{where}: missing body")
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in re.split(r"[;,|]", tags) if t.strip()]
    aid = str(raw.get("id") or "").strip() or _slug(title)
    if not aid or any(c.isspace() for c in aid):
        raise ValueError(f"{where}: id {aid!r} must be non-empty without spaces")
    article = {"id": aid, "title": title, "body": body, "tags": orjson.dumps([str(t) for t in tags]).decode()}
    if raw.get("url"):
        article["url"] = str(raw["url"]).strip()
    return article


def parse_articles_csv_text(text: str, name: str = "") -> tuple[list[dict[str, str]], list[str]]:
    """Articles from CSV text with columns ``title``, ``body`` (or ``text``), optional ``id``, ``tags``, ``url``."""
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower() for c in reader.fieldnames or []}
    if "title" not in cols or not cols & {"body", "text", "content"}:
        raise KnowledgeBaseError(f"{name or 'CSV'}: needs columns title and body (found {', '.join(sorted(cols))})")
    articles, rejected = [], []
    prefix = f"{name}:" if name else ""
    for i, row in enumerate(reader):
        row = {(k or "").strip().lower(): v for k, v in row.items()}
        try:
            articles.append(_article(row, f"{prefix}line {i + 2}"))
        except ValueError as exc:
            rejected.append(str(exc))
    return articles, rejected


def _parse_text_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    title, tags = "", ""
    body: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not title:
            if stripped:
                title = stripped.lstrip("#").strip()
            continue
        if not tags and not body and stripped.lower().startswith("tags:"):
            tags = stripped[5:]
            continue
        body.append(line)
    return _article({"id": _slug(path.stem), "title": title, "body": "\n".join(body), "tags": tags}, path.name)


def load_articles(path: str | Path) -> tuple[list[dict[str, str]], list[str]]:
    """Articles from a CSV file, a JSON file, or a folder of ``.md``/``.txt``/``.json``/``.csv`` files.

    Returns (articles, rejected) where each rejection says file/line and why. Later duplicates of an id
    are rejected.
    """
    p = Path(path)
    if not p.exists():
        raise KnowledgeBaseError(f"{p} does not exist")
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    articles: list[dict[str, str]] = []
    rejected: list[str] = []
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix == ".csv":
                got, bad = parse_articles_csv_text(f.read_text(encoding="utf-8"), f.name)
                articles.extend(got)
                rejected.extend(bad)
            elif suffix == ".json":
                data = orjson.loads(f.read_bytes())
                items = data if isinstance(data, list) else [data]
                for i, item in enumerate(items):
                    try:
                        if not isinstance(item, dict):
                            raise ValueError(f"{f.name}[{i}]: expected an object")
                        articles.append(_article(item, f"{f.name}[{i}]"))
                    except ValueError as exc:
                        rejected.append(str(exc))
            elif suffix in (".md", ".markdown", ".txt"):
                articles.append(_parse_text_file(f))
            elif p.is_file():
                raise KnowledgeBaseError(f"{f}: unsupported article file (use .csv, .json, .md or .txt)")
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, KnowledgeBaseError):
                raise
            rejected.append(f"{f.name}: {exc}" if not str(exc).startswith(f.name) else str(exc))
    seen: set[str] = set()
    unique = []
    for a in articles:
        if a["id"] in seen:
            rejected.append(f"duplicate article id {a['id']!r} (first one kept)")
            continue
        seen.add(a["id"])
        unique.append(a)
    return unique, rejected


class KnowledgeBase:
    """Search over the store's articles with BM25 plus boosts learned from agents' choices.

    >>> KnowledgeBase.__name__
    'KnowledgeBase'
    """

    def __init__(self, store: CrmStore, *, feedback_weight: float = 0.6, refresh_every: int = 2000) -> None:
        self.store = store
        self.feedback_weight = feedback_weight
        self.refresh_every = refresh_every
        self._articles: list[dict[str, str]] = []
        self._index: Any = None
        self._position: dict[str, int] = {}
        self._feedback: dict[str, dict[int, int]] = {}
        self._versions: tuple[int, int] | None = None
        self._calls = 0

    # -- loading ------------------------------------------------------------------------
    def import_articles(self, articles: Sequence[dict[str, str]]) -> int:
        """Store articles (replacing same ids) and rebuild the index."""
        n = self.store.kb_put_articles(list(articles))
        self.refresh(force=True)
        return n

    def refresh(self, force: bool = False) -> None:
        """Reload articles and learned boosts if another process changed them."""
        versions = self.store.kb_versions()
        if not force and versions == self._versions:
            return
        if force or self._versions is None or versions[0] != self._versions[0]:
            self._build(self.store.kb_articles())
        self._load_feedback()
        self._versions = versions

    def _build(self, articles: list[dict[str, str]]) -> None:
        self._articles = articles
        self._position = {a["id"]: i for i, a in enumerate(articles)}
        corpus = []
        for a in articles:
            tags = " ".join(orjson.loads(a.get("tags") or "[]"))
            # title and tags count double: they say what the article is about
            corpus.append(tokenize(f"{a['title']} {a['title']} {tags} {tags} {a['body']}") or ["_empty_"])
        if corpus:
            index = bm25s.BM25()
            index.index(corpus, show_progress=False)
            self._index = index
        else:
            self._index = None
        log.info("knowledge base index: %d articles", len(articles))

    def _load_feedback(self) -> None:
        fb: dict[str, dict[int, int]] = defaultdict(dict)
        for (term, article), count in self.store.kb_feedback().items():
            pos = self._position.get(article)
            if pos is not None:
                fb[term][pos] = count
        self._feedback = dict(fb)

    def _maybe_refresh(self) -> None:
        self._calls += 1
        if self._versions is None or self._calls % self.refresh_every == 0:
            self.refresh()

    # -- searching ------------------------------------------------------------------------
    def __len__(self) -> int:
        self._maybe_refresh()
        return len(self._articles)

    def article(self, article_id: str) -> dict[str, Any] | None:
        self._maybe_refresh()
        pos = self._position.get(article_id)
        if pos is None:
            self.refresh(force=True)
            pos = self._position.get(article_id)
        if pos is None:
            return None
        a = dict(self._articles[pos])
        a["tags"] = orjson.loads(a.get("tags") or "[]")
        return a

    def search(self, query: str, k: int = 3, extra_terms: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Top ``k`` articles as ``{"id", "title", "score"}``, best first; empty when nothing matches."""
        self._maybe_refresh()
        if self._index is None or not self._articles:
            return []
        terms = list(dict.fromkeys(tokenize(query) + [t for x in extra_terms for t in tokenize(str(x))]))
        if not terms:
            return []
        scores = self._index.get_scores(terms)
        top = float(scores.max())
        if top > 0:
            scores = scores / top
        boosted: dict[int, float] = {}
        if self._feedback:
            for t in terms:
                for pos, count in self._feedback.get(t, {}).items():
                    boosted[pos] = boosted.get(pos, 0.0) + math.log1p(count)
        if top <= 0 and not boosted:
            return []
        final = {int(i): float(scores[i]) for i in np.flatnonzero(scores > 0)} if top > 0 else {}
        for pos, b in boosted.items():
            final[pos] = final.get(pos, 0.0) + self.feedback_weight * math.tanh(b / len(terms))
        arts = self._articles
        order = sorted(final, key=lambda i: (-final[i], arts[i]["id"]))[:max(1, k)]
        return [{"id": arts[i]["id"], "title": arts[i]["title"], "score": round(final[i], 4)} for i in order]

    def record_choice(self, article_id: str, query: str) -> None:
        """An agent answered a case (whose text is ``query``) with this article: learn from it."""
        self._maybe_refresh()
        if article_id not in self._position:
            self.refresh(force=True)
            if article_id not in self._position:
                raise KnowledgeBaseError(f"no article {article_id!r}")
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return
        self.store.kb_add_feedback(article_id, terms)
        pos = self._position[article_id]
        for t in terms:
            bucket = self._feedback.setdefault(t, {})
            bucket[pos] = bucket.get(pos, 0) + 1
