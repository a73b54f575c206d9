"""Identity: handles -> customers, prospect profiles, link codes, merges (history moves), Customer 360."""

from __future__ import annotations

import polars as pl
import pytest
from crm_helpers import MIN, T0

from crm import CrmError, LinkCodeError, customer_360, import_customers, issue_link_code, redeem_link_code
from crm.identity import merge_prospect, resolve_identity


@pytest.fixture()
def ann(store):
    df = pl.DataFrame({"customer_id": ["C-1"], "name": ["Ann Archer"], "tier": ["gold"], "value": ["4200"],
                       "products": ["A;B"], "twitter": ["@Ann_Archer"]})
    assert import_customers(store, df, now_ms=T0).created == 1
    return "C-1"


def test_known_handle_resolves_case_insensitively(store, processor, mention, ann):
    assert resolve_identity(store, "twitter", "@ANN_archer").customer_id == ann
    out = processor.process(mention(author="ann_archer"))
    assert out["customer_id"] == ann and out["prospect"] is False
    assert processor.identify(mention(author="@Ann_Archer"))["customer_id"] == ann


def test_unknown_author_becomes_prospect_accumulating_mentions(store, processor, mention):
    ident = processor.identify(mention(author="NewGuy"))
    assert ident == {"customer_id": "p:twitter:newguy", "prospect": True, "link": None}
    for i in range(3):
        processor.process(mention(id=f"twitter:{i}", author="NewGuy", intent="comment",
                                  sentiment="negative", sentiment_score=-0.5))
    view = customer_360(store, "p:twitter:newguy")
    assert view["kind"] == "prospect" and view["handles"] == ["twitter:newguy"]
    assert [m["id"] for m in view["recent_mentions"]] == ["twitter:2", "twitter:1", "twitter:0"]
    assert view["activity"]["negative"] == 3


def test_link_code_links_handle_and_merges_prospect_history(store, processor, mention, ann, agents):
    agents(("ag", 5))
    processor.process(mention(id="instagram:1", channel="instagram", author="annie.a", ts_ms=T0,
                              text="my order never arrived", sentiment="negative", sentiment_score=-0.6))
    processor.process(mention(id="instagram:2", channel="instagram", author="annie.a", ts_ms=T0 + MIN,
                              intent="comment", text="still waiting"))
    code = issue_link_code(store, ann, now_ms=T0, ttl_hours=24)
    assert code.code.startswith("LINK-") and code.expires_ms == T0 + 24 * 60 * MIN
    out = processor.process(mention(id="instagram:3", channel="instagram", author="annie.a", ts_ms=T0 + 2 * MIN,
                                    intent="comment", text=f"here is my code {code.code.lower()}"))
    assert out["customer_id"] == ann and out["prospect"] is False
    assert out["link"]["status"] == "linked" and out["link"]["merged_prospect"] == "p:instagram:annie.a"
    view = customer_360(store, ann)
    assert "instagram:annie.a" in view["handles"] and "twitter:ann_archer" in view["handles"]
    assert [m["id"] for m in view["recent_mentions"]] == ["instagram:3", "instagram:2", "instagram:1"]
    assert [c["id"] for c in view["open_cases"]] == ["C-instagram:1"]
    assert store.get_case("C-instagram:1")["customer_id"] == ann
    assert view["merged_prospects"] == ["p:instagram:annie.a"]
    assert view["activity"]["mentions"] == 3
    # the prospect id now points at the customer; later mentions land on the customer directly
    assert customer_360(store, "p:instagram:annie.a")["id"] == ann
    late = processor.process(mention(id="instagram:4", channel="instagram", author="annie.a", intent="comment",
                                     customer_id="p:instagram:annie.a"))
    assert late["customer_id"] == ann
    assert store.get_customer(ann)["mentions"] == "4"


def test_link_codes_are_single_use_and_expire(store, processor, mention, ann):
    code = issue_link_code(store, ann, now_ms=T0, ttl_hours=1)
    res = redeem_link_code(store, code.code, "facebook", "Ann A", mention_id="facebook:1", now_ms=T0 + MIN)
    assert res.customer_id == ann and res.handle == "facebook:ann a"
    # the same handle presenting it again is harmless; anyone else is refused
    assert redeem_link_code(store, code.code, "facebook", "ann a", mention_id="facebook:2", now_ms=T0).customer_id == ann
    with pytest.raises(LinkCodeError, match="already used by facebook:ann a"):
        redeem_link_code(store, code.code, "twitter", "thief", mention_id="twitter:9", now_ms=T0 + MIN)
    late = issue_link_code(store, ann, now_ms=T0, ttl_hours=1)
    with pytest.raises(LinkCodeError, match="has expired"):
        redeem_link_code(store, late.code, "twitter", "x", mention_id="twitter:10", now_ms=T0 + 61 * MIN)
    with pytest.raises(LinkCodeError, match="is unknown"):
        redeem_link_code(store, "LINK-22222222", "twitter", "x", mention_id="twitter:11", now_ms=T0)
    # in the stream a bad code does not stop the mention; the outcome says why
    out = processor.process(mention(author="x", intent="comment", text=f"code {late.code}", ts_ms=T0 + 90 * MIN))
    assert out["link"] == {"code": late.code, "status": "error", "error": f"link code {late.code} has expired"}
    assert out["customer_id"] == "p:twitter:x"
    assert resolve_identity(store, "twitter", "thief").prospect is True


def test_link_code_cannot_steal_another_customers_handle(store, ann):
    import_customers(store, pl.DataFrame({"customer_id": ["C-2"], "twitter": ["bobby"]}), now_ms=T0)
    code = issue_link_code(store, ann, now_ms=T0)
    with pytest.raises(LinkCodeError, match="already belongs to customer C-2"):
        redeem_link_code(store, code.code, "twitter", "bobby", mention_id="t:1", now_ms=T0)
    assert resolve_identity(store, "twitter", "bobby").customer_id == "C-2"
    # the code was not burnt by the refused attempt
    assert redeem_link_code(store, code.code, "twitter", "ann2", mention_id="t:2", now_ms=T0).customer_id == ann


def test_link_code_for_unknown_customer_is_refused(store):
    with pytest.raises(LinkCodeError, match="no customer 'C-404'"):
        issue_link_code(store, "C-404", now_ms=T0)


def test_manual_merge_and_its_errors(store, processor, mention, ann):
    processor.process(mention(id="review:1", channel="review", author="AnnA", intent="comment"))
    assert merge_prospect(store, "p:review:anna", ann, now_ms=T0) is True
    assert merge_prospect(store, "p:review:anna", ann, now_ms=T0) is False  # already merged
    assert resolve_identity(store, "review", "anna").customer_id == ann
    with pytest.raises(CrmError, match="no such customer"):
        merge_prospect(store, "p:review:anna", "C-404", now_ms=T0)
    with pytest.raises(CrmError, match="no such prospect"):
        merge_prospect(store, "p:review:nobody", ann, now_ms=T0)


def test_customer_360_has_everything(store, processor, mention, ann, agents):
    agents(("ag", 5))
    processor.process(mention(id="twitter:1", author="ann_archer", ts_ms=T0, churn_risk=0.4,
                              meta={"followers": 1200}, sentiment="negative", sentiment_score=-0.5))
    processor.process(mention(id="twitter:2", author="ann_archer", ts_ms=T0 + MIN, intent="query"))
    processor.resolve("C-twitter:2", now_ms=T0 + 5 * MIN)
    view = processor.customer_360(ann)
    assert view["crm"]["name"] == "Ann Archer" and view["crm"]["products"] == ["A", "B"]
    assert view["crm"]["value"] == 4200.0 and view["crm"]["tier"] == "gold"
    assert [c["id"] for c in view["open_cases"]] == ["C-twitter:1"]
    assert [c["id"] for c in view["past_cases"]] == ["C-twitter:2"]
    assert view["churn_risk"] == 0.0  # the latest mention's risk wins
    assert view["influence"]["followers"] == 1200 and 0.5 < view["influence"]["score"] < 0.55
    assert [m["sentiment"] for m in view["recent_mentions"]] == ["neutral", "negative"]
    assert store.client.zscore(store.keys.churn, ann) == 0.0
    with pytest.raises(CrmError, match="no customer or prospect"):
        customer_360(store, "nobody")


def test_identify_batch_matches_identify(store, processor, mention, ann):
    processor.process(mention(id="forum:1", channel="forum", author="lurker", intent="comment"))
    code = issue_link_code(store, ann, now_ms=T0)
    batch = [mention(author="@Ann_Archer"), mention(channel="forum", author="lurker"), mention(author="newbie"),
             mention(channel="review", author="x", text=f"code {code.code}"), mention(author=""), {"id": 3}]
    got = processor.identify_batch(batch)
    assert [(g["customer_id"], g["prospect"]) for g in got[:5]] == [
        (ann, False), ("p:forum:lurker", True), ("p:twitter:newbie", True), (ann, False), (None, False)]
    assert got[3]["link"]["status"] == "linked" and "error" in got[5]
    assert [processor.identify(m)["customer_id"] for m in batch[:3]] == [g["customer_id"] for g in got[:3]]
