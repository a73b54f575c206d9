"""Call deflection from the call-centre feed and social answers, on a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from stream.keys import Keys
from stream.metrics import call_deflection, snapshot
from stream.schema import CallVolume
from stream.sinks import RedisWriter
from stream.windows import COUNTERS

T0 = datetime(2024, 3, 4, tzinfo=UTC)


def _hour_window(brand: str, hour: int, answers: int) -> tuple:
    counters = dict.fromkeys(COUNTERS, 0) | {"mentions": 50, "response_count": answers}
    start = int((T0 + timedelta(hours=hour)).timestamp() * 1000)
    return ("windows", brand, "twitter", [("h", start, counters, [], True)])


def test_calls_drop_while_social_answers_grow_is_deflection(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    items: list[tuple] = []
    calls_per_hour = [100] * 24 + [60, 60]  # hour 24: answers grow; hour 25: they do not
    answers_per_hour = [10] * 24 + [30, 2]
    for hour, (calls, answers) in enumerate(zip(calls_per_hour, answers_per_hour, strict=True)):
        for quarter in range(4):
            ts = T0 + timedelta(hours=hour, minutes=15 * quarter)
            items.append(("calls", CallVolume(ts=ts, queue="billing", calls=calls // 4, brand="acme")))
        items.append(_hour_window("acme", hour, answers))
    items.append(("windows", "acme", "twitter", [("d", int(T0.timestamp() * 1000), dict.fromkeys(COUNTERS, 0), [],
                                                 True)]))
    RedisWriter(r, keys).write(items)
    result = call_deflection(r, keys)["acme"]
    by_hour = {h["hour"]: h for h in result["hours"]}
    grown = by_hour[(T0 + timedelta(hours=24)).isoformat()]
    assert grown["baseline"] == pytest.approx(100) and grown["deflection"] == pytest.approx(0.4)
    flat = by_hour[(T0 + timedelta(hours=25)).isoformat()]
    assert flat["deflection"] == 0.0  # calls fell, but not because social answered more
    assert by_hour[T0.isoformat()]["deflection"] is None  # no baseline yet
    assert result["calls"] == sum(calls_per_hour)
    assert result["deflection_rate"] == pytest.approx(0.4 / 25)
    assert snapshot(r, keys)["brands"]["acme"]["calls"]["calls"] == sum(calls_per_hour)
