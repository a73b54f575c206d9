"""Model versions as operators see them: what each version was trained on and scored, and rollback.

The service functions that ``pulse models`` and the dashboard's Models page share (ARCHITECTURE: every
action goes through one function in ``stream/``). A running flow follows a rollback within a few
seconds (``stream.learning.ModelHost``). A rollback made by a person (``user``) is recorded in the audit
trail, refused ones too.

>>> import os, redis as r_
>>> from stream.redisconn import ensure_redis_url
>>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
>>> model_versions(client, "doctest:admin:nothing:")
[]
>>> describe_files([{"default": True, "files": ["airline/Tweets.csv"]},
...                 {"name": "Tweets.csv", "rows_used": 14640, "sha256": "9f86d081884c7d659a2feaa0c55ad015"}])
'default warm start (airline/Tweets.csv); Tweets.csv (14640 rows, sha256 9f86d081884c)'
"""

from __future__ import annotations

from typing import Any

from models import registry
from models.classifiers import TEXT_MODELS
from stream.audit import check_user, record_action
from stream.keys import Keys

__all__ = ["describe_files", "model_versions", "rollback_model"]


def model_versions(client: Any, prefix: str, name: str | None = None) -> list[dict[str, Any]]:
    """One entry per checkpointed model (or just ``name``): the served version, rollback details, and every
    kept version with its provenance (files with sha256 and rows, label map, time), scores and size."""
    names = [name] if name else sorted(set(registry.list_models(client, prefix)) | set(TEXT_MODELS))
    out = []
    for n in names:
        meta = registry.info(client, prefix, n)
        if meta is None:
            continue
        out.append(meta)
    return out


def describe_files(files: Any) -> str:
    """The files a version was trained on, one phrase each: name, rows used and the start of the sha256."""
    parts = []
    for f in files or []:
        if not isinstance(f, dict):
            parts.append(str(f))
            continue
        if f.get("default"):  # the warm start of the default model, from the shipped data
            parts.append("default warm start" + (f" ({', '.join(str(x) for x in f['files'])})" if f.get("files") else ""))
            continue
        rows = f.get("rows_used", f.get("rows"))
        facts = [f"{rows} rows" if rows is not None else "", f"sha256 {str(f['sha256'])[:12]}" if f.get("sha256") else ""]
        detail = ", ".join(x for x in facts if x)
        parts.append(f"{f.get('name') or f.get('path') or '?'}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts)


def rollback_model(client: Any, prefix: str, name: str, version: int | None = None,
                   reason: str = "cli", user: str | None = None) -> dict[str, Any]:
    """Serve an earlier version of ``name`` (the one before the current, or ``version``).

    Returns ``{"model", "version", "previous"}``; :class:`LookupError` names what is missing. With ``user``
    (someone signed in, e.g. on the dashboard) the rollback, or its refusal, goes to the audit trail.
    """
    who = check_user(user) if user is not None else None
    before = registry.current_version(client, prefix, name)
    try:
        if name not in TEXT_MODELS and name not in registry.list_models(client, prefix):
            raise LookupError(f"unknown model {name!r}; expected one of {list(TEXT_MODELS)}")
        if before is None and registry.info(client, prefix, name) is None:
            raise LookupError(f"model {name!r} has no checkpoints (it serves its default)")
        now = registry.rollback(client, prefix, name, version, reason=reason)
    except LookupError as exc:
        if who is not None:
            record_action(client, Keys(prefix), who, "model.rollback", name, {"from": before, "to": version},
                          outcome=f"refused: {exc.args[0] if exc.args else exc}")
        raise
    if who is not None:
        record_action(client, Keys(prefix), who, "model.rollback", name, {"from": before, "to": now})
    return {"model": name, "version": now, "previous": before}
