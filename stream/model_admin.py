"""Model versions as operators see them: what each version was trained on and scored, and rollback.

The service functions that ``pulse models`` and the dashboard's Models page share (ARCHITECTURE: every
action goes through one function in ``stream/``). A running flow follows a rollback within a few
seconds (``stream.learning.ModelHost``).

>>> import os, redis as r_
>>> from stream.redisconn import ensure_redis_url
>>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
>>> model_versions(client, "doctest:admin:nothing:")
[]
"""

from __future__ import annotations

from typing import Any

from models import registry
from models.classifiers import TEXT_MODELS

__all__ = ["model_versions", "rollback_model"]


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


def rollback_model(client: Any, prefix: str, name: str, version: int | None = None,
                   reason: str = "cli") -> dict[str, Any]:
    """Serve an earlier version of ``name`` (the one before the current, or ``version``).

    Returns ``{"model", "version", "previous"}``; :class:`LookupError` names what is missing.
    """
    before = registry.current_version(client, prefix, name)
    if before is None and registry.info(client, prefix, name) is None:
        raise LookupError(f"model {name!r} has no checkpoints (it serves its default)")
    now = registry.rollback(client, prefix, name, version, reason=reason)
    return {"model": name, "version": now, "previous": before}
