"""The CRM's settings in one object: SLAs, assignment strategies, priority weights, link codes, retention.

Built once at the entry point (defaults, or a TOML file such as ``crm/data/crm.toml``) and passed down.

>>> s = CrmSettings()
>>> s.strategy_for("service", "twitter"), s.strategy_for("pr", "blog")
('skill_based', 'round_robin')
>>> s.sla_minutes_for("twitter", "urgent")
15.0
>>> CrmSettings.from_dict({"assignment": {"default": "fastest"}})
Traceback (most recent call last):
...
crm.errors.CrmError: crm settings: assignment.default: unknown strategy 'fastest' (use least_loaded, round_robin, skill_based)
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.errors import CrmError

__all__ = ["PRIORITIES", "STRATEGIES", "CrmSettings"]

#: Case priorities, most urgent first.
PRIORITIES = ("urgent", "high", "medium", "low")
#: Auto-assignment strategies (see :mod:`crm.assignment`).
STRATEGIES = ("least_loaded", "round_robin", "skill_based")

_DEFAULT_SLA: dict[str, dict[str, float]] = {
    "*": {"urgent": 30.0, "high": 60.0, "medium": 240.0, "low": 1440.0},
    "twitter": {"urgent": 15.0, "high": 30.0, "medium": 120.0, "low": 720.0},
    "facebook": {"urgent": 15.0, "high": 60.0, "medium": 180.0, "low": 720.0},
    "instagram": {"urgent": 15.0, "high": 60.0, "medium": 180.0, "low": 720.0},
    "email": {"urgent": 60.0, "high": 240.0, "medium": 1440.0, "low": 2880.0},
    "review": {"urgent": 120.0, "high": 480.0, "medium": 1440.0, "low": 2880.0},
}
_DEFAULT_ASSIGNMENT: dict[str, str] = {"default": "least_loaded", "service": "skill_based", "pr": "round_robin"}
_DEFAULT_TIERS: dict[str, float] = {"platinum": 1.0, "gold": 0.8, "silver": 0.5, "bronze": 0.25, "basic": 0.1}
_DEFAULT_WEIGHTS: dict[str, float] = {"negativity": 0.35, "value": 0.25, "churn": 0.25, "influence": 0.15}
_DEFAULT_THRESHOLDS: dict[str, float] = {"urgent": 0.6, "high": 0.4, "medium": 0.2}


@dataclass(frozen=True, slots=True)
class CrmSettings:
    """Every knob of the CRM; plain values so the object pickles and prints.

    >>> CrmSettings(prefix="t:").with_changes(link_code_ttl_hours=1.0).link_code_ttl_hours
    1.0
    """

    #: Prefix of every key (shared with the flow's keys).
    prefix: str = "pulse:"
    #: First/next response SLA in minutes, per channel (``*`` = any other channel) and priority.
    sla_minutes: dict[str, dict[str, float]] = field(default_factory=lambda: dict(_DEFAULT_SLA))
    #: An ``sla_breach`` warning fires when this fraction of the SLA is left; a second alert at the deadline.
    sla_warn_fraction: float = 0.2
    #: Strategy per ``queue/channel``, ``queue``, ``channel`` or ``default`` (first match wins).
    assignment: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_ASSIGNMENT))
    #: Customer value by tier, in [0, 1]; a customer without tier uses ``value / value_scale``.
    tier_values: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_TIERS))
    #: Customer ``value`` that counts as the top of the scale.
    value_scale: float = 10_000.0
    #: Weights of the priority score's parts (negativity, customer value, churn risk, influence).
    priority_weights: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    #: Lowest priority score for urgent / high / medium (anything below is low).
    priority_thresholds: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_THRESHOLDS))
    #: Intents that open a case.
    case_intents: tuple[str, ...] = ("query",)
    #: Departments (queues) the department model predicts; rules may route to any other queue name.
    departments: tuple[str, ...] = ("service", "sales", "marketing", "pr")
    #: How long a value-exchange link code stays valid.
    link_code_ttl_hours: float = 168.0
    #: Prefix of link codes in text (``LINK-7KQ2MX9D``).
    link_code_prefix: str = "LINK"
    #: Recent mentions kept per customer (history for Customer 360 and rules).
    history_keep: int = 50
    #: How many of them rules see as ``history.recent_*``.
    rules_history: int = 10
    #: How long (seconds of event time behind the CRM's newest mention) the outcome of a processed mention is
    #: kept so replays do nothing twice (about 150 bytes per mention without a case); 0 keeps it forever.
    processed_ttl_seconds: int = 7 * 86400
    #: A prospect profile (an unknown author: record, handles, history, tags, identity) is forgotten after this
    #: many days of event time without a mention, behind the CRM's newest mention; their next mention starts a
    #: new prospect. Prospects linked to a customer (merged) are kept with it. 0 keeps prospects forever.
    prospect_retention_days: float = 90.0
    #: KB suggestions per case and the weight of learned feedback against BM25.
    kb_top_k: int = 3
    kb_feedback_weight: float = 0.6
    #: Event time (ms) between automatic SLA scans while processing; 0 turns them off.
    auto_tick_ms: int = 60_000
    #: The automatic ticks delete keys past their event-time retention in sweeps: once the oldest of them is this
    #: many minutes past it, or a kind of key has a sweep's worth (1,000) past it (retired keys count as gone before
    #: they are deleted). An explicit tick sweeps at once.
    retention_sweep_minutes: float = 1440.0
    #: A replied case the customer has not written to again for this many minutes (event time) is resolved,
    #: freeing its agent's slot for the queue (checked with the SLA timers); 0: only agents resolve cases.
    auto_resolve_minutes: float = 1440.0
    #: A resolved case (hash, events, replies, tags, index entries) is deleted this many days (event time)
    #: after it was resolved, behind the CRM's newest mention; a follow-up in its thread after that opens a
    #: new case. 0 keeps resolved cases forever.
    case_retention_days: float = 365.0
    #: An unresolved case without activity (opened, a customer mention in its thread, a reply) for this many days
    #: of event time is closed with status ``expired`` (event ``expired``, counted in ``cases:stats``, its agent's
    #: slot freed; a follow-up opens a new case), as help desks auto-close stale tickets. 0: cases wait forever.
    stale_case_days: float = 30.0
    #: A rule task is deleted this many days (event time) after it was due, behind the CRM's newest mention;
    #: 0 keeps tasks forever.
    task_retention_days: float = 90.0
    #: Author shown on replies per brand (``brand -> handle``); the brand name when absent.
    brand_handles: dict[str, str] = field(default_factory=dict)

    def strategy_for(self, queue: str, channel: str) -> str:
        """The assignment strategy for a case in ``queue`` that came from ``channel``."""
        a = self.assignment
        return a.get(f"{queue}/{channel}") or a.get(queue) or a.get(channel) or a.get("default", "least_loaded")

    def sla_minutes_for(self, channel: str, priority: str) -> float:
        table = self.sla_minutes.get(channel) or self.sla_minutes.get("*") or _DEFAULT_SLA["*"]
        return float(table.get(priority, _DEFAULT_SLA["*"][priority]))

    def sla_ms_table(self, channel: str) -> dict[str, int]:
        """Milliseconds of SLA per priority for one channel."""
        return {p: int(self.sla_minutes_for(channel, p) * 60_000) for p in PRIORITIES}

    def brand_handle(self, brand: str) -> str:
        return self.brand_handles.get(brand, brand)

    def with_changes(self, **changes: Any) -> CrmSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "crm settings") -> CrmSettings:
        """Settings from a mapping shaped like the TOML file; unknown keys and bad values are errors."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name == "sla":  # the TOML groups ``[sla] minutes / warn_fraction``
                if not isinstance(value, Mapping):
                    raise CrmError(f"{where}: sla: expected a table")
                for sub, v in value.items():
                    target = {"minutes": "sla_minutes", "warn_fraction": "sla_warn_fraction"}.get(sub)
                    if target is None:
                        raise CrmError(f"{where}: sla.{sub}: unknown setting")
                    values[target] = v
                continue
            if name not in names:
                raise CrmError(f"{where}: unknown setting {key!r}")
            values[name] = value
        base = cls()
        merged = {f: getattr(base, f) for f in names}
        for name, value in values.items():
            merged[name] = _coerce(name, value, merged[name], where)
        settings = cls(**merged)
        settings._validate(where)
        return settings

    @classmethod
    def from_toml(cls, path: str | Path) -> CrmSettings:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CrmError(f"crm settings file {p} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CrmError(f"crm settings file {p}: {exc}") from None
        return cls.from_dict(data.get("crm", data), where=str(p))

    def _validate(self, where: str) -> None:
        for key, strategy in self.assignment.items():
            if strategy not in STRATEGIES:
                raise CrmError(
                    f"{where}: assignment.{key}: unknown strategy {strategy!r} (use {', '.join(STRATEGIES)})"
                )
        for channel, table in self.sla_minutes.items():
            if not isinstance(table, Mapping):
                raise CrmError(f"{where}: sla.minutes.{channel}: expected a table of priority = minutes")
            for prio, minutes in table.items():
                if prio not in PRIORITIES:
                    raise CrmError(f"{where}: sla.minutes.{channel}.{prio}: unknown priority")
                if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
                    raise CrmError(f"{where}: sla.minutes.{channel}.{prio}: expected minutes > 0, got {minutes!r}")
        if not 0.0 <= self.sla_warn_fraction < 1.0:
            raise CrmError(f"{where}: sla.warn_fraction must be in [0, 1), got {self.sla_warn_fraction}")
        for name, v in self.priority_thresholds.items():
            if name not in ("urgent", "high", "medium"):
                raise CrmError(f"{where}: priority_thresholds.{name}: unknown priority")
            if not isinstance(v, int | float):
                raise CrmError(f"{where}: priority_thresholds.{name}: expected a number")
        if self.link_code_ttl_hours <= 0:
            raise CrmError(f"{where}: link_code_ttl_hours must be > 0")
        if self.case_retention_days < 0:
            raise CrmError(f"{where}: case_retention_days must be >= 0 (0 keeps resolved cases)")
        for name in ("prospect_retention_days", "stale_case_days", "task_retention_days"):
            if getattr(self, name) < 0:
                raise CrmError(f"{where}: {name} must be >= 0 (0 keeps forever)")
        if self.retention_sweep_minutes < 0:
            raise CrmError(f"{where}: retention_sweep_minutes must be >= 0 (0 sweeps at every tick)")
        if self.auto_resolve_minutes < 0:
            raise CrmError(f"{where}: auto_resolve_minutes must be >= 0 (0 turns it off)")
        if self.history_keep < 1 or self.kb_top_k < 1 or self.rules_history < 1:
            raise CrmError(f"{where}: history_keep, rules_history and kb_top_k must be >= 1")


def _coerce(name: str, value: Any, default: Any, where: str) -> Any:
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise CrmError(f"{where}: {name}: expected a table")
        merged = dict(default)
        merged.update(value)
        return merged
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise CrmError(f"{where}: {name}: expected a list of strings")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise CrmError(f"{where}: {name}: expected true/false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CrmError(f"{where}: {name}: expected a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CrmError(f"{where}: {name}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise CrmError(f"{where}: {name}: expected a string, got {value!r}")
    return value
