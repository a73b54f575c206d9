"""Customer import: CSV and Parquet, idempotent, rejected rows with reasons, nothing corrupted."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from crm_helpers import T0

from crm import CustomerImportError, import_customers
from crm.customers import customer_from_hash
from crm.identity import resolve_identity

SAMPLE = Path(__file__).resolve().parents[2] / "crm" / "data" / "customers_sample.csv"


def test_sample_csv_imports_and_reimport_is_idempotent(store):
    first = import_customers(store, SAMPLE, now_ms=T0)
    assert (first.rows, first.created, first.updated, first.rejected) == (4, 4, 0, [])
    ann = customer_from_hash(store.get_customer("C-1001"))
    assert ann["name"] == "Ann Archer" and ann["tier"] == "gold" and ann["value"] == 4200.0
    assert ann["tenure_months"] == 38 and ann["products"] == ["A", "B"]
    assert store.customer_handles("C-1001") == ["email:ann@example.com", "instagram:ann.archer",
                                                "twitter:ann_archer"]
    snapshot = {c: store.get_customer(c) for c in ("C-1001", "C-1002", "C-1003", "C-1004")}
    again = import_customers(store, SAMPLE, now_ms=T0 + 1)
    assert (again.created, again.updated, again.rejected) == (0, 4, [])
    assert {c: store.get_customer(c) for c in snapshot} == snapshot
    assert store.count_customers() == 4


def test_parquet_with_list_products_and_handles_column(store, tmp_path):
    df = pl.DataFrame({
        "id": ["P1", "P2"], "name": ["Pat", "Quin"], "segment": ["Silver", None], "ltv": [120.5, None],
        "products_bought": [["A", "C"], []], "handles": ["twitter:@pat;facebook:Pat Smith", None],
    })
    path = tmp_path / "customers.parquet"
    df.write_parquet(path)
    rep = import_customers(store, path, now_ms=T0)
    assert rep.created == 2 and rep.handles == 2 and not rep.rejected
    pat = customer_from_hash(store.get_customer("P1"))
    assert pat["tier"] == "silver" and pat["value"] == 120.5 and pat["products"] == ["A", "C"]
    assert resolve_identity(store, "facebook", "pat smith").customer_id == "P1"


def test_bad_rows_are_rejected_with_line_and_reason_and_good_rows_stored(store, tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text(
        "customer_id,name,value,tenure_months,twitter\n"
        "C1,Ann,100,5,@ann\n"          # line 2 ok
        ",NoId,5,1,@noid\n"             # line 3 missing id
        "C1,Ann again,7,1,@ann2\n"      # line 4 duplicate id
        "C3,Cat,lots,1,@cat\n"          # line 5 bad value
        "C4,Dan,10,x,@dan\n"            # line 6 bad tenure
        "C5,Eve,10,1,@shared\n"         # line 7 claims a handle ...
        "C6,Fay,10,1,@SHARED\n"         # line 8 ... that another row claims too
        "C7,Gus,10,1,@gus\n"            # line 9 ok
    )
    rep = import_customers(store, csv, now_ms=T0)
    assert rep.created == 2
    assert [(x.line, x.customer_id, x.reason) for x in rep.rejected] == [
        (3, "", "missing customer_id"),
        (4, "C1", "duplicate customer_id (first at line 2)"),
        (5, "C3", "value: not a number 'lots'"),
        (6, "C4", "tenure_months: not a number 'x'"),
        (7, "C5", "handle twitter:shared is claimed by customers C5 (line 7) and C6 (line 8)"),
        (8, "C6", "handle twitter:shared is claimed by customers C5 (line 7) and C6 (line 8)"),
    ]
    assert rep.rejected[0].describe() == "line 3: missing customer_id"
    for cid in ("C3", "C4", "C5", "C6"):
        assert store.get_customer(cid) is None
    assert store.lookup_identity("twitter", "shared") is None
    assert store.lookup_identity("twitter", "ann2") is None
    assert store.get_customer("C1")["name"] == "Ann"


def test_handle_owned_by_another_customer_rejects_row_without_touching_either(store):
    import_customers(store, pl.DataFrame({"customer_id": ["C1"], "name": ["Ann"], "twitter": ["ann"]}), now_ms=T0)
    before = store.get_customer("C1")
    rep = import_customers(store, pl.DataFrame({"customer_id": ["C2"], "name": ["Imposter"],
                                                "twitter": ["ann"], "instagram": ["imp"]}), now_ms=T0)
    assert [x.reason for x in rep.rejected] == ["handle twitter:ann already belongs to customer C1"]
    assert store.get_customer("C2") is None and store.lookup_identity("instagram", "imp") is None
    assert store.get_customer("C1") == before and store.lookup_identity("twitter", "ann") == "C1"


def test_import_merges_prospect_that_owned_the_handle(store, processor, mention):
    processor.process(mention(id="twitter:1", author="futurecust", intent="comment"))
    processor.process(mention(id="twitter:2", author="futurecust", intent="query"))
    rep = import_customers(store, pl.DataFrame({"customer_id": ["C9"], "twitter": ["@FutureCust"]}), now_ms=T0)
    assert rep.merged_prospects == ["p:twitter:futurecust"]
    assert store.get_customer("C9")["mentions"] == "2"
    assert store.customer_case_ids("C9", 10) == ["C-twitter:2"]
    assert store.get_customer("p:twitter:futurecust")["merged_into"] == "C9"


def test_simulator_world_customers_import(store):
    from connectors.simulator import World

    customers = World(seed=3, n_customers=40).customers()
    rep = import_customers(store, pl.DataFrame(customers), now_ms=T0)
    assert rep.created == 40 and not rep.rejected
    c = customers[0]
    channel, handle = next(iter(c["handles"].items()))
    assert resolve_identity(store, channel, handle).customer_id == c["customer_id"]
    assert customer_from_hash(store.get_customer(c["customer_id"]))["products"] == c["products"]


def test_unreadable_files_raise_clear_errors(store, tmp_path):
    with pytest.raises(CustomerImportError, match="does not exist"):
        import_customers(store, tmp_path / "nope.csv", now_ms=T0)
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(CustomerImportError, match="unsupported format"):
        import_customers(store, tmp_path / "c.xlsx", now_ms=T0)
    (tmp_path / "noid.csv").write_text("name,email\nAnn,a@x\n")
    with pytest.raises(CustomerImportError, match="no id column"):
        import_customers(store, tmp_path / "noid.csv", now_ms=T0)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(CustomerImportError, match="cannot read it"):
        import_customers(store, tmp_path / "bad.parquet", now_ms=T0)


def test_shared_email_is_a_warning_not_a_rejection(store):
    df = pl.DataFrame({"customer_id": ["F1", "F2"], "email": ["family@example.com", "Family@example.com"]})
    rep = import_customers(store, df, now_ms=T0)
    assert rep.created == 2 and not rep.rejected
    assert rep.warnings == ["email:family@example.com is shared by customers F1 (line 2), F2 (line 3): "
                            "not linked as a handle"]
    assert store.lookup_identity("email", "family@example.com") is None
    solo = import_customers(store, pl.DataFrame({"customer_id": ["S1"], "email": ["solo@example.com"]}), now_ms=T0)
    assert solo.handles == 1 and store.lookup_identity("email", "solo@example.com") == "S1"
    later = import_customers(store, pl.DataFrame({"customer_id": ["S2"], "email": ["solo@example.com"]}), now_ms=T0)
    assert later.created == 1 and later.warnings == [
        "line 2 (customer S2): email:solo@example.com belongs to customer S1: not linked"]
    assert store.lookup_identity("email", "solo@example.com") == "S1"
