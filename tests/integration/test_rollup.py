"""interval-rollup: hourly and daily tables from the interval tables, formulas checked against
hand-computed values, reruns idempotent, only changed days rolled up, Glue tables in moto."""

from __future__ import annotations

import pytest

from conftest import connect_job, write_job
from fixtures import queue_report


def rollup_job(directory, *, report="queue", grains=("hourly", "daily"), lake="file://lake", catalog=None,
               timezone="America/New_York", name="rollup-queue", file="rollup.toml"):
    return write_job(directory, file, job={"name": name, "kind": "interval-rollup", "timezone": timezone},
                     rollup={"report": report, "grains": list(grains)}, lake={"url": lake},
                     catalog={"database": catalog} if catalog else None)


def daily(lake, table="connect_queue_daily"):
    import duckdb

    return duckdb.connect().sql(
        f"select * from read_parquet('{lake}/{table}/*/*.parquet', hive_partitioning = true) order by dt, queue"
    ).to_arrow_table().to_pylist()


@pytest.fixture
def interval_lake(cx, tmp_path):
    """Three intervals of 2024-03-10 (New York DST day) for queue Sales, with a `-` and a 0."""
    reports = tmp_path / "reports"
    # 01:30 EST, 03:00 EDT, 03:30 EDT
    queue_report(reports, "2024-03-10T06:30Z", [("Sales", "10", "120", "50.00%", "2")])
    queue_report(reports, "2024-03-10T07:00Z", [("Sales", "30", "200", "-", "0")])
    queue_report(reports, "2024-03-10T07:30Z", [("Sales", "-", "-", "0.00%", "-")])
    job = connect_job(tmp_path, timezone="America/New_York", file="connect.toml")
    result = cx("run", job)
    assert result.code == 0, result
    return tmp_path / "lake"


def test_daily_and_hourly_formulas_match_hand_computed_values(cx, tmp_path, interval_lake):
    result = cx("run", rollup_job(tmp_path))
    assert result.code == 0, result
    [day] = daily(interval_lake)
    assert str(day["dt"]) == "2024-03-10" and day["queue"] == "Sales" and day["intervals"] == 3
    assert day["contacts_handled"] == 40                      # 10 + 30 (+ '-')
    assert day["average_handle_time_seconds"] == 180.0        # (10×120 + 30×200) ÷ 40, not (120+200)/2
    assert day["contacts_abandoned"] == 2
    # Service level is weighted by contacts queued, which this report does not carry: it cannot be
    # recomputed, so it is null rather than a plain average of percentages.
    assert day["service_level_20_seconds_pct"] is None
    hours = daily(interval_lake, "connect_queue_hourly")
    assert [(h["intervals"], h["contacts_handled"], h["average_handle_time_seconds"]) for h in hours] == [
        (1, 10, 120.0), (2, 30, 200.0)]
    assert [str(h["hour_start_local"]) for h in hours] == ["2024-03-10 01:00:00", "2024-03-10 03:00:00"]


def test_rerun_is_idempotent_and_only_changed_days_roll_up(cx, tmp_path, interval_lake):
    job = rollup_job(tmp_path)
    assert cx("run", job).code == 0
    files = {p: p.read_bytes() for p in interval_lake.rglob("connect_queue_daily*.parquet")}
    again = cx("run", job)
    assert again.code == 0 and "0 days" in again.stdout, again
    window = cx("run", job, "--from", "2024-03-10", "--to", "2024-03-10")
    assert window.code == 0 and "0 partitions written, 2 unchanged" in window.stdout, window
    assert {p: p.read_bytes() for p in files} == files

    # A re-export changes one interval: the next run rolls up that day again.
    queue_report(tmp_path / "reports", "2024-03-10T07:00Z", [("Sales", "50", "200", "-", "0")],
                 exported="2024-03-10T12:00Z")
    assert cx("run", tmp_path / "connect.toml").code == 0
    changed = cx("run", job)
    assert changed.code == 0 and "1 days" in changed.stdout, changed
    [day] = daily(interval_lake)
    assert day["contacts_handled"] == 60
    assert day["average_handle_time_seconds"] == pytest.approx((10 * 120 + 50 * 200) / 60)


def test_rollup_tables_in_glue(cx, tmp_path, aws, buckets, glue_database):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10", "120", "50.00%", "2")])
    lake = f"s3://{buckets['lake']}/cxlake"
    assert cx("run", connect_job(tmp_path, lake=lake, file="connect.toml"), env=aws["env"]).code == 0
    result = cx("run", rollup_job(tmp_path, lake=lake, catalog=glue_database), env=aws["env"])
    assert result.code == 0, result
    for table in ("connect_queue_hourly", "connect_queue_daily"):
        t = aws["glue"].get_table(DatabaseName=glue_database, Name=table)["Table"]
        assert [k["Name"] for k in t["PartitionKeys"]] == ["dt"]
        columns = {c["Name"]: c["Type"] for c in t["StorageDescriptor"]["Columns"]}
        assert columns["intervals"] == "bigint" and columns["average_handle_time_seconds"] == "double"
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=buckets["lake"], Prefix="cxlake/connect_queue_daily/")["Contents"]]
    assert keys == ["cxlake/connect_queue_daily/dt=2024-03-10/connect_queue_daily-2024-03-10.parquet"]
