"""Window decisions (late, final, closed minutes, passed SLAs) are made per item in input order."""

from __future__ import annotations

from stream.windows import WindowLogic

T0 = 1_704_103_200_000
MIN = 60_000


def _mention(ts: int, mid: str, intent: str = "comment") -> tuple:
    return ("mention", "acme", "twitter", ts, "bob", False, intent, "neutral", mid, (), "service")


def _late(logic: WindowLogic, items: list[tuple]) -> list[str]:
    return [o[3] for item in items for o in logic.on_item(item)[0] if o[0] == "late"]


def test_one_record_dated_years_ahead_does_not_make_the_records_after_it_late() -> None:
    logic = WindowLogic(6 * 3_600_000, MIN, 3_600_000, 0.0, None)
    items = [_mention(T0 + i * MIN, f"t:{i}") for i in range(10)]
    items.insert(5, _mention(T0 + 2 * 365 * 86_400_000, "t:typo"))
    assert _late(logic, items) == []
    assert logic.high_water == T0 + 9 * MIN and logic.jump is not None


def test_a_confirmed_jump_moves_the_watermark_and_finalises_old_windows() -> None:
    logic = WindowLogic(6 * 3_600_000, MIN, 3_600_000, 0.0, None)
    far = T0 + 90 * 86_400_000
    assert _late(logic, [_mention(T0, "t:0"), _mention(far, "t:1"), _mention(far + MIN, "t:2")]) == []
    assert logic.high_water == far + MIN
    assert _late(logic, [_mention(T0 + MIN, "t:old")]) == ["t:old"]  # its window is final: dead-lettered


def test_sla_checks_follow_the_event_time() -> None:
    logic = WindowLogic(6 * 3_600_000, MIN, 3_600_000, 0.0, None)
    out = logic.on_item(_mention(T0, "q:1", "query"))[0] + logic.on_item(_mention(T0 + 30 * MIN, "c:1"))[0]
    assert ("sla", "q:1") not in out
    assert ("sla", "q:1") in logic.on_item(_mention(T0 + 61 * MIN, "c:2"))[0]
