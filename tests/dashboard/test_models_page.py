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
    from page_testkit import assert_no_markup_from_users, rendered, run_page, table

    from models import registry
    from stream.audit import recent_actions

    prefix, _ = demo_copy
    client = redis.Redis.from_url(redis_url)
    at = run_page(monkeypatch, redis_url, prefix, "models_page")
    assert not at.exception
    assert not at.exception
    # no labels in the demo: the zeros are explained, not shown as a result
    assert any("No labels have arrived yet" in w.value for w in at.warning)
    # every version with its provenance and scores, as `pulse models list` (stream.model_admin) has them
    from dashboard_seed import MODEL_DRIFT, SENTIMENT_VERSIONS

    from stream.model_admin import model_versions

    [meta] = model_versions(client, prefix, "sentiment")
    versions = table(at, "current", "trained on")
    assert list(versions["version"]) == [v["version"] for v in meta["versions"]] == [1, 2]
    assert list(versions["current"]) == [False, True]
    assert list(versions["trained on"]) == ["Tweets.csv (14640 rows, sha256 5e1d0c4a5e1d)",
                                            "sanders.csv (3424 rows, sha256 a3b2c1d0a3b2)"]
    assert list(versions["started from"]) == [p["started_from"] for _, p in SENTIMENT_VERSIONS]
    assert versions.loc[1, "label map"] == "irrelevant=neutral"
    assert versions.loc[1, "lineage"] == "Tweets.csv (14640 rows, sha256 5e1d0c4a5e1d); sanders.csv (3424 rows, " \
        "sha256 a3b2c1d0a3b2)"
    assert versions.loc[0, "score: train_prequential_accuracy"] == 0.62 and versions.loc[1, "score: accuracy"] == 0.71
    side = table(at, "field", "differs").set_index("field")
    assert side.loc["score: train_prequential_accuracy", "v1"] == "0.62"
    assert side.loc["score: accuracy", "v2"] == "0.71" and side.loc["score: accuracy", "v1"] == "–"
    assert side.loc["trained on", "differs"] and not side.loc["made by", "differs"]
    # the drift guard's alert, in the drift view
    drift = table(at, "error before", "error after")
    assert list(drift["id"]) == [MODEL_DRIFT] and list(drift["state"]) == ["open"]
    assert (drift.loc[0, "error before"], drift.loc[0, "error after"]) == (0.21, 0.52)
    assert any("Drift on sentiment" in w.value and "21 %" in w.value and "52 %" in w.value for w in at.warning)
    assert any("Sign in (sidebar) to roll back models" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Roll back"]
    sample = table(at, "confidence")
    assert len(sample) == 20 and list(sample["confidence"]) == sorted(sample["confidence"])
    assert_no_markup_from_users(at)

    at = run_page(monkeypatch, redis_url, prefix, "models_page", user="dana")
    at.checkbox(key="mdl_rb_ok").check().run()
    at.button(key="mdl_rb").click().run()
    assert not at.exception
    served = registry.info(client, prefix, "sentiment")
    assert (served["version"], served["rolled_back_from"], served["rolled_back_reason"]) == (1, 2, "dashboard")
    assert any("sentiment is now version 1 (was 2)" in rendered(s.value) for s in at.success)
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
    actions = [(e.user, e.action, e.detail) for e in recent_actions(client, Keys(prefix))]
    assert ("dana", "model.rollback", {"from": 2, "to": 1}) in actions
    assert ("dana", "model.label") in [a[:2] for a in actions]
