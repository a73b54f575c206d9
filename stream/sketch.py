"""Mergeable relative-error quantile sketches of response times (DDSketch, Masson et al., VLDB 2019).

A response time ``x > 0`` (ms) falls in bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; every value in bucket ``i`` lies in ``(gamma^(i-1), gamma^i]``, and the
bucket's representative ``2 gamma^i / (gamma + 1)`` is within ``alpha`` (1 %) of each of them. Zeros have
their own bucket (:data:`ZERO`). A sketch is just counts per bucket, so sketches of several windows merge
by adding counts, and a value is removed by subtracting one: the flow keeps one sketch per brand x channel
x hour and x day window in Redis (a hash ``bucket -> count``, written by the reply-matching Lua script,
which computes the same index as :func:`bucket_of`).

Quantiles interpolate linearly between the closest ranks, like polars' ``quantile(q, "linear")``: the
two order statistics around rank ``q (n - 1)`` are each estimated within 1 %, so their interpolation is
within 1 % of the exact interpolated quantile (all values are non-negative).

>>> values = [120_000, 240_000, 300_000, 3_600_000, 86_400_000]
>>> counts = {}
>>> for v in values:
...     counts[bucket_of(v)] = counts.get(bucket_of(v), 0) + 1
>>> exact, est = 300_000, quantile(counts, 0.5)
>>> abs(est - exact) / exact <= ALPHA
True
>>> quantile({}, 0.5) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["ALPHA", "GAMMA", "ZERO", "bucket_of", "merge", "quantile", "value_of"]

#: Relative accuracy of every quantile estimate.
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
#: The bucket of zero (a reply stamped at the same millisecond as its mention, or before it).
ZERO = "z"


def bucket_of(value_ms: float) -> str:
    """The bucket (a Redis hash field) a response time falls in.

    >>> bucket_of(0), bucket_of(1), bucket_of(1000)
    ('z', '0', '346')
    """
    if value_ms <= 0:
        return ZERO
    return str(math.ceil(math.log(value_ms) / _LOG_GAMMA))


def value_of(bucket: str) -> float:
    """The representative value of a bucket (within ``ALPHA`` of everything in it)."""
    if bucket == ZERO:
        return 0.0
    return 2 * GAMMA ** int(bucket) / (GAMMA + 1)


def merge(sketches: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The sketch of the union of the windows the sketches describe.

    >>> merge([{"z": 1, "3": 2}, {"3": 1, "4": 5}])
    {'z': 1, '3': 3, '4': 5}
    """
    out: dict[str, int] = {}
    for sketch in sketches:
        for bucket, n in sketch.items():
            out[bucket] = out.get(bucket, 0) + int(n)
    return out


def _order_statistic(ordered: list[tuple[float, int]], rank: int) -> float:
    seen = 0
    for value, n in ordered:
        seen += n
        if rank < seen:
            return value
    return ordered[-1][0]


def quantile(sketch: Mapping[str, int], q: float) -> float | None:
    """Linear-interpolated quantile ``q`` of the values a sketch counts (None when it is empty)."""
    ordered = sorted((value_of(b), int(n)) for b, n in sketch.items() if int(n) > 0)
    total = sum(n for _, n in ordered)
    if total == 0:
        return None
    pos = (total - 1) * q
    lo = int(pos)
    x_lo = _order_statistic(ordered, lo)
    x_hi = _order_statistic(ordered, min(lo + 1, total - 1))
    return x_lo + (x_hi - x_lo) * (pos - lo)
