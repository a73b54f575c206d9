"""Customers ("what I know"): the typed customer record and the idempotent CSV/Parquet import.

A customer file has one row per customer: ``customer_id`` (or ``id``), ``name``, ``email``, ``phone``,
``tier``, ``value``, ``tenure_months``, ``products`` (``;``/``,``/``|`` separated, or a list column in
Parquet) and known social handles, either as a column per channel (``twitter``, ``instagram``,
``twitter_handle``, …) or one ``handles`` column of ``channel:handle`` items. The email address is also
linked as the customer's handle on the ``email`` channel unless another customer has it (then the
report carries a warning instead). Other columns are kept as extra fields.

Rows that cannot be stored are rejected with their line and reason; nothing about them is written:
a missing id, a duplicate id, a handle that two rows claim, a handle already linked to another
customer, a non-numeric value or tenure. Handles owned by a prospect profile merge the prospect in.

>>> rec = customer_from_hash({"id": "c1", "kind": "customer", "tier": "gold", "value": "120.5",
...                           "products": '["A", "B"]', "mentions": "3", "sentiment_sum": "-0.6"})
>>> rec["value"], rec["products"], rec["mentions"], rec["mean_sentiment"]
(120.5, ['A', 'B'], 3, -0.2)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from crm.errors import CustomerImportError
from crm.identity import normalize_handle
from crm.store import CrmStore

__all__ = [
    "CRM_FIELDS",
    "ImportReport",
    "RejectedRow",
    "customer_from_hash",
    "import_customers",
    "influence_score",
    "read_customer_file",
]

log = logging.getLogger(__name__)

#: Fields the import owns (the stream owns counters, churn risk and influence).
CRM_FIELDS = ("name", "email", "phone", "tier", "value", "tenure_months", "products")

_ALIASES = {
    "id": "customer_id", "customer": "customer_id", "customerid": "customer_id", "customer_id": "customer_id",
    "name": "name", "full_name": "name",
    "email": "email", "e-mail": "email", "email_address": "email",
    "phone": "phone", "phone_number": "phone", "mobile": "phone",
    "tier": "tier", "segment": "tier", "level": "tier",
    "value": "value", "ltv": "value", "lifetime_value": "value", "customer_value": "value",
    "tenure": "tenure_months", "tenure_months": "tenure_months",
    "products": "products", "products_bought": "products", "product": "products",
    "handles": "handles", "social_handles": "handles",
}
#: Channels whose column holds a handle (``twitter`` or ``twitter_handle``).
HANDLE_CHANNELS = ("twitter", "facebook", "instagram", "linkedin", "review", "forum", "blog", "tiktok", "youtube")

_INT_FIELDS = ("tenure_months", "mentions", "negative", "neutral", "positive", "queries", "reach", "followers",
               "cases_total", "cases_open", "last_seen_ms", "first_seen_ms", "churn_ts")
_FLOAT_FIELDS = ("value", "churn_risk", "sentiment_sum")


def influence_score(followers: int | None, reach: int) -> float:
    """Influence in [0, 1]: log-scaled followers where the source gives them, else mention reach.

    >>> influence_score(1_000_000, 0), influence_score(None, 9), influence_score(None, 0)
    (1.0, 0.1667, 0.0)
    """
    base = followers if followers is not None and followers > 0 else reach
    return round(min(1.0, math.log10(1 + max(0, base)) / 6.0), 4)


def customer_from_hash(h: dict[str, str]) -> dict[str, Any]:
    """A typed customer (or prospect) record from its stored string hash."""
    rec: dict[str, Any] = dict(h)
    for name in _INT_FIELDS:
        if name in rec:
            try:
                rec[name] = int(float(rec[name])) if rec[name] != "" else None
            except ValueError:
                rec[name] = None
    for name in _FLOAT_FIELDS:
        if name in rec:
            try:
                rec[name] = float(rec[name]) if rec[name] != "" else None
            except ValueError:
                rec[name] = None
    products = rec.get("products")
    if isinstance(products, str):
        try:
            rec["products"] = orjson.loads(products) if products.startswith("[") else _split(products)
        except orjson.JSONDecodeError:
            rec["products"] = _split(products)
    rec.setdefault("products", [])
    rec.setdefault("kind", "customer")
    mentions = rec.get("mentions") or 0
    rec["mentions"] = mentions
    rec["mean_sentiment"] = round((rec.get("sentiment_sum") or 0.0) / mentions, 4) if mentions else 0.0
    rec.setdefault("churn_risk", 0.0)
    rec["churn_risk"] = rec["churn_risk"] or 0.0
    rec["influence"] = influence_score(rec.get("followers"), rec.get("reach") or 0)
    return rec


def _split(text: str) -> list[str]:
    for sep in (";", "|", ","):
        if sep in text:
            return [p.strip() for p in text.split(sep) if p.strip()]
    return [text.strip()] if text.strip() else []


@dataclass(slots=True)
class RejectedRow:
    """One row the import refused, with where it was and why.

    >>> RejectedRow(line=3, customer_id="", reason="missing customer_id").describe()
    'line 3: missing customer_id'
    """

    line: int
    customer_id: str
    reason: str

    def describe(self) -> str:
        who = f" (customer {self.customer_id})" if self.customer_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    """What an import did: rows read, customers created/updated, handles linked, prospects merged, rejects.

    >>> ImportReport(rows=2, created=1, rejected=[RejectedRow(3, "", "missing customer_id")]).ok
    False
    """

    rows: int = 0
    created: int = 0
    updated: int = 0
    handles: int = 0
    merged_prospects: list[str] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    #: Things stored differently than asked, e.g. an email shared by two customers is not linked as a handle.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "created": self.created, "updated": self.updated, "handles": self.handles,
            "merged_prospects": self.merged_prospects,
            "rejected": [{"line": r.line, "customer_id": r.customer_id, "reason": r.reason} for r in self.rejected],
            "warnings": self.warnings,
        }


def read_customer_file(path: str | Path) -> pl.DataFrame:
    """Read a ``.csv`` or ``.parquet`` customer file with every column as text (lists kept as lists)."""
    p = Path(path)
    if not p.is_file():
        raise CustomerImportError(f"customer file {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(p, infer_schema=False, truncate_ragged_lines=False)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(p)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise CustomerImportError(f"customer file {p}: cannot read it ({str(exc).splitlines()[0]})") from None
    raise CustomerImportError(f"customer file {p}: unsupported format {suffix!r} (use .csv or .parquet)")


def _columns(df: pl.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Map file columns to CRM fields and to handle channels."""
    fields: dict[str, str] = {}
    handles: dict[str, str] = {}
    for col in df.columns:
        norm = col.strip().lower().replace(" ", "_")
        if norm in _ALIASES and _ALIASES[norm] not in fields.values():
            fields[col] = _ALIASES[norm]
            continue
        for ch in HANDLE_CHANNELS:
            if norm in (ch, f"{ch}_handle", f"handle_{ch}", f"{ch}_id"):
                handles[col] = ch
                break
        else:
            fields[col] = norm
    return fields, handles


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return str(value).strip()


def _parse_row(row: dict[str, Any], fields: dict[str, str], handle_cols: dict[str, str]) -> tuple[str, dict[str, str], list[str]]:
    """(customer id, CRM fields as strings, ``channel:handle`` list); raises ValueError with the reason."""
    out: dict[str, str] = {}
    handles: list[str] = []
    cid = ""
    for col, name in fields.items():
        raw = row.get(col)
        if name == "customer_id":
            cid = _text(raw)
        elif name == "products":
            items = [str(v).strip() for v in raw if str(v).strip()] if isinstance(raw, list | tuple) else _split(_text(raw))
            out["products"] = orjson.dumps(items).decode()
        elif name == "handles" and isinstance(raw, dict):
            for channel, handle in raw.items():
                if handle is not None and str(handle).strip():
                    handles.append(f"{str(channel).strip().lower()}:{normalize_handle(str(handle))}")
        elif name == "handles":
            text = _text(raw)
            for item in _split(text) if text else []:
                channel, sep, handle = item.partition(":")
                if not sep or not channel.strip() or not handle.strip():
                    raise ValueError(f"handles: {item!r} is not channel:handle")
                handles.append(f"{channel.strip().lower()}:{normalize_handle(handle)}")
        elif name == "value":
            text = _text(raw)
            if text:
                try:
                    number = float(text)
                except ValueError:
                    raise ValueError(f"value: not a number {text!r}") from None
                if math.isnan(number) or number < 0:
                    raise ValueError(f"value: must be a number >= 0, got {text!r}")
                out["value"] = repr(number)
        elif name == "tenure_months":
            text = _text(raw)
            if text:
                try:
                    out["tenure_months"] = str(int(float(text)))
                except ValueError:
                    raise ValueError(f"tenure_months: not a number {text!r}") from None
        elif name == "tier":
            text = _text(raw).lower()
            if text:
                out["tier"] = text
        else:
            text = _text(raw)
            if text:
                out[name] = text
    if not cid:
        raise ValueError("missing customer_id")
    if any(c in cid for c in " \t\r\n"):
        raise ValueError(f"customer_id {cid!r} contains whitespace")
    for col, channel in handle_cols.items():
        text = _text(row.get(col))
        for h in _split(text) if text else []:
            handle = normalize_handle(h)
            if handle:
                handles.append(f"{channel}:{handle}")
    return cid, out, list(dict.fromkeys(handles))


def _email_handle(fields: dict[str, str]) -> str | None:
    email = fields.get("email")
    return f"email:{normalize_handle(email)}" if email and "@" in email else None


def import_customers(store: CrmStore, source: str | Path | pl.DataFrame, *, now_ms: int, keep: int = 50,
                     batch: int = 1000, progress: Any = None) -> ImportReport:
    """Import customers idempotently; returns the report (rows rejected with line and reason).

    ``now_ms`` stamps prospect merges; ``progress(n)`` is called after each stored batch.
    Line numbers count the CSV header as line 1 (for Parquet: row number + 1, the same arithmetic).
    """
    df = source if isinstance(source, pl.DataFrame) else read_customer_file(source)
    fields, handle_cols = _columns(df)
    if "customer_id" not in fields.values():
        raise CustomerImportError(
            f"customer file has no id column (expected customer_id or id; found {', '.join(df.columns) or 'none'})"
        )
    report = ImportReport(rows=df.height)
    parsed: list[tuple[int, str, dict[str, str], list[str]]] = []
    first_line: dict[str, int] = {}
    claims: dict[str, list[tuple[int, str]]] = {}
    for i, row in enumerate(df.iter_rows(named=True)):
        line = i + 2
        try:
            cid, out, handles = _parse_row(row, fields, handle_cols)
        except ValueError as exc:
            report.rejected.append(RejectedRow(line, _text(row.get(_id_col(fields))), str(exc)))
            continue
        if cid in first_line:
            report.rejected.append(RejectedRow(line, cid, f"duplicate customer_id (first at line {first_line[cid]})"))
            continue
        first_line[cid] = line
        parsed.append((line, cid, out, handles))
        for h in handles:
            claims.setdefault(h, []).append((line, cid))
    # an email is linked as the customer's handle on the email channel only when no one else shares it
    emails: dict[str, list[int]] = {}
    for n, (_line, _cid, out, _handles) in enumerate(parsed):
        email = _email_handle(out)
        if email and email not in claims:
            emails.setdefault(email, []).append(n)
    soft: dict[str, str] = {}
    for h, rows_with in emails.items():
        if len({parsed[n][1] for n in rows_with}) == 1:
            soft[parsed[rows_with[0]][1]] = h
        else:
            who = ", ".join(f"{parsed[n][1]} (line {parsed[n][0]})" for n in rows_with)
            report.warnings.append(f"{h} is shared by customers {who}: not linked as a handle")
    # a social handle two customers claim is ambiguous: neither row is trusted with it
    disputed: dict[str, str] = {}
    for h, owners in claims.items():
        if len({c for _, c in owners}) > 1:
            who = " and ".join(f"{c} (line {ln})" for ln, c in owners)
            for _, c in owners:
                disputed.setdefault(c, f"handle {h} is claimed by customers {who}")
    rows = []
    for line, cid, out, handles in parsed:
        if cid in disputed:
            report.rejected.append(RejectedRow(line, cid, disputed[cid]))
        else:
            rows.append((line, cid, out, handles))
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        results = store.import_customers([(c, f, h, [soft[c]] if c in soft else []) for _, c, f, h in chunk],
                                         now_ms, keep)
        for (line, cid, _out, handles), (status, detail) in zip(chunk, results, strict=True):
            if status == "created":
                report.created += 1
            elif status == "updated":
                report.updated += 1
            else:
                report.rejected.append(RejectedRow(line, cid, str(detail)))
                continue
            merged, linked_soft, skipped = detail
            report.handles += len(handles) + linked_soft
            report.merged_prospects.extend(merged)
            report.warnings.extend(f"line {line} (customer {cid}): {h} belongs to customer {owner}: not linked"
                                   for h, owner in skipped)
        if progress is not None:
            progress(len(chunk))
    report.rejected.sort(key=lambda r: r.line)
    log.info("customer import: %d rows, %d created, %d updated, %d rejected", report.rows, report.created,
             report.updated, len(report.rejected))
    return report


def _id_col(fields: dict[str, str]) -> str:
    return next((c for c, n in fields.items() if n == "customer_id"), "")
