'''Business rules in TOML: conditions over the enriched mention, the customer record and recent history.

A rules file is a list of ``[[rule]]`` tables, each with a ``name``, a ``[rule.when]`` table (all must
hold), an optional ``[rule.when_any]`` table (at least one must hold) and one or more
``[[rule.then]]`` actions. Conditions name a field as ``mention.*`` (the fields of
``Enriched.to_dict()``; ``mention.meta.*`` reaches into meta), ``customer.*`` (the customer record:
tier, value, products, churn_risk, influence, ...) or ``history.*`` (recent history, see
:func:`history_summary`), with a value (equality) or a table of operators:
``eq ne in not_in gt gte lt lte contains not_contains contains_any matches exists``.

Actions (one key per ``[[rule.then]]`` table):
``route = "pr"`` (department queue; opens a case for it), ``priority = "urgent"``,
``task = {title = "...", queue = "sales", due_minutes = 60}``, ``tag = ["a", "b"]``,
``outbox = {text = "...", private = true}`` (a reply on the mention's channel),
``webhook = {url = "https://...", event = "..."}``, ``alert = {severity = "high", message = "..."}``.
``outbox`` and ``webhook`` become outbox messages (see :mod:`crm.outbox`): a ``reply`` (``dm_request`` when
private) on the mention's channel, and a ``webhook`` message on the ``webhook`` outbox that
``pulse outbox relay --channel webhook`` POSTs, signed, to its URL.
Texts are templates: ``{customer.name}``, ``{mention.author}``, ``{history.mentions}``.

A malformed file is refused whole, with the file, rule and line in the message.

>>> rules = RuleSet.from_toml("""
... [[rule]]
... name = "gold-negative"
... [rule.when]
... "mention.sentiment" = "negative"
... "customer.tier" = { in = ["gold", "platinum"] }
... [[rule.then]]
... route = "supervisor"
... [[rule.then]]
... alert = { severity = "high", message = "{customer.name} is unhappy" }
... """)
>>> hits = rules.evaluate({"sentiment": "negative"}, {"tier": "Gold", "name": "Ann"}, {})
>>> [(h.rule, [a["kind"] for a in h.actions]) for h in hits], hits[0].actions[1]["message"]
([('gold-negative', ['route', 'alert'])], 'Ann is unhappy')
>>> RuleSet.from_toml("""
... [[rule]]
... name = "bad"
... [rule.when]
... "customer.tier" = { bigger = 3 }
... [[rule.then]]
... tag = "x"
... """, source="rules.toml")
Traceback (most recent call last):
...
crm.errors.RuleError: rules.toml: rule 'bad' (line 5): customer.tier: unknown operator 'bigger' (use contains, contains_any, eq, exists, gt, gte, in, lt, lte, matches, ne, not_contains, not_in)
'''

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.errors import RuleError
from crm.settings import PRIORITIES

__all__ = ["HISTORY_FIELDS", "MENTION_FIELDS", "Rule", "RuleHit", "RuleSet", "history_summary", "load_rules"]

#: The fields of ``stream.schema.Enriched.to_dict()`` (crm/ does not import stream/; a test keeps them equal).
MENTION_FIELDS = frozenset({
    "id", "channel", "owned", "brand", "author", "text", "ts", "in_reply_to", "from_brand", "url", "lang", "meta",
    "customer_id", "intent", "sentiment", "sentiment_score", "department", "keywords", "churn_risk", "case_id",
})
#: What ``history.*`` offers (see :func:`history_summary`).
HISTORY_FIELDS = frozenset({
    "mentions", "negative", "neutral", "positive", "queries", "mean_sentiment", "recent_mentions",
    "recent_negative", "recent_positive", "recent_queries", "last_sentiment", "recent_channels", "cases_open",
    "cases_total",
})
_OPS = ("contains", "contains_any", "eq", "exists", "gt", "gte", "in", "lt", "lte", "matches", "ne",
        "not_contains", "not_in")
_ACTIONS = ("alert", "outbox", "priority", "route", "tag", "task", "webhook")
_SEVERITIES = ("low", "medium", "high", "critical")
_QUEUE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rules?\s*\]\]")


def history_summary(customer: Mapping[str, Any], recent: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates rules can test: lifetime counters from the customer, and the recent mentions (newest first).

    >>> h = history_summary({"mentions": 4, "negative": 3, "cases_open": 1},
    ...                     [{"sentiment": "negative", "channel": "twitter", "intent": "query"},
    ...                      {"sentiment": "positive", "channel": "review", "intent": "comment"}])
    >>> h["recent_negative"], h["last_sentiment"], h["recent_channels"], h["cases_open"]
    (1, 'negative', ['twitter', 'review'], 1)
    """
    sentiments = [m.get("sentiment") for m in recent]
    return {
        "mentions": int(customer.get("mentions") or 0),
        "negative": int(customer.get("negative") or 0),
        "neutral": int(customer.get("neutral") or 0),
        "positive": int(customer.get("positive") or 0),
        "queries": int(customer.get("queries") or 0),
        "mean_sentiment": float(customer.get("mean_sentiment") or 0.0),
        "recent_mentions": len(recent),
        "recent_negative": sentiments.count("negative"),
        "recent_positive": sentiments.count("positive"),
        "recent_queries": sum(1 for m in recent if m.get("intent") == "query"),
        "last_sentiment": sentiments[0] if sentiments else None,
        "recent_channels": list(dict.fromkeys(m.get("channel") for m in recent if m.get("channel"))),
        "cases_open": int(customer.get("cases_open") or 0),
        "cases_total": int(customer.get("cases_total") or 0),
    }


class _Fields(dict):  # type: ignore[type-arg]
    """A dict whose keys read as attributes in ``str.format`` templates; missing ones are empty."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name, "")
        return _Fields(value) if isinstance(value, dict) else ("" if value is None else value)


def _render(template: str, ctx: dict[str, Any]) -> str:
    try:
        return template.format_map({k: _Fields(v) for k, v in ctx.items()})
    except (ValueError, KeyError, IndexError, AttributeError):
        return template


def _get(ctx: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = ctx
    for part in path:
        if type(value) is not dict:  # plain dicts only (fast path; no ABC checks per condition)
            if not isinstance(value, Mapping):
                return None
        value = value.get(part)
        if value is None:
            return None
    return value


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _contains(actual: Any, needle: Any) -> bool:
    if actual is None:
        return False
    if isinstance(actual, list | tuple | set):
        return _norm(needle) in {_norm(a) for a in actual}
    return str(needle).lower() in str(actual).lower()


def _compile_op(op: str, arg: Any) -> Callable[[Any], bool]:
    if op in ("eq", "ne"):
        # against a list field (products, keywords) equality means membership
        want = op == "eq"
        return lambda a: ((_norm(arg) in {_norm(x) for x in a}) if isinstance(a, list) else _norm(a) == _norm(arg)) == want
    if op in ("in", "not_in"):
        options = {_norm(x) for x in arg}
        if op == "in":
            return lambda a: _norm(a) in options if not isinstance(a, list) else bool(options & {_norm(x) for x in a})
        return lambda a: _norm(a) not in options if not isinstance(a, list) else not options & {_norm(x) for x in a}
    if op in ("gt", "gte", "lt", "lte"):
        limit = float(arg)
        cmp = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}[op]

        def numeric(a: Any) -> bool:
            n = _number(a)
            return n is not None and cmp(n, limit)

        return numeric
    if op == "contains":
        return lambda a: _contains(a, arg)
    if op == "not_contains":
        return lambda a: not _contains(a, arg)
    if op == "contains_any":
        return lambda a: any(_contains(a, x) for x in arg)
    if op == "matches":
        rx = re.compile(arg, re.IGNORECASE)
        return lambda a: a is not None and rx.search(str(a)) is not None
    if op == "exists":
        want = bool(arg)
        return lambda a: (a is not None and a != "" and a != []) == want
    raise AssertionError(op)  # pragma: no cover - validated before


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that matched, with its actions rendered for this mention.

    >>> RuleHit("r", [{"kind": "tag", "tags": ["x"]}]).rule
    'r'
    """

    rule: str
    actions: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "actions": self.actions}


@dataclass(slots=True)
class Rule:
    """One compiled rule.

    >>> Rule("r", "", [], [], []).matches({})
    False
    """

    name: str
    description: str
    all_of: list[Callable[[dict[str, Any]], bool]]
    any_of: list[Callable[[dict[str, Any]], bool]]
    actions: list[dict[str, Any]]
    stop: bool = False
    roots: frozenset[str] = field(default_factory=frozenset)

    def matches(self, ctx: dict[str, Any]) -> bool:
        if not self.all_of and not self.any_of:
            return False
        for check in self.all_of:
            if not check(ctx):
                return False
        if not self.any_of:
            return True
        for check in self.any_of:
            if check(ctx):
                return True
        return False

    def render(self, ctx: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for action in self.actions:
            rendered = {k: _render(v, ctx) if isinstance(v, str) and k in ("text", "title", "message") else v
                        for k, v in action.items()}
            out.append(rendered)
        return out


class RuleSet:
    """The compiled rules of one file, evaluated in file order.

    >>> RuleSet([]).evaluate({}, {}, {})
    []
    """

    def __init__(self, rules: list[Rule], source: str = "") -> None:
        self.rules = rules
        self.source = source
        self.uses_history = any("history" in r.roots for r in rules)
        #: Whether a rule can route a mention to a queue (which opens a case whatever its intent).
        self.routes = any(a.get("kind") == "route" for r in rules for a in r.actions)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def evaluate(self, mention: dict[str, Any], customer: dict[str, Any], history: dict[str, Any]) -> list[RuleHit]:
        ctx = {"mention": mention, "customer": customer, "history": history}
        hits = []
        for rule in self.rules:
            if rule.matches(ctx):
                hits.append(RuleHit(rule.name, rule.render(ctx)))
                if rule.stop:
                    break
        return hits

    @classmethod
    def from_toml(cls, text: str, source: str = "rules") -> RuleSet:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleError(f"{source}: not valid TOML: {exc}") from None
        return _Compiler(text, source).compile(data)


def load_rules(path: str | Path) -> RuleSet:
    """Compile a rules file; raises :class:`RuleError` naming the file, rule and line when malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(f"rules file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"rules file {p}: cannot read it ({exc})") from None
    return RuleSet.from_toml(text, source=str(p))


class _Compiler:
    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.headers = [i + 1 for i, line in enumerate(self.lines) if _RULE_HEADER.match(line)]

    def line_of(self, index: int, needle: str | None) -> int:
        start = self.headers[index] if index < len(self.headers) else 1
        end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines) + 1
        if needle:
            for n in range(start, end):
                if needle in self.lines[n - 1]:
                    return n
            last = needle.rsplit(".", 1)[-1]
            for n in range(start, end):
                if re.search(rf"\b{re.escape(last)}\b", self.lines[n - 1]):
                    return n
        return start

    def fail(self, index: int, name: str, problem: str, needle: str | None = None) -> RuleError:
        who = f"rule {name!r}" if name else f"rule #{index + 1}"
        return RuleError(f"{self.source}: {who} (line {self.line_of(index, needle)}): {problem}")

    def compile(self, data: dict[str, Any]) -> RuleSet:
        unknown = set(data) - {"rule", "rules"}
        if unknown:
            raise RuleError(f"{self.source}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                            "(rules are [[rule]] tables)")
        raw_rules = data.get("rule", data.get("rules", []))
        if not isinstance(raw_rules, list):
            raise RuleError(f"{self.source}: 'rule' must be an array of tables ([[rule]])")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_rules):
            rule = self.compile_rule(i, raw)
            if rule is None:
                continue
            if rule.name in seen:
                raise self.fail(i, rule.name, f"duplicate rule name (first defined as rule #{seen[rule.name] + 1})",
                                "name")
            seen[rule.name] = i
            rules.append(rule)
        return RuleSet(rules, self.source)

    def compile_rule(self, i: int, raw: Any) -> Rule | None:
        if not isinstance(raw, dict):
            raise self.fail(i, "", "expected a table")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(i, "", "missing name", "[[rule")
        name = name.strip()
        allowed = {"name", "description", "enabled", "stop", "when", "when_any", "then"}
        extra = set(raw) - allowed
        if extra:
            key = sorted(extra)[0]
            raise self.fail(i, name, f"unknown key {key!r} (use {', '.join(sorted(allowed))})", key)
        for flag in ("enabled", "stop"):
            if flag in raw and not isinstance(raw[flag], bool):
                raise self.fail(i, name, f"{flag} must be true or false", flag)
        when, when_any = raw.get("when", {}), raw.get("when_any", {})
        for label, table in (("when", when), ("when_any", when_any)):
            if not isinstance(table, dict):
                raise self.fail(i, name, f"{label} must be a table of conditions", label)
        if not when and not when_any:
            raise self.fail(i, name, "no conditions: add a [rule.when] table", "name")
        roots: set[str] = set()
        all_of = [self.condition(i, name, path, spec, roots) for path, spec in _flatten(when)]
        any_of = [self.condition(i, name, path, spec, roots) for path, spec in _flatten(when_any)]
        then = raw.get("then")
        if not isinstance(then, list) or not then:
            raise self.fail(i, name, "no actions: add at least one [[rule.then]] table", "name")
        actions = [self.action(i, name, a) for a in then]
        if raw.get("enabled", True) is False:
            return None
        return Rule(name, str(raw.get("description", "")), all_of, any_of, actions, bool(raw.get("stop", False)),
                    frozenset(roots))

    def condition(self, i: int, name: str, path: str, spec: Any, roots: set[str]) -> Callable[[dict[str, Any]], bool]:
        parts = tuple(path.split("."))
        root = parts[0]
        if len(parts) > 2 and not (root == "mention" and parts[1] == "meta"):
            # only meta nests: "customer.tier = { within = ... }" is a misspelt operator, not a path
            field_path = ".".join(parts[:-1])
            raise self.fail(i, name, f"{field_path}: unknown operator {parts[-1]!r} (use {', '.join(_OPS)})",
                            field_path)
        if root not in ("mention", "customer", "history") or len(parts) < 2:
            raise self.fail(i, name, f"{path}: conditions start with mention., customer. or history.", path)
        if root == "mention" and parts[1] not in MENTION_FIELDS:
            raise self.fail(i, name, f"{path}: the enriched mention has no field {parts[1]!r}", path)
        if root == "history" and parts[1] not in HISTORY_FIELDS:
            raise self.fail(i, name, f"{path}: history has no field {'.'.join(parts[1:])!r} "
                                     f"(use {', '.join(sorted(HISTORY_FIELDS))})", path)
        roots.add(root)
        ops = spec if isinstance(spec, dict) else {"eq": spec}
        if not ops:
            raise self.fail(i, name, f"{path}: empty condition", path)
        checks: list[Callable[[Any], bool]] = []
        for op, arg in ops.items():
            if op not in _OPS:
                raise self.fail(i, name, f"{path}: unknown operator {op!r} (use {', '.join(_OPS)})", path)
            problem = _check_arg(op, arg)
            if problem:
                raise self.fail(i, name, f"{path}: {op}: {problem}", path)
            checks.append(_compile_op(op, arg))
        if len(checks) == 1:
            check = checks[0]
            return lambda ctx: check(_get(ctx, parts))
        return lambda ctx: (lambda v: all(c(v) for c in checks))(_get(ctx, parts))

    def action(self, i: int, name: str, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or len(raw) != 1:
            keys = ", ".join(sorted(raw)) if isinstance(raw, dict) else type(raw).__name__
            raise self.fail(i, name, f"each [[rule.then]] holds exactly one action (got {keys or 'none'}; "
                                     f"use one of {', '.join(_ACTIONS)})", "[[rule.then]]")
        kind, arg = next(iter(raw.items()))
        if kind not in _ACTIONS:
            raise self.fail(i, name, f"unknown action {kind!r} (use {', '.join(_ACTIONS)})", kind)

        def bad(problem: str) -> RuleError:
            return self.fail(i, name, f"action {kind}: {problem}", kind)

        def template(text: Any, what: str) -> str:
            if not isinstance(text, str) or not text.strip():
                raise bad(f"{what} must be a non-empty string")
            try:
                parsed = [(f, spec or "") for _, f, spec, _ in string.Formatter().parse(text) if f is not None]
            except ValueError as exc:
                raise bad(f"{what}: bad template ({exc})") from None
            for f, spec in parsed:
                if "{" in spec:
                    raise bad(f"{what}: template field {{{f}}} has a nested field in its format")
                if f.split(".")[0] not in ("mention", "customer", "history") or "[" in f:
                    raise bad(f"{what}: template field {{{f}}} must start with mention., customer. or history.")
            return text

        if kind == "route":
            if not isinstance(arg, str) or not _QUEUE.match(arg):
                raise bad(f"queue must be a lower-case word, got {arg!r}")
            return {"kind": "route", "queue": arg}
        if kind == "priority":
            if arg not in PRIORITIES:
                raise bad(f"must be one of {', '.join(PRIORITIES)}, got {arg!r}")
            return {"kind": "priority", "priority": arg}
        if kind == "tag":
            tags = [arg] if isinstance(arg, str) else arg
            if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
                raise bad("tag must be a string or a list of strings")
            return {"kind": "tag", "tags": [t.strip() for t in tags]}
        if kind == "task":
            spec = {"title": arg} if isinstance(arg, str) else arg
            if not isinstance(spec, dict):
                raise bad("expected a title or a table {title, queue, due_minutes}")
            extra = set(spec) - {"title", "queue", "due_minutes"}
            if extra:
                raise bad(f"unknown field(s) {', '.join(sorted(extra))}")
            queue = spec.get("queue", "service")
            if not isinstance(queue, str) or not _QUEUE.match(queue):
                raise bad(f"queue must be a lower-case word, got {queue!r}")
            due = spec.get("due_minutes", 1440)
            if isinstance(due, bool) or not isinstance(due, int | float) or due <= 0:
                raise bad(f"due_minutes must be a number > 0, got {due!r}")
            return {"kind": "task", "title": template(spec.get("title"), "title"), "queue": queue,
                    "due_minutes": float(due)}
        if kind == "outbox":
            spec = {"text": arg} if isinstance(arg, str) else arg
            if not isinstance(spec, dict):
                raise bad("expected a text or a table {text, private, channel}")
            extra = set(spec) - {"text", "private", "channel"}
            if extra:
                raise bad(f"unknown field(s) {', '.join(sorted(extra))}")
            if not isinstance(spec.get("private", False), bool):
                raise bad("private must be true or false")
            channel = spec.get("channel")
            if channel is not None and (not isinstance(channel, str) or not _QUEUE.match(channel)):
                raise bad(f"channel must be a channel name, got {channel!r}")
            return {"kind": "outbox", "text": template(spec.get("text"), "text"),
                    "private": bool(spec.get("private", False)), "channel": channel}
        if kind == "webhook":
            spec = {"url": arg} if isinstance(arg, str) else arg
            if not isinstance(spec, dict):
                raise bad("expected a URL or a table {url, event}")
            extra = set(spec) - {"url", "event"}
            if extra:
                raise bad(f"unknown field(s) {', '.join(sorted(extra))}")
            url = spec.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise bad(f"url must be an http(s) URL, got {url!r}")
            event = spec.get("event", name)
            if not isinstance(event, str):
                raise bad("event must be a string")
            return {"kind": "webhook", "url": url, "event": event}
        # alert
        spec = {"message": arg} if isinstance(arg, str) else arg
        if not isinstance(spec, dict):
            raise bad("expected a message or a table {severity, message}")
        extra = set(spec) - {"severity", "message"}
        if extra:
            raise bad(f"unknown field(s) {', '.join(sorted(extra))}")
        severity = spec.get("severity", "medium")
        if severity not in _SEVERITIES:
            raise bad(f"severity must be one of {', '.join(_SEVERITIES)}, got {severity!r}")
        return {"kind": "alert", "severity": severity,
                "message": template(spec.get("message", f"rule {name} matched"), "message")}


def _check_arg(op: str, arg: Any) -> str | None:
    if op in ("in", "not_in", "contains_any"):
        if not isinstance(arg, list) or not arg:
            return "expected a non-empty list"
    elif op in ("gt", "gte", "lt", "lte"):
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            return f"expected a number, got {arg!r}"
    elif op == "matches":
        if not isinstance(arg, str):
            return "expected a regular expression string"
        try:
            re.compile(arg)
        except re.error as exc:
            return f"bad regular expression ({exc})"
    elif op == "exists":
        if not isinstance(arg, bool):
            return "expected true or false"
    elif isinstance(arg, dict | list) and op in ("eq", "ne"):
        return "expected a single value"
    return None


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys may be quoted ("customer.tier") or TOML-nested (customer.tier); both become one path."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and not (set(value) & set(_OPS)):
            out.extend(_flatten(value, path))
        else:
            out.append((path, value))
    return out
