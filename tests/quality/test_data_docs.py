"""Each user's GX Data Docs hold that user's results only (R1), built once per cycle.

One GX context serves every user of a worker process; before this was isolated, the
second user's Data Docs were rendered from every result in that context, the first
user's failing records included.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contactsync import model


@pytest.fixture(scope="module")
def runner():
    from expectations import runner

    runner._gx()  # import GX and make the context once, in setup
    return runner


def _crm(prefix: str, secret: str, n: int = 3) -> pd.DataFrame:
    rows = [{"crm_id": f"C{prefix}{i:07d}", "last_name": f"{secret}{i}" * 3} for i in range(n)]
    return model.conform(pd.DataFrame(rows), model.CRM_COLUMNS)  # every name too long (R19)


def _text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_r1_user_b_data_docs_hold_none_of_user_a_records(runner, tmp_path: Path) -> None:
    docs_a, docs_b = tmp_path / "UA", tmp_path / "UB"
    a = _crm("USRA", "Alicesecretname")
    b = _crm("USRB", "Bobprivatename")
    (out_a,) = runner.validate_many([(a, "crm_contacts", "crm_id")], data_docs_dir=docs_a)
    (out_b,) = runner.validate_many([(b, "crm_contacts", "crm_id")], data_docs_dir=docs_b)
    assert (out_a.failure_count, out_b.failure_count) == (3, 3)
    text_b = _text(docs_b)
    assert "Bobprivatename" in text_b  # B's docs show B's failing values...
    assert "Alicesecretname" not in text_b and "CUSRA" not in text_b  # ...and nothing of A's
    text_a = _text(docs_a)
    assert "Alicesecretname" in text_a
    assert "CUSRB" not in text_a and "Bobprivatename" not in text_a


def test_a_users_docs_list_its_earlier_cycles_and_one_page_per_validation(runner, tmp_path: Path) -> None:
    docs = tmp_path / "UC"
    for cycle in range(2):
        runner.validate_many(
            [(_crm("USRC", f"Cycle{cycle}name"), "crm_contacts", "crm_id"),
             (_crm("USRC", f"Cycle{cycle}plan"), "crm_contacts", "crm_id")],
            data_docs_dir=docs,
        )
    pages = list((docs / "validations" / "crm_contacts").rglob("*.html"))
    assert len(pages) == 4  # two cycles x two validations, none lost to the rebuild
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert index.count("validations/crm_contacts/") >= 4


def test_a_cycle_gets_summarised_results_with_exact_counts(runner) -> None:
    frame = _crm("USRD", "Toolongname", n=30)
    (outcome,) = runner.validate_many([(frame, "crm_contacts", "crm_id")])
    assert outcome.failure_count == 30  # every failing value counted...
    assert outcome.failures["record_id"].isna().all()  # ...but no per-row lists carried
    assert outcome.failures["column"].tolist() == ["last_name"]
    assert not outcome.success
    every = model.conform(pd.DataFrame({"crm_id": ["CUSRD0000001"], "last_name": ["Ok"]}), model.CRM_COLUMNS)
    (empty,) = runner.validate_many([(every, "crm_contacts", "crm_id")])
    # a column without any value passes every test of it: only last_name's and the presence checks run
    assert empty.success and empty.statistics["evaluated_expectations"] < 10
