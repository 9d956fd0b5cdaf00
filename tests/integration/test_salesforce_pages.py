"""salesforce-export against damaged result pages (the emulator's `corrupt_page` fault): a Bulk CSV
or REST page that is truncated, has a row of the wrong width or a value that cannot be typed fails
that object with the object, page and field named, writes nothing of it, leaves its watermark, and
the other objects still export (exit 3)."""

from __future__ import annotations

import json

import pytest

from conftest import export_job, export_watermarks

CUSTOM = "CX_Interaction__c"
CASES = {
    # (api, kind, field, what stderr must say about the object)
    "bulk_truncated": ("bulk", "truncate", None, r"Account Bulk job \S+ page 2: the page is truncated"),
    "bulk_wide_row": ("bulk", "wide_row", None, r"Account Bulk job \S+ page 2: row 1: .*record with 24 fields, but the previous record has 23 fields"),
    "bulk_bad_value": ("bulk", "bad_value", "NumberOfEmployees",
                       r"Account Bulk job \S+ page 2: record 001\w+, field NumberOfEmployees: expected an integer \(value \"not-a-value\"\)"),
    "rest_truncated": ("rest", "truncate", None, r"Account REST page 1: .*unexpected response: EOF while parsing"),
    "rest_missing_field": ("rest", "wide_row", "Name",
                           r"Account REST page 1: record 001\w+, field Name: the field is missing from the record"),
    "rest_bad_value": ("rest", "bad_value", "AnnualRevenue",
                       r"Account REST page 1: record 001\w+, field AnnualRevenue: expected a decimal number \(value .*not-a-value"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_result_page_fails_only_its_object(emulator, cx, tmp_path, case):
    import re

    api, kind, field, message = CASES[case]
    # 50 accounts in pages of 20: Bulk serves three pages; REST serves them in one.
    job = export_job(tmp_path, emulator.url, objects=("Account", CUSTOM), api=api, extra={"page_size": 20})
    page = 2 if api == "bulk" else 1
    emulator.faults(corrupt_page={"object": "Account", "page": page, "kind": kind, "field": field})
    result = cx("run", job)
    assert result.code == 3, result
    (line,) = [l for l in result.stderr.splitlines() if l.startswith("rejected: sf-export: Account: ")]
    assert re.search(message, line), line
    lake = tmp_path / "lake"
    # Nothing of Account, all of the other object.
    assert not [p for p in lake.rglob("*") if "sf_account" in p.as_posix()], sorted(lake.rglob("*"))
    assert list((lake / "sf_cx_interaction__c_latest").glob("*.parquet"))
    watermarks = export_watermarks(lake)
    assert CUSTOM in watermarks and "Account" not in watermarks
    # The fault is spent: the next run exports Account from where it was.
    again = cx("run", job)
    assert again.code == 0, again
    assert list((lake / "sf_account_latest").glob("*.parquet"))
