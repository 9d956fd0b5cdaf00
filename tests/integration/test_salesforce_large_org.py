"""salesforce-export against an org that says no, as Salesforce documents it (reference:
salesforce-scale.md): objects Bulk API 2.0 refuses, Bulk jobs that fail on a large window, the
daily API allowance spent or shared, concurrency limits, a run killed mid-way, deletions older
than the recycle bin, formula fields, many objects at once and shards. The emulator models each
from the docs; every expected value comes from the emulator's records or a run that met no fault."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import time

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import base_env, cxlake_path, export_job, export_watermarks, is_run_record, start_emulator

CUSTOM = "CX_Interaction__c"


def data_files(lake: pathlib.Path) -> dict[str, bytes]:
    """Every Parquet file of the lake's tables but the run records, by key."""
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted(lake.rglob("*.parquet"))
            if not is_run_record(p.relative_to(lake).as_posix())}


def latest_rows(lake: pathlib.Path, table: str) -> list[tuple]:
    """The rows of `<table>_latest`, sorted by id, read by DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(f"SELECT * FROM read_parquet('{lake}/{table}_latest/*.parquet') ORDER BY id").fetchall()


def history_ids(lake: pathlib.Path, table: str) -> list[str]:
    ids = []
    for path in sorted((lake / table).rglob("*.parquet")):
        ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
    return ids


def live_ids(emulator, sobject: str) -> set[str]:
    return {r["Id"] for r in emulator.records(sobject) if not r.get("IsDeleted")}


def object_definition(emulator, sobject: str, name: str, **changes) -> dict:
    """The emulator's describe of `sobject` as an object definition named `name`."""
    import requests

    from test_salesforce_export import token

    access, instance = token(emulator)
    response = requests.get(f"{instance}/services/data/v66.0/sobjects/{sobject}/describe",
                            headers={"Authorization": f"Bearer {access}"}, verify=emulator.verify, timeout=30)
    assert response.status_code == 200, response.text
    definition = response.json()
    definition.update(name=name, label=name, **changes)
    return definition


def emulator_with(tmp_path: pathlib.Path, definitions: list[dict]):
    """An emulator whose org also has these objects (`--objects DIR`)."""
    folder = tmp_path / "objects"
    folder.mkdir(exist_ok=True)
    for d in definitions:
        (folder / f"{d['name']}.json").write_text(json.dumps(d))
    return start_emulator(tmp_path, "--objects", str(folder))


def copy_records(emulator, source: str, target: str, count: int | None = None, wait: bool = True) -> None:
    """Puts `source`'s live records (without system fields) into `target`."""
    system = {"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById",
              "LastModifiedById", "OwnerId"}
    rows = [{k: v for k, v in r.items() if k not in system} for r in emulator.records(source)
            if not r.get("IsDeleted")][:count]
    emulator.admin("PUT", f"objects/{target}/records", rows)
    if wait:
        # A run reads up to its start, truncated to the second: let the new records' second pass.
        time.sleep(1.1)


# --------------------------------------------------------------------------------------------
# Routing


def test_an_object_bulk_refuses_lands_over_rest_identical_to_a_rest_run_and_the_route_is_kept(cxlake_bin, cx, tmp_path):
    probe = start_emulator(tmp_path)
    try:
        refused = object_definition(probe, CUSTOM, "CX_Feed__c", keyPrefix="a0F", bulkQueryable=False)
    finally:
        probe.stop()
    emulator = emulator_with(tmp_path, [refused])
    try:
        copy_records(emulator, CUSTOM, "CX_Feed__c")
        rest = cx("run", export_job(tmp_path, emulator.url, objects=("CX_Feed__c",), api="rest",
                                    lake="file://lake-rest", file="rest.toml"))
        assert rest.code == 0, rest
        creates = emulator.stats().get("bulk_create", 0)
        job = export_job(tmp_path, emulator.url, objects=("CX_Feed__c",), api="bulk")
        result = cx("run", job)
        assert result.code == 0, result
        assert "Bulk refuses the object: INVALIDENTITY" in result.stdout, result
        assert emulator.stats().get("bulk_create", 0) == creates + 1, "one refused job create"
        assert data_files(tmp_path / "lake") == data_files(tmp_path / "lake-rest")
        state = json.loads((tmp_path / "lake/_etl/state/sf-export/objects/CX_Feed__c.json").read_text())
        assert state["route"]["api"] == "rest" and "not supported by the Bulk API" in state["route"]["reason"]
        # The next run remembers: no Bulk job is tried again, and the reconciliation row says why.
        again = cx("run", job)
        assert again.code == 0, again
        assert emulator.stats().get("bulk_create", 0) == creates + 1
        dry = cx("run", "--dry-run", job)
        assert dry.code == 0, dry
        assert "CX_Feed__c -> sf_cx_feed__c" in dry.stdout and "via REST [rest: INVALIDENTITY" in dry.stdout, dry
    finally:
        emulator.stop()


def test_objects_known_to_be_refused_go_to_rest_without_trying_bulk(emulator, cx, tmp_path):
    result = cx("run", export_job(tmp_path, emulator.url, objects=("CaseStatus",), api="bulk"))
    assert result.code == 0, result
    assert emulator.stats().get("bulk_create", 0) == 0
    assert len(latest_rows(tmp_path / "lake", "sf_case_status")) == len(live_ids(emulator, "CaseStatus")) > 0


# --------------------------------------------------------------------------------------------
# Slicing


def test_a_window_that_fails_in_bulk_is_halved_and_every_record_lands_once(emulator, cx, tmp_path):
    clean = cx("run", export_job(tmp_path, emulator.url, objects=("Account",), api="rest",
                                 lake="file://lake-clean", file="clean.toml"))
    assert clean.code == 0, clean
    emulator.faults(bulk_fail_above_records=10)
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk",
                     export_extra={"slice_floor_minutes": 1})
    result = cx("run", job)
    assert result.code == 0, result
    assert "halving its window" in result.stderr, result
    lake = tmp_path / "lake"
    ids = history_ids(lake, "sf_account")
    records = emulator.records("Account")
    assert sorted(ids) == sorted(r["Id"] for r in records), "every record exactly once"
    assert latest_rows(lake, "sf_account") == latest_rows(tmp_path / "lake-clean", "sf_account")
    assert "windows" in result.stdout and "via bulk" in result.stdout, result


# --------------------------------------------------------------------------------------------
# The API budget


def test_a_spent_daily_allowance_stops_with_exit_5_and_the_next_run_completes_the_same_lake(emulator, cx, tmp_path):
    objects = ("Account", "Contact", CUSTOM, "Case")
    clean = cx("run", export_job(tmp_path, emulator.url, objects=objects, api="rest", lake="file://lake-clean",
                                 file="clean.toml", export_extra={"concurrency": 1}))
    assert clean.code == 0, clean
    calls = clean.stdout.split(" API (")[0].rsplit(" ", 1)[-1]
    # The allowance runs out half-way through the same run; the budget shares would allow it all.
    emulator.admin("POST", "limits", {"daily_api_requests": 1000, "used": 1000 - int(calls) // 2})
    job = export_job(tmp_path, emulator.url, objects=objects, api="rest",
                     extra={"budget_run_percent": 100, "budget_total_percent": 100},
                     export_extra={"concurrency": 1})
    stopped = cx("run", job)
    assert stopped.code == 5, stopped
    assert "stopped at the API budget" in stopped.stderr, stopped
    lake = tmp_path / "lake"
    done = export_watermarks(lake)
    assert 0 < len(done) < len(objects), done
    # Whole objects only: an object with a watermark is complete, the others wrote nothing.
    for sobject in objects:
        table = "sf_" + {"Account": "account", "Contact": "contact", CUSTOM: "cx_interaction__c", "Case": "case"}[sobject]
        if sobject in done:
            assert latest_rows(lake, table) == latest_rows(tmp_path / "lake-clean", table)
        else:
            assert not (lake / table).exists(), sobject
    [run] = [json.loads(p.read_text()) for p in (lake / "_etl" / "runs").rglob("*.json")]
    assert run["exit_code"] == 5
    emulator.admin("POST", "limits", {"used": 0})
    resumed = cx("run", job)
    assert resumed.code == 0, resumed
    for table in ("sf_account", "sf_contact", "sf_cx_interaction__c", "sf_case"):
        assert latest_rows(lake, table) == latest_rows(tmp_path / "lake-clean", table), table


def test_the_run_share_of_the_allowance_stops_the_run_before_salesforce_does(emulator, cx, tmp_path):
    emulator.admin("POST", "limits", {"daily_api_requests": 100, "used": 0})
    job = export_job(tmp_path, emulator.url, objects=("Account", "Contact", CUSTOM), api="rest",
                     extra={"budget_run_percent": 4}, export_extra={"concurrency": 1})
    result = cx("run", job)
    assert result.code == 5, result
    assert "this run made 4 calls, its share is 4% of the org's 100 daily API requests" in result.stderr, result
    assert emulator.admin("GET", "limits")["used"] == 4


def test_a_concurrency_limit_is_retried(emulator, cx, tmp_path):
    emulator.faults(concurrent_limit_calls=2)
    result = cx("run", export_job(tmp_path, emulator.url, objects=("Account",), api="bulk"))
    assert result.code == 0, result
    assert "(2 retries" in result.stdout, result


def test_dry_run_prints_api_count_calls_and_budget_per_object(emulator, cx, tmp_path):
    emulator.admin("POST", "limits", {"daily_api_requests": 10000, "used": 2500})
    result = cx("run", "--dry-run", export_job(tmp_path, emulator.url, objects=("Account", "CaseStatus")))
    assert result.code == 0, result
    accounts = len(emulator.records("Account"))
    assert f"Account -> sf_account" in result.stdout and f"via REST [auto" in result.stdout, result
    assert f"{accounts} records in 1 window" in result.stdout, result
    assert "CaseStatus -> sf_case_status" in result.stdout and "[rest: known not to be supported" in result.stdout
    assert "left for this run (org used" in result.stdout and "of 10000 daily requests" in result.stdout, result
    assert not (tmp_path / "lake").exists()


# --------------------------------------------------------------------------------------------
# Killed mid-way


def test_sigkill_during_a_sliced_export_then_a_rerun_converges(emulator, cx, tmp_path):
    clean = cx("run", export_job(tmp_path, emulator.url, objects=("Account",), api="rest",
                                 lake="file://lake-clean", file="clean.toml"))
    assert clean.code == 0, clean
    emulator.faults(bulk_fail_above_records=10, slow_job_polls=3)
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk", export_extra={"slice_floor_minutes": 1})
    state = tmp_path / "lake" / "_etl" / "state" / "sf-export" / "objects" / "Account.json"
    process = subprocess.Popen([cxlake_path(), "run", str(job), "--lock-ttl", "1"], cwd=tmp_path, env=base_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        plan = json.loads(state.read_text()).get("plan") if state.exists() else None
        if plan and sum(s["done"] for s in plan["slices"]) >= 2:
            break
        time.sleep(0.02)
    else:
        process.kill()
        pytest.fail("the sliced export never finished two windows")
    process.send_signal(signal.SIGKILL)
    process.wait()
    plan = json.loads(state.read_text())["plan"]
    assert not all(s["done"] for s in plan["slices"]), "killed before the end"
    time.sleep(1.5)  # the killed run's lock expires (--lock-ttl 1)
    rerun = cx("run", job)
    assert rerun.code == 0, rerun
    assert "resuming the unfinished run" in rerun.stderr, rerun
    lake = tmp_path / "lake"
    assert sorted(history_ids(lake, "sf_account")) == sorted(r["Id"] for r in emulator.records("Account"))
    assert latest_rows(lake, "sf_account") == latest_rows(tmp_path / "lake-clean", "sf_account")
    assert "plan" not in json.loads(state.read_text())


# --------------------------------------------------------------------------------------------
# Many objects


def test_forty_objects_at_concurrency_4_write_the_lake_of_concurrency_1_and_shards_add_up(cxlake_bin, cx, tmp_path):
    probe = start_emulator(tmp_path)
    try:
        definitions = [object_definition(probe, CUSTOM, f"CX_Load{n:02d}__c", keyPrefix=f"a{n:02d}")
                       for n in range(40)]
    finally:
        probe.stop()
    emulator = emulator_with(tmp_path, definitions)
    try:
        names = [d["name"] for d in definitions]
        for n, name in enumerate(names):
            copy_records(emulator, CUSTOM, name, count=5 + n, wait=False)
        # The emulator hands out modstamps 1 ms apart, ahead of the clock while ~1,000 records go in
        # at once; a run reads up to its start, truncated to the second.
        time.sleep(2.5)
        seconds = {}
        for concurrency in (1, 4):
            job = export_job(tmp_path, emulator.url, objects=names, api="bulk", lake=f"file://lake-{concurrency}",
                             file=f"c{concurrency}.toml", export_extra={"concurrency": concurrency})
            started = time.monotonic()
            result = cx("run", job)
            seconds[concurrency] = time.monotonic() - started
            assert result.code == 0, result
        one, four = data_files(tmp_path / "lake-1"), data_files(tmp_path / "lake-4")
        assert len(one) == 80 and one == four
        print(f"40 objects: concurrency 1 {seconds[1]:.2f} s, concurrency 4 {seconds[4]:.2f} s")
        for i in range(3):
            job = export_job(tmp_path, emulator.url, objects=names, api="bulk", lake="file://lake-sharded",
                             file="sharded.toml")
            result = cx("run", "--shard", f"{i}/3", job)
            assert result.code == 0, result
            assert f"sf-export: {len(range(i, 40, 3))} objects" in result.stdout, result
        assert data_files(tmp_path / "lake-sharded") == one
    finally:
        emulator.stop()


# --------------------------------------------------------------------------------------------
# Deletions beyond the recycle bin


def test_records_deleted_before_the_recycle_bin_was_emptied_leave_latest(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk")
    first = cx("run", job)
    assert first.code == 0, first
    gone = sorted(live_ids(emulator, "Account"))[:3]
    for record_id in gone:
        emulator.admin("DELETE", f"objects/Account/records/{record_id}")
    emulator.admin("POST", "clock", {"advance_days": 20})
    # The recycle bin no longer holds them: queryAll cannot show the deletions.
    assert not set(gone) & {r["Id"] for r in emulator.records("Account")}
    second = cx("run", job)
    assert second.code == 0, second
    assert "Id reconciliation: 3 deleted beyond the recycle bin" in second.stdout, second
    lake = tmp_path / "lake"
    latest = {row[0] for row in duckdb.sql(f"SELECT id FROM read_parquet('{lake}/sf_account_latest/*.parquet')").fetchall()}
    assert latest == live_ids(emulator, "Account")
    marked = duckdb.sql(f"SELECT id FROM read_parquet('{lake}/sf_account/*/part-deletes-*.parquet') "
                        "WHERE is_deleted").fetchall()
    assert sorted(r[0] for r in marked) == gone


def test_with_the_recycle_bin_intact_no_id_reconciliation_runs(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk")
    assert cx("run", job).code == 0
    gone = sorted(live_ids(emulator, "Account"))[:2]
    for record_id in gone:
        emulator.admin("DELETE", f"objects/Account/records/{record_id}")
    time.sleep(1.1)  # a run reads up to its start, truncated to the second
    creates = emulator.stats().get("bulk_create", 0)
    second = cx("run", job)
    assert second.code == 0, second
    assert "Id reconciliation" not in second.stdout + second.stderr, second
    assert emulator.stats().get("bulk_create", 0) == creates + 1, "only the export's own job"
    assert "sf_account 2 rows (2 deleted)" in second.stdout, second
    lake = tmp_path / "lake"
    latest = {row[0] for row in duckdb.sql(f"SELECT id FROM read_parquet('{lake}/sf_account_latest/*.parquet')").fetchall()}
    assert latest == live_ids(emulator, "Account")


# --------------------------------------------------------------------------------------------
# Formula fields


def formula_fields(emulator, sobject: str) -> list[str]:
    from test_salesforce_export import describe, snake

    return [snake(f["name"]) for f in describe(emulator, sobject)["fields"] if f.get("calculated")]


@pytest.mark.parametrize("policy", ["include", "exclude", "refresh"])
def test_formula_policy(emulator, cx, tmp_path, policy):
    [column] = formula_fields(emulator, CUSTOM)
    from test_salesforce_export import describe

    [field] = [f for f in describe(emulator, CUSTOM)["fields"] if f.get("calculated")]
    settings = {"formulas": policy} | ({"formula_refresh_days": 0} if policy == "refresh" else {})
    job = export_job(tmp_path, emulator.url, objects=(CUSTOM,), api="rest", export_extra=settings)
    first = cx("run", job)
    assert first.code == 0, first
    lake = tmp_path / "lake"
    schema = pq.read_schema(next((lake / "sf_cx_interaction__c_latest").glob("*.parquet")))
    if policy == "exclude":
        assert column not in schema.names
        return
    assert column in schema.names
    # The formula's value changes without SystemModstamp moving (Fivetran's caveat).
    record = next(r for r in emulator.records(CUSTOM) if not r.get("IsDeleted") and r.get(field["name"]) is not None)
    emulator.admin("PATCH", f"objects/{CUSTOM}/records/{record['Id']}?touch=false", {field["name"]: 12345.5})
    assert next(r for r in emulator.records(CUSTOM) if r["Id"] == record["Id"])["SystemModstamp"] == record["SystemModstamp"]
    second = cx("run", job)
    assert second.code == 0, second
    value = duckdb.sql(f"SELECT {column} FROM read_parquet('{lake}/sf_cx_interaction__c_latest/*.parquet') "
                       f"WHERE id = '{record['Id']}'").fetchall()[0][0]
    if policy == "include":
        assert float(value) == float(record[field["name"]]), "include: stale until the record changes"
    else:
        assert float(value) == 12345.5, "refresh: the full re-read brings the new value"


def test_validate_refuses_bad_large_org_settings_with_their_key_paths(cx, tmp_path):
    job = export_job(tmp_path, "https://login.salesforce.com", objects=("Account",),
                     extra={"budget_run_percent": 0, "budget_total_percent": 101},
                     export_extra={"concurrency": 0, "slice_days": 0, "slice_floor_minutes": -5,
                                   "formulas": "sometimes", "formula_refresh_days": 400})
    result = cx("validate", job)
    assert result.code == 2, result
    for key in ("salesforce.budget_run_percent", "salesforce.budget_total_percent", "export.concurrency",
                "export.slice_days", "export.slice_floor_minutes", "export.formulas", "export.formula_refresh_days"):
        assert key in result.stderr, (key, result)


# --------------------------------------------------------------------------------------------
# Long text areas and NUL bytes


def test_long_text_areas_arrive_whole_and_nul_bytes_are_stripped(cxlake_bin, cx, tmp_path):
    """A long text area holds up to 131,072 characters (reference §6); a pasted NUL byte breaks
    CSV readers, and Airbyte and tap-salesforce strip it. Both APIs give the same whole value."""
    probe = start_emulator(tmp_path)
    try:
        definition = object_definition(probe, CUSTOM, "CX_Long__c", keyPrefix="a0L")
    finally:
        probe.stop()
    for field in definition["fields"]:
        if field["name"] == "Notes__c":
            field["length"] = 131072
    emulator = emulator_with(tmp_path, [definition])
    try:
        unit = 'line one, "quoted"\nline two;\ttab\u00e9\u4e2d '
        text = (unit * (131072 // len(unit) + 1))[:131070]
        stored = text[:70000] + "\x00" + text[70000:] + "\x00"
        assert len(stored) == 131072
        emulator.admin("PUT", "objects/CX_Long__c/records", [{"Name": "long", "Notes__c": stored},
                                                              {"Name": "short", "Notes__c": "a\x00b"}])
        time.sleep(1.1)
        for api in ("rest", "bulk"):
            result = cx("run", export_job(tmp_path, emulator.url, objects=("CX_Long__c",), api=api,
                                          lake=f"file://lake-{api}", file=f"{api}.toml"))
            assert result.code == 0, result
            table = pq.read_table(next((tmp_path / f"lake-{api}" / "sf_cx_long__c_latest").glob("*.parquet")))
            notes = dict(zip(table.column("name").to_pylist(), table.column("notes__c").to_pylist()))
            assert notes == {"long": text, "short": "ab"}, api
        assert data_files(tmp_path / "lake-rest") == data_files(tmp_path / "lake-bulk")
    finally:
        emulator.stop()


def test_a_history_object_without_systemmodstamp_is_read_incrementally_on_createddate(cxlake_bin, cx, tmp_path):
    """Field history objects (OpportunityFieldHistory) have CreatedDate only: it is their cursor."""
    probe = start_emulator(tmp_path)
    try:
        definition = object_definition(probe, CUSTOM, "CX_History__c", keyPrefix="a0H")
    finally:
        probe.stop()
    definition["fields"] = [f for f in definition["fields"] if f["name"] not in ("SystemModstamp", "LastModifiedDate")]
    emulator = emulator_with(tmp_path, [definition])
    try:
        copy_records(emulator, CUSTOM, "CX_History__c", count=20)
        job = export_job(tmp_path, emulator.url, objects=("CX_History__c",), api="rest")
        first = cx("run", job)
        assert first.code == 0, first
        assert "sf_cx_history__c 20 rows" in first.stdout, first
        copy_records(emulator, CUSTOM, "CX_History__c", count=3)  # PUT replaces: 3 new records
        second = cx("run", job)
        assert second.code == 0, second
        assert "sf_cx_history__c 3 rows" in second.stdout, second
        dry = cx("run", "--dry-run", job)
        assert "WHERE CreatedDate > " in dry.stdout, dry
    finally:
        emulator.stop()
