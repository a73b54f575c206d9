"""The seed's insights in ``pulse metrics``, each against an independent computation over the same records.

One replay (CRM on, 30 imported customers) of four days of a brand's traffic on a third-party web and its own
forum, with agents' replies, feeds the checks of attraction rate, participation rate, behaviour after
interaction and first response in business hours; resolution and next response are checked on cases the
CRM opens and agents answer and resolve at known times.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pytest
import redis
from pulse_testkit import pulse

from crm import CrmProcessor, CrmSettings, make_store
from crm.assignment import Agent, add_agent
from crm.sla import iso_ms
from stream.keys import Keys
from stream.learning import ModelHost
from stream.metrics import snapshot
from stream.schema import Mention, parse_ts
from stream.service_desk import answer_case, close_case, desk_settings

DAY, MIN = 86_400_000, 60_000
D0 = int(datetime(2024, 5, 6, tzinfo=UTC).timestamp() * 1000)  # a Monday
LO, HI = D0 + DAY, D0 + 3 * DAY
GOOD = ("love the new update, great job", "thanks, that fixed it, you are awesome", "best support ever, happy now")
BAD = ("terrible service, still broken", "worst experience, i want a refund", "the app crashes again, so annoying")
HOURS = "acme=Europe/Berlin Mon-Fri 09:00-17:00"


def _rows(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    authors = [(f"c{i:02d}", "twitter") for i in range(30)] + [(f"p{i:02d}", rng.choice(["twitter", "forum"]))
                                                                 for i in range(30)]
    rows: list[dict] = []
    for n, (author, channel) in enumerate(authors):
        first_day = rng.randrange(4)  # some authors are new in the range, some came before
        for k in range(rng.randint(1, 5)):
            ts = D0 + rng.randrange(first_day * DAY, 4 * DAY)
            mid = f"{channel}:{n}-{k}"
            rows.append({"id": mid, "channel": channel, "owned": channel == "forum", "brand": "acme",
                         "author": author, "text": rng.choice(GOOD + BAD), "ts": ts})
            if rng.random() < 0.4:
                rows.append({"id": f"{mid}r", "channel": channel, "owned": channel == "forum", "brand": "acme",
                             "author": "AcmeCare", "text": "sorry about that, we're on it", "from_brand": True,
                             "in_reply_to": mid, "ts": ts + rng.randint(5, 600) * MIN,
                             "meta": {"agent": rng.choice(["ann", "bob"])}})
    return sorted(rows, key=lambda r: r["ts"])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, redis_url: str):
    rows = _rows()
    folder = tmp_path_factory.mktemp("insights")
    (folder / "mentions.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (folder / "customers.csv").write_text("customer_id,name,tier,value,twitter\n" + "".join(
        f"C-{i:02d},Customer {i},silver,100,@c{i:02d}\n" for i in range(30)))
    prefix = f"test:insights:{folder.name}:"
    env = {"PULSE_BUSINESS_HOURS": HOURS, "PULSE_RULES": "none"}
    pulse("crm", "import", str(folder / "customers.csv"), redis_url=redis_url, prefix=prefix, extra_env=env)
    pulse("replay", str(folder / "mentions.jsonl"), "--no-progress", redis_url=redis_url, prefix=prefix,
          extra_env=env, timeout=300)
    doc = orjson.loads(pulse("metrics", "--json", "--since", iso_ms(LO), "--until", iso_ms(HI), redis_url=redis_url,
                             prefix=prefix, extra_env=env).stdout)
    client = redis.Redis.from_url(redis_url)
    yield rows, doc, client, prefix
    for key in client.scan_iter(match=prefix + "*", count=2000):
        client.delete(key)


def _frames(rows: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.DataFrame([{**r, "agent": (r.get("meta") or {}).get("agent")} for r in rows], infer_schema_length=None)
    customers = df.filter(pl.col("from_brand").is_null()).drop("from_brand", "in_reply_to", "meta", "agent")
    replies = df.filter(pl.col("from_brand") == True).select(  # noqa: E712
        pl.col("in_reply_to").alias("id"), pl.col("ts").alias("reply_ts"), "agent")
    return customers, replies


def test_attraction_rate_per_channel_and_brand(replayed) -> None:
    rows, doc, _, _ = replayed
    customers, _ = _frames(rows)
    first = customers.group_by("author").agg(pl.col("ts").min().alias("first"), pl.col("channel").sort_by("ts").first()
                                             .alias("first_channel"))
    in_range = customers.filter((pl.col("ts") >= LO) & (pl.col("ts") < HI))
    new = first.filter((pl.col("first") >= LO) & (pl.col("first") < HI))
    brand = doc["brands"]["acme"]
    assert brand["new_authors"] == new.height
    assert brand["attraction_rate"] == pytest.approx(new.height / in_range["author"].n_unique(), rel=0.02)
    for channel, block in brand["channels"].items():
        authors = in_range.filter(pl.col("channel") == channel)["author"].n_unique()
        fresh = new.filter(pl.col("first_channel") == channel).height
        assert block["new_authors"] == fresh
        assert block["attraction_rate"] == pytest.approx(fresh / authors, rel=0.02), channel
    assert set(brand["channels"]) == {"twitter", "forum"}  # owned community and third-party web side by side


def test_participation_rate_is_active_customers_over_the_crm(replayed) -> None:
    rows, doc, client, prefix = replayed
    customers, _ = _frames(rows)
    active = customers.filter((pl.col("ts") >= LO) & (pl.col("ts") < HI) & pl.col("author").str.starts_with("c")
                              & (pl.col("channel") == "twitter"))["author"].n_unique()
    assert doc["brands"]["acme"]["active_customers"] == active
    assert doc["brands"]["acme"]["participation_rate"] == pytest.approx(active / 30)
    assert client.hget(Keys(prefix).channel_owned("acme"), "forum") == b"1"


def test_behaviour_after_interaction(replayed, tmp_path: Path) -> None:
    rows, doc, _, _ = replayed
    customers, replies = _frames(rows)
    host = ModelHost(None, Keys("unused:"), Path(__file__).resolve().parents[2] / ".pulse" / "models")
    scores = {r["id"]: host.classify(Mention(id=r["id"], channel=r["channel"], brand="acme", author=r["author"],
                                             text=r["text"], ts=parse_ts(r["ts"]))).sentiment_score
              for r in customers.to_dicts()}
    # who a mention is from, as the CRM names them: a customer (twitter handles c00..c29) or a prospect
    who = customers.with_columns(pl.when(pl.col("author").str.starts_with("c") & (pl.col("channel") == "twitter"))
                                 .then(pl.lit("C-") + pl.col("author").str.slice(1))
                                 .otherwise(pl.lit("p:") + pl.col("channel") + pl.lit(":") + pl.col("author"))
                                 .alias("who"), pl.col("id").replace_strict(scores).alias("score"))
    firsts = replies.group_by("id").agg(pl.all().sort_by("reply_ts").first())
    anchors = (who.join(firsts, on="id").filter((pl.col("reply_ts") >= LO) & (pl.col("reply_ts") < HI))
               .sort("reply_ts").group_by("who").agg(pl.col("reply_ts").first(), pl.col("channel").first(),
                                                     pl.col("agent").first()))
    pairs = []
    for a in anchors.to_dicts():
        mine = who.filter(pl.col("who") == a["who"])
        before = mine.filter((pl.col("ts") >= a["reply_ts"] - 7 * DAY) & (pl.col("ts") < a["reply_ts"]))["score"]
        after = mine.filter((pl.col("ts") > a["reply_ts"]) & (pl.col("ts") <= a["reply_ts"] + 7 * DAY))["score"]
        if before.len() and after.len():
            pairs.append((before.mean(), after.mean(), a["agent"]))
    got = doc["brands"]["acme"]["after_reply"]
    assert got["customers"] == len(pairs) > 3
    assert got["before"] == pytest.approx(sum(p[0] for p in pairs) / len(pairs), abs=1e-3)
    assert got["after"] == pytest.approx(sum(p[1] for p in pairs) / len(pairs), abs=1e-3)
    assert got["improved_share"] == pytest.approx(sum(p[1] > p[0] for p in pairs) / len(pairs))
    assert got["worsened_share"] == pytest.approx(sum(p[1] < p[0] for p in pairs) / len(pairs))
    for agent in ("ann", "bob"):
        mine = [p for p in pairs if p[2] == agent]
        if mine:
            assert got["agents"][agent]["customers"] == len(mine)


def _business_minutes(start_ms: int, end_ms: int) -> int:
    """Business minutes between two times, counted minute by minute (an independent, slow method)."""
    zone, n = ZoneInfo("Europe/Berlin"), 0
    for t in range(start_ms, end_ms, MIN):
        local = datetime.fromtimestamp(t / 1000, tz=zone)
        n += local.weekday() < 5 and 9 <= local.hour < 17
    return n


def test_first_response_in_business_hours(replayed) -> None:
    rows, doc, _, _ = replayed
    customers, replies = _frames(rows)
    firsts = replies.group_by("id").agg(pl.col("reply_ts").min())
    pairs = customers.join(firsts, on="id").filter((pl.col("ts") >= LO) & (pl.col("ts") < HI))
    minutes = [_business_minutes(r["ts"], r["reply_ts"]) for r in pairs.to_dicts()]
    got = doc["brands"]["acme"]["first_response_business"]
    assert got["count"] == len(minutes) and got["tz"] == "Europe/Berlin"
    # minutes counted on whole-minute steps: within a minute per response
    assert got["mean_ms"] / MIN == pytest.approx(sum(minutes) / len(minutes), abs=1.0)


def test_resolution_and_next_response_per_agent(r: redis.Redis, key_prefix: str) -> None:
    store = make_store(r, key_prefix)
    for agent in ("ann", "bob"):
        add_agent(store, Agent.create(agent, capacity=10), online=True, now_ms=D0)
    proc = CrmProcessor(store, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0))
    log: list[dict] = []
    t0 = D0 + 10 * 3_600_000
    for i in range(6):
        created = t0 + i * 10 * MIN
        res = proc.process({"id": f"twitter:{i}", "channel": "twitter", "brand": "acme", "author": f"u{i}",
                            "text": "my internet is down, can you help?", "ts": iso_ms(created),
                            "intent": "query", "sentiment": "negative", "sentiment_score": -0.7})
        case_id = res["case_id"]
        agent = r.hget(f"{key_prefix}case:{case_id}", "agent").decode()
        settings = desk_settings(key_prefix)
        first = answer_case(store, settings, case_id, text="On it", now_ms=created + (i + 1) * MIN)["reply"]
        follow = created + 30 * MIN
        proc.process({"id": f"twitter:{i}f", "channel": "twitter", "brand": "acme", "author": f"u{i}",
                      "text": "still down", "ts": iso_ms(follow), "in_reply_to": first["reply_id"],
                      "intent": "query", "sentiment": "negative", "sentiment_score": -0.8})
        answer_case(store, settings, case_id, text="Fixed now?", now_ms=follow + (2 * i + 1) * MIN,
                    reply_id=f"second-{i}")
        closed = follow + 3 * 3_600_000 if i % 2 == 0 else None
        if closed is not None:
            close_case(store, settings, case_id, now_ms=closed)
        log.append({"agent": agent, "created": created, "follow": follow, "second": follow + (2 * i + 1) * MIN,
                    "closed": closed})
    frame = pl.DataFrame(log)
    doc = snapshot(r, Keys(key_prefix), datetime.fromtimestamp(D0 / 1000, tz=UTC),
                   datetime.fromtimestamp(D0 / 1000, tz=UTC) + timedelta(days=1))
    got = doc["brands"].get("acme") or {}
    from stream.insights import case_times

    times = got.get("resolution") and got or case_times(r, key_prefix, D0, D0 + DAY)["acme"]
    resolved = frame.filter(pl.col("closed").is_not_null()).with_columns((pl.col("closed") - pl.col("created")).alias("ms"))
    assert times["resolution"]["count"] == resolved.height
    assert times["resolution"]["mean_ms"] == pytest.approx(resolved["ms"].mean())
    nxt = frame.with_columns((pl.col("second") - pl.col("follow")).alias("ms"))
    assert times["next_response"]["count"] == nxt.height
    assert times["next_response"]["mean_ms"] == pytest.approx(nxt["ms"].mean())
    for agent, group in nxt.group_by("agent"):
        assert times["next_response"]["agents"][agent[0]]["mean_ms"] == pytest.approx(group["ms"].mean())
