"""Every run writes its row of `cxlake_runs` and, per Connect partition, Salesforce object,
roll-up partition or push-back target, its rows of `cxlake_reconciliation` (Hive layout, dt = the
UTC day the run started), read here with DuckDB. Expected figures come from the inputs: report
rows counted with Python's csv module, the emulator's own records, file sizes on disk."""

from __future__ import annotations

import csv
import datetime as dt
import json
import pathlib
import re

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import connect_job, export_job, write_job
from fixtures import GLUE_TYPES, queue_report

QUEUE = "connect_queue_interval"
CUSTOM = "CX_Interaction__c"


def utc_today_span():
    """The UTC dates a run started now can be filed under (a run may cross midnight)."""
    before = dt.datetime.now(dt.timezone.utc).date()
    return lambda: {str(before), str(dt.datetime.now(dt.timezone.utc).date())}


def table(lake: pathlib.Path, name: str) -> list[dict]:
    """Every row of a run table, by run start (none before the first file)."""
    if not list((lake / name).glob("dt=*/*.parquet")):
        return []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    order = "started_at, table_name, data_partition" if name == "cxlake_reconciliation" else "started_at"
    source = f"read_parquet('{lake / name}/*/*.parquet', hive_partitioning = true)"
    return con.sql(f"select * from {source} order by {order}").to_arrow_table().to_pylist()


def runs(lake):
    return table(lake, "cxlake_runs")


def reconciliation(lake):
    return table(lake, "cxlake_reconciliation")


def csv_records(path: pathlib.Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[0], rows[1:]


def name_day(path: pathlib.Path) -> str:
    """The partition a report's name points to: the day of the interval it covers (UTC job)."""
    end = dt.datetime.strptime(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", path.name).group(0), "%Y-%m-%dT%H:%M:%S")
    return str((end - dt.timedelta(minutes=30)).date())


def per_day(files) -> dict[str, dict]:
    """dt -> rows and distinct (queue, interval) keys of loaded report files (UTC days)."""
    days: dict[str, dict] = {}
    for path in files:
        header, rows = csv_records(path)
        q, s = header.index("Queue"), header.index("StartInterval")
        for r in rows:
            day = days.setdefault(r[s][:10], {"rows": 0, "keys": set()})
            day["rows"] += 1
            day["keys"].add((r[q], r[s]))
    return days


# --------------------------------------------------------------------------------------------
# connect-intervals


def test_connect_run_records_itself_and_each_partition(cx, tmp_path):
    reports = tmp_path / "reports"
    loaded = [
        queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10"), ("Support", "4")]),
        queue_report(reports, "2024-03-10T16:30Z", [("Sales", "12")]),
        # A re-export of 16:00: the same key again (the latest export wins).
        queue_report(reports, "2024-03-10T16:00Z", [("Sales", "11")], exported="2024-03-10T17:05Z"),
        queue_report(reports, "2024-03-11T09:00Z", [("Sales", "3"), ("Billing", "2"), ("Support", "1")]),
    ]
    bad = queue_report(reports, "2024-03-12T09:00Z", [("Sales", "2"), ("Support", "x")])  # not a count
    days = utc_today_span()
    result = cx("run", connect_job(tmp_path))
    assert result.code == 3, result
    assert "connect-queue: reconciliation: 2 ok, 1 mismatch, 0 lost (cxlake_reconciliation)" in result.stdout, result
    assert f"  mismatch {QUEUE} dt={name_day(bad)}: 2 rows in 1 rejected file not loaded" in result.stdout, result

    lake = tmp_path / "lake"
    expected = per_day(loaded)
    _, bad_rows = csv_records(bad)
    [run] = runs(lake)
    [manifest] = (lake / "_etl" / "runs").glob("*.json")
    assert manifest.name == run["run_id"] + ".json"
    assert json.loads(manifest.read_text())["exit_code"] == 3
    assert str(run["dt"]) in days()
    assert (lake / "cxlake_runs" / f"dt={run['dt']}" / f"{run['run_id']}.parquet").exists()
    assert (run["job"], run["kind"], run["exit_code"], run["error"]) == ("connect-queue", "connect-intervals", 3, None)
    assert run["inputs"] == len(loaded) + 1 and run["rejects"] == 1 and run["api_calls"] == 0
    assert run["rows_in"] == sum(d["rows"] for d in expected.values())
    assert run["rows_out"] == sum(len(d["keys"]) for d in expected.values())
    assert run["bytes_written"] == sum(p.stat().st_size for p in (lake / QUEUE).rglob("*.parquet"))
    assert run["window_from"] is None and run["window_to"] is None
    assert run["reconciliation_status"] == "mismatch"

    rows = {r["data_partition"]: r for r in reconciliation(lake)}
    assert sorted(rows) == sorted(f"dt={d}" for d in [*expected, name_day(bad)])
    con = duckdb.connect()
    for day, figures in expected.items():
        r = rows[f"dt={day}"]
        in_lake = con.execute(f"select count(*) from read_parquet('{lake / QUEUE}/dt={day}/*.parquet')").fetchone()[0]
        assert (r["rows_read"], r["keys_read"], r["rows_written"], r["rows_rejected"]) == (
            figures["rows"], len(figures["keys"]), len(figures["keys"]), 0), r
        assert r["rows_written"] == in_lake
        assert (r["status"], r["table_name"], r["run_id"], r["job"]) == ("ok", QUEUE, run["run_id"], "connect-queue")
    assert "1 rows repeated a key (the latest export wins)" in rows["dt=2024-03-10"]["detail"]
    rejected = rows[f"dt={name_day(bad)}"]
    assert (rejected["rows_read"], rejected["rows_written"], rejected["rows_rejected"], rejected["status"]) == (
        0, None, len(bad_rows), "mismatch")
    assert "_etl/rejects/connect-queue/" in rejected["detail"]
    # A mismatch is a warning in the log too (JSON lines off a terminal).
    warnings = [json.loads(l) for l in result.stderr.splitlines() if l.startswith("{") and "reconciliation" in l]
    assert [(w["level"], w["status"], w["partition"]) for w in warnings] == [("WARN", "mismatch", f"dt={name_day(bad)}")]

    # Nothing new: one more runs row, no reconciliation rows (no partition touched).
    again = cx("run", connect_job(tmp_path))
    assert again.code == 0, again
    assert len(runs(lake)) == 2 and len(reconciliation(lake)) == len(rows)
    assert runs(lake)[1]["rows_out"] is None

    # A late file for 2024-03-11: its partition keeps what earlier files brought.
    late = queue_report(reports, "2024-03-11T09:30Z", [("Sales", "7")])
    third = cx("run", connect_job(tmp_path))
    assert third.code == 0, third
    latest = [r for r in reconciliation(lake) if r["run_id"] == runs(lake)[2]["run_id"]]
    everything = per_day([*loaded, late])["2024-03-11"]
    assert [(r["data_partition"], r["rows_read"], r["keys_read"], r["rows_written"], r["status"]) for r in latest] == [
        ("dt=2024-03-11", 1, 1, len(everything["keys"]), "ok")]
    assert f"{len(everything['keys']) - 1} rows kept from files read before" in latest[0]["detail"]


# --------------------------------------------------------------------------------------------
# salesforce-export


def seeded(emulator, sobject: str, incremental: bool) -> list[dict]:
    """The records the export's query matches: every one with queryAll (incremental), the live ones otherwise."""
    return [r for r in emulator.records(sobject) if incremental or not r.get("IsDeleted")]


@pytest.mark.parametrize("api,mode", [("bulk", "incremental"), ("rest", "snapshot")])
def test_export_reconciles_each_object_with_the_orgs_counts(emulator, cx, tmp_path, api, mode):
    objects = ("Account", CUSTOM)
    job = export_job(tmp_path, emulator.url, objects=objects, api=api, mode=mode, extra={"page_size": 20})
    days = utc_today_span()
    result = cx("run", job)
    assert result.code == 0, result
    assert "sf-export: reconciliation: 2 ok, 0 mismatch, 0 lost" in result.stdout, result
    lake = tmp_path / "lake"
    [run] = runs(lake)
    rows = {r["object"]: r for r in reconciliation(lake)}
    assert sorted(rows) == sorted(objects)
    stats = emulator.stats()
    for sobject in objects:
        records = seeded(emulator, sobject, mode == "incremental")
        r = rows[sobject]
        [history] = (lake / r["table_name"]).rglob("*.parquet")
        assert r["data_partition"] == history.parent.name
        assert (r["api"], r["status"]) == (api, "ok"), r
        # SELECT COUNT(), the API's own counts, the records received and the file all equal the org's records.
        assert r["soql_count"] == r["announced_records"] == r["rows_read"] == r["rows_written"] == len(records), r
        assert pq.read_metadata(history).num_rows == len(records)
        assert r["processed_records"] == (len(records) if api == "bulk" else None)
        assert r["deleted_records"] == sum(1 for x in records if x.get("IsDeleted"))
        assert r["rows_rejected"] == 0 and r["keys_read"] is None
    # The counts went over REST: one COUNT() per object (Bulk refuses aggregates), plus the REST queries.
    assert stats["query"] == len(objects) * (2 if api == "rest" else 1), stats
    assert stats.get("bulk_create", 0) == (len(objects) if api == "bulk" else 0), stats
    assert (run["kind"], run["exit_code"], str(run["dt"]) in days()) == ("salesforce-export", 0, True)
    assert run["inputs"] == len(objects) and run["rejects"] == 0
    assert run["rows_in"] == run["rows_out"] == sum(len(seeded(emulator, o, mode == "incremental")) for o in objects)
    assert run["api_calls"] == stats["total"] - stats.get("token", 0), (run, stats)


@pytest.mark.parametrize("api", ["bulk", "rest"])
def test_a_page_that_drops_a_record_is_a_mismatch_and_writes_nothing_of_its_object(emulator, cx, tmp_path, api):
    """The page lacks its last record while Sforce-NumberOfRecords (REST: totalSize) still counts
    it: the object is refused before anything of it is written and its watermark stays, so no
    row is lost; the run says so (a warning, exit 3) and the next run exports it whole."""
    job = export_job(tmp_path, emulator.url, objects=("Account", CUSTOM), api=api, extra={"page_size": 20})
    records = seeded(emulator, "Account", True)
    assert len(records) > 40  # Bulk: pages of 20, 20 and the rest; REST: one page of all
    page = 2 if api == "bulk" else 1
    emulator.faults(corrupt_page={"object": "Account", "page": page, "kind": "drop_record"})
    result = cx("run", job)
    assert result.code == 3, result
    assert "sf-export: reconciliation: 1 ok, 1 mismatch, 0 lost" in result.stdout, result
    counted = "Sforce-NumberOfRecords" if api == "bulk" else "totalSize"
    [line] = [l for l in result.stdout.splitlines() if l.startswith("  mismatch sf_account (Account): refused")]
    assert counted in line, line

    lake = tmp_path / "lake"
    r = {x["object"]: x for x in reconciliation(lake)}["Account"]
    # Bulk: pages 1 and 2 announced 40 and carried 39, then the object stopped; REST: 50 announced, 49 came.
    announced = 40 if api == "bulk" else len(records)
    assert (r["announced_records"], r["rows_read"], r["rows_rejected"]) == (announced, announced - 1, announced - 1), r
    assert (r["rows_written"], r["data_partition"], r["status"]) == (None, None, "mismatch"), r
    assert r["soql_count"] == len(records)
    assert r["processed_records"] == (len(records) if api == "bulk" else None)
    assert not (lake / "sf_account").exists()
    [run] = runs(lake)
    assert (run["exit_code"], run["reconciliation_status"]) == (3, "mismatch")
    warnings = [json.loads(l) for l in result.stderr.splitlines() if l.startswith("{") and "reconciliation" in l]
    assert [(w["level"], w["object"], w["status"]) for w in warnings] == [("WARN", "Account", "mismatch")]

    again = cx("run", job)
    assert again.code == 0, again
    latest = [x for x in reconciliation(lake) if x["run_id"] == runs(lake)[1]["run_id"]]
    account = {x["object"]: x for x in latest}["Account"]
    assert (account["rows_written"], account["status"]) == (len(records), "ok"), account


def test_a_failed_run_is_recorded_with_its_error(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk")
    emulator.faults(server_error_calls=1000, status=400)
    result = cx("run", job)
    assert result.code == 1, result
    lake = tmp_path / "lake"
    [run] = runs(lake)
    assert run["exit_code"] == 1 and run["rejects"] == 1
    [r] = reconciliation(lake)
    assert (r["object"], r["status"], r["rows_written"]) == ("Account", "mismatch", None)
    assert r["detail"].startswith("failed, nothing written, the watermark stays") and "SERVER_UNAVAILABLE" in r["detail"]


# --------------------------------------------------------------------------------------------
# interval-rollup and salesforce-pushback


def test_rollup_run_reconciles_each_rolled_up_partition(cx, tmp_path):
    reports = tmp_path / "reports"
    files = [
        queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10"), ("Support", "4")]),
        queue_report(reports, "2024-03-10T16:30Z", [("Sales", "12")]),
        queue_report(reports, "2024-03-10T17:00Z", [("Sales", "1"), ("Billing", "2")]),
        queue_report(reports, "2024-03-11T09:00Z", [("Sales", "3")]),
    ]
    assert cx("run", connect_job(tmp_path)).code == 0
    job = write_job(tmp_path, "rollup.toml", job={"name": "rollup-queue", "kind": "interval-rollup", "timezone": "UTC"},
                    rollup={"report": "queue", "grains": ["hourly", "daily"]}, lake={"url": "file://lake"})
    result = cx("run", job)
    assert result.code == 0, result
    lake = tmp_path / "lake"
    expected = per_day(files)
    rows = {(r["table_name"], r["data_partition"]): r for r in reconciliation(lake) if r["job"] == "rollup-queue"}
    for day, figures in expected.items():
        hours = {(queue, start[:13]) for queue, start in figures["keys"]}
        queues = {queue for queue, _ in figures["keys"]}
        for name, groups in (("connect_queue_hourly", hours), ("connect_queue_daily", queues)):
            r = rows.pop((name, f"dt={day}"))
            assert (r["rows_read"], r["rows_written"], r["status"]) == (len(figures["keys"]), len(groups), "ok"), r
    assert not rows
    run = [r for r in runs(lake) if r["job"] == "rollup-queue"][0]
    assert (run["kind"], run["inputs"], run["rows_in"]) == ("interval-rollup", len(expected), sum(len(d["keys"]) for d in expected.values()))


def test_pushback_run_reconciles_what_salesforce_answered(emulator, cx, tmp_path):
    from test_pushback import OBJECT, pushback_job

    reports = tmp_path / "reports"
    files = [
        queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10"), ("Support EU", "4")]),
        queue_report(reports, "2024-03-10T16:30Z", [("Sales", "12")]),
    ]
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    result = cx("run", pushback_job(tmp_path, emulator.url))
    assert result.code == 0, result
    keys = sum(len(d["keys"]) for d in per_day(files).values())
    [r] = [x for x in reconciliation(tmp_path / "lake") if x["job"] == "pushback-queue"]
    assert (r["table_name"], r["object"], r["status"]) == (QUEUE, OBJECT, "ok"), r
    assert r["rows_read"] == keys and r["rows_written"] == len(emulator.records(OBJECT)) == keys
    run = [x for x in runs(tmp_path / "lake") if x["job"] == "pushback-queue"][0]
    assert (run["kind"], run["rows_out"], run["exit_code"]) == ("salesforce-pushback", keys, 0)


# --------------------------------------------------------------------------------------------
# Glue (moto)


@pytest.mark.parametrize("partitions", ["projection", "register"])
def test_run_tables_are_glue_tables_with_the_files_columns(cx, tmp_path, aws, buckets, glue_database, partitions):
    s3, glue = aws["s3"], aws["glue"]
    path = queue_report(tmp_path / "local", "2024-03-10T09:00Z", [("Sales", "1")])
    s3.put_object(Bucket=buckets["reports"], Key=f"reports/{path.name}", Body=path.read_bytes())
    job = write_job(tmp_path, "job.toml", job={"name": "connect-queue", "kind": "connect-intervals", "timezone": "UTC"},
                    source={"url": f"s3://{buckets['reports']}/reports/", "report": "queue", "instance": "demo"},
                    lake={"url": f"s3://{buckets['lake']}/cxlake"},
                    catalog={"database": glue_database, "partitions": partitions})
    days = utc_today_span()
    result = cx("run", job, env=aws["env"])
    assert result.code == 0, result
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets["lake"], Prefix="cxlake/cxlake_")["Contents"]]
    assert len(keys) == 2, keys
    for name in ("cxlake_runs", "cxlake_reconciliation"):
        [key] = [k for k in keys if k.startswith(f"cxlake/{name}/dt=")]
        day = key.split("/")[2].removeprefix("dt=")
        assert day in days()
        local = tmp_path / f"{name}.parquet"
        local.write_bytes(s3.get_object(Bucket=buckets["lake"], Key=key)["Body"].read())
        schema = pq.read_schema(local)
        described = glue.get_table(DatabaseName=glue_database, Name=name)["Table"]
        columns = [(c["Name"], c["Type"]) for c in described["StorageDescriptor"]["Columns"]]
        glue_types = {**GLUE_TYPES, pa.int32(): "int"}
        assert columns == [(f.name, glue_types[f.type]) for f in schema], name
        assert [(k["Name"], k["Type"]) for k in described["PartitionKeys"]] == [("dt", "string")]
        location = f"s3://{buckets['lake']}/cxlake/{name}/"
        assert described["StorageDescriptor"]["Location"] == location
        assert described["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == \
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        params = described["Parameters"]
        if partitions == "projection":
            assert params["projection.enabled"] == "true" and params["projection.dt.type"] == "date"
            assert params["projection.dt.format"] == "yyyy-MM-dd"
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2},NOW\+1DAYS", params["projection.dt.range"])
            assert params["storage.location.template"] == location + "dt=${dt}/"
            assert glue.get_partitions(DatabaseName=glue_database, TableName=name)["Partitions"] == []
        else:
            assert params["projection.enabled"] == "false"
            registered = glue.get_partitions(DatabaseName=glue_database, TableName=name)["Partitions"]
            assert [(p["Values"], p["StorageDescriptor"]["Location"]) for p in registered] == [
                ([day], f"{location}dt={day}/")]
