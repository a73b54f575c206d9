"""The data scientists' page (AppTest) on prequential metrics the real flow wrote to a real Redis."""

from __future__ import annotations

import orjson
import pytest
import redis
from bytewax.testing import TestingSource, run_main
from streamlit.testing.v1 import AppTest

from connectors.records import RawRecord
from stream.flow import build_flow
from stream.keys import Keys
from stream.learning import flush_all
from stream.settings import Settings
from stream.sinks import RedisSink

PAGE = """
import sys
sys.path.insert(0, {root!r})
from dashboard.data import DashboardSettings
from dashboard import models_page
models_page.render(DashboardSettings.from_env())
"""


def _run(rows: list[dict], redis_url: str, prefix: str) -> None:
    records = [RawRecord("models-page", i, orjson.dumps(x), "jsonl") for i, x in enumerate(rows)]
    run_main(build_flow(TestingSource(records), Settings(prefix=prefix, flush_seconds=0.05, checkpoint_every=1),
                        RedisSink(redis_url, Keys(prefix)), redis_url=redis_url))
    flush_all()  # as `pulse` does at the end of a run


def test_models_page_shows_prequential_scores_and_confusion(monkeypatch: pytest.MonkeyPatch, r: redis.Redis,
                                                             redis_url: str, key_prefix: str) -> None:
    from pathlib import Path

    mentions = [{"id": f"forum:{i}", "channel": "forum", "brand": "acme", "author": f"u{i}",
                 "text": "the update broke my login" if i % 2 else "thanks for the quick fix",
                 "ts": 1_704_103_200_000 + i * 1000} for i in range(6)]
    _run(mentions, redis_url, key_prefix)
    _run([{"type": "feedback", "mention_id": f"forum:{i}", "model": "sentiment",
           "label": "negative" if i % 2 else "positive"} for i in range(6)], redis_url, key_prefix)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60).run()
    assert not at.exception
    tables = [t.value for t in at.dataframe]
    scores = next(t for t in tables if "macro_f1" in t.columns)
    overall = scores[(scores["model"] == "sentiment") & (scores["channel"] == "all")].iloc[0]
    assert overall["n_labels"] == 6 and overall["n_predictions"] == 6
    assert 0.0 <= overall["accuracy"] <= 1.0 and overall["version"] >= 1
    confusion = next(t for t in tables if t.index.name == "label \\ predicted")
    assert set(confusion.index) == {"negative", "positive"} and int(confusion.values.sum()) == 6
    assert not [w for w in at.warning if "No labels have arrived yet" in w.value]
    # the prediction mix per window (drift tab) counts the six sentiment predictions the flow made
    assert len(at.get("vega_lite_chart")) >= 2


def test_models_page_waits_for_data(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    from pathlib import Path

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60).run()
    assert not at.exception
    assert any("No model metrics yet" in str(i.value) for i in at.info)


def test_models_page_compares_versions_rolls_back_and_labels(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                            demo_copy: tuple[str, list[dict]]) -> None:
    import orjson
    from page_testkit import assert_no_markup_from_users, run_page, table

    from models import registry
    from stream.audit import recent_actions

    prefix, _ = demo_copy
    client = redis.Redis.from_url(redis_url)
    at = run_page(monkeypatch, redis_url, prefix, "models_page")
    assert not at.exception
    # no labels in the demo: the zeros are explained, not shown as a result
    assert any("No labels have arrived yet" in w.value for w in at.warning)
    versions = table(at, "current")
    assert list(versions["version"]) == [1, 2] and list(versions["current"]) == [False, True]
    assert list(versions["metrics.accuracy"]) == [0.62, 0.71]
    side = table(at, "field").set_index("field")
    assert side.loc["metrics.accuracy", "v1"] == "0.62" and side.loc["metrics.accuracy", "v2"] == "0.71"
    assert any("Sign in (sidebar) to roll back models" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Roll back"]
    sample = table(at, "confidence")
    assert len(sample) == 20 and list(sample["confidence"]) == sorted(sample["confidence"])
    assert_no_markup_from_users(at)

    at = run_page(monkeypatch, redis_url, prefix, "models_page", user="dana")
    at.checkbox(key="mdl_rb_ok").check().run()
    at.button(key="mdl_rb").click().run()
    assert not at.exception
    assert registry.info(client, prefix, "sentiment")["version"] == 1
    assert any("sentiment is now version 1" in s.value for s in at.success)
    assert table(at, "current").set_index("version").loc[1, "current"]

    # label the two least sure mentions
    editor = at.data_editor
    assert editor, "the label editor is shown to a signed-in user"
    sample = table(at, "confidence")
    ids = list(sample["id"][:2])
    at.session_state["mdl_labels_sentiment"] = {"edited_rows": {0: {"label": "negative"}, 1: {"label": "positive"}},
                                                "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="mdl_send").click().run()
    assert not at.exception
    sent = [orjson.loads(f[b"payload"]) for _, f in client.xrange(f"{prefix}feedback")]
    assert [(x["mention_id"], x["label"], x["author"]) for x in sent] == [(ids[0], "negative", "dana"),
                                                                          (ids[1], "positive", "dana")]
    actions = [(e.user, e.action) for e in recent_actions(client, Keys(prefix))]
    assert ("dana", "model.label") in actions and ("dana", "model.rollback") in actions
