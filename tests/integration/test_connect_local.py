"""connect-intervals into a file:// lake, read back the way Athena would: DuckDB and pyarrow (and polars)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import REPO, connect_job, run_cxlake, write_job
from fixtures import (
    AGENT_FILE,
    ALIASES_FILE,
    BAD_FILES,
    GLUE_TYPES,
    GOOD_FILE,
    QUIRKY_ROWS,
    TWO_DAYS,
    agent_report,
    alias_headers_report,
    bad_files,
    expected_columns,
    file_name,
    half_hours,
    interval,
    quirky_day,
    queue_report,
    two_days,
    write,
)

QUEUE = "connect_queue_interval"
AGENT = "connect_agent_interval"
OLD = 946684800  # 2000-01-01: partition files are set to this mtime, so any rewrite is visible


# --------------------------------------------------------------------------------------------
# Reading the lake


def dataset(lake: pathlib.Path, table: str = QUEUE) -> ds.Dataset:
    partitioning = ds.partitioning(pa.schema([("dt", pa.string())]), flavor="hive")
    return ds.dataset(lake / table, format="parquet", partitioning=partitioning)


def rows(lake: pathlib.Path, table: str = QUEUE) -> list[dict]:
    return dataset(lake, table).to_table().to_pylist()


def partition_files(lake: pathlib.Path, table: str = QUEUE) -> list[pathlib.Path]:
    return sorted((lake / table).glob("dt=*/*.parquet"))


def relative(lake: pathlib.Path, files) -> list[str]:
    return [f.relative_to(lake).as_posix() for f in files]


def partition_path(table: str, day: str) -> str:
    return f"{table}/dt={day}/{table}-{day}.parquet"


def age(files) -> None:
    for f in files:
        os.utime(f, (OLD, OLD))


def snapshot(root: pathlib.Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root with its bytes and mtime."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def duck_rel(lake: pathlib.Path, table: str = QUEUE) -> str:
    return f"read_parquet('{(lake / table).as_posix()}/*/*.parquet', hive_partitioning = true)"


def hhmm(ts: dt.datetime) -> str:
    return ts.astimezone(dt.timezone.utc).strftime("%H:%M")


@pytest.fixture
def quirky_lake(cx, tmp_path):
    """The quirky day run once into ./lake with a UTC job."""
    quirky_day(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 0, result
    return tmp_path / "lake"


# --------------------------------------------------------------------------------------------
# Layout, schema, types


def test_quirky_reports_land_in_one_parquet_file_for_their_day(quirky_lake):
    assert relative(quirky_lake, partition_files(quirky_lake)) == [partition_path(QUEUE, "2024-03-10")]
    # nothing but partition files under the table folder (Athena reads everything there)
    assert [p.relative_to(quirky_lake).as_posix() for p in (quirky_lake / QUEUE).rglob("*") if p.is_file()] == [
        partition_path(QUEUE, "2024-03-10")]


def test_columns_follow_the_contract_order_and_types_with_unknown_headers_last(quirky_lake):
    schema = pq.read_schema(partition_files(quirky_lake)[0])
    expected = expected_columns("queue", unknown=("coffee_break_time_seconds", "frobnication_ratio"))
    assert schema.names == [name for name, _ in expected]
    assert [(f.name, f.type) for f in schema] == expected


def test_parquet_is_zstd_with_int64_millisecond_timestamps(quirky_lake):
    meta = pq.ParquetFile(partition_files(quirky_lake)[0]).metadata
    for rg in range(meta.num_row_groups):
        for col in range(meta.num_columns):
            assert meta.row_group(rg).column(col).compression == "ZSTD", meta.row_group(rg).column(col)
    parquet_schema = pq.ParquetFile(partition_files(quirky_lake)[0]).schema
    by_name = {parquet_schema.column(i).name: parquet_schema.column(i) for i in range(len(parquet_schema))}
    for name, utc_adjusted in (("interval_start", True), ("interval_end", True), ("exported_at", True), ("interval_start_local", False)):
        column = by_name[name]
        assert column.physical_type == "INT64", (name, column)  # never INT96
        logical = json.loads(column.logical_type.to_json())
        assert (logical["Type"], logical["timeUnit"], logical["isAdjustedToUTC"]) == ("Timestamp", "milliseconds", utc_adjusted), (name, logical)


def test_quirky_values_nulls_and_sort_order(quirky_lake):
    got = rows(quirky_lake)
    assert [(r["queue"], hhmm(r["interval_start"]), r["contacts_handled"], r["average_handle_time_seconds"],
             r["service_level_20_seconds_pct"], r["contacts_abandoned"], r["coffee_break_time_seconds"],
             r["frobnication_ratio"], r["source_key"].rsplit("/", 1)[-1]) for r in got] == QUIRKY_ROWS
    assert {r["instance"] for r in got} == {"demo"}
    assert {r["dt"] for r in got} == {"2024-03-10"}
    for r in got:
        assert r["interval_end"] - r["interval_start"] == dt.timedelta(minutes=30), r
        # UTC job: the local wall clock is the UTC time without a zone
        assert r["interval_start_local"] == r["interval_start"].replace(tzinfo=None), r
        assert r["interval_start"].tzinfo is not None and r["interval_start_local"].tzinfo is None


def test_lineage_columns_name_the_file_and_its_export_time(quirky_lake):
    by_key = {(r["queue"], hhmm(r["interval_start"])): r for r in rows(quirky_lake)}
    sales = by_key[("Sales, EU", "16:00")]
    assert sales["source_key"] == "file://reports/sfIntervalQueue-2024-03-10T16:30:00Z.csv"
    assert sales["exported_at"] == dt.datetime(2024, 3, 10, 16, 30, tzinfo=dt.timezone.utc)
    # the row from the +01:00 offset timestamps is the 16:30Z interval of the 17:00Z file
    offset_row = by_key[("Sales, EU", "16:30")]
    assert offset_row["interval_start"] == dt.datetime(2024, 3, 10, 16, 30, tzinfo=dt.timezone.utc)
    assert offset_row["interval_end"] == dt.datetime(2024, 3, 10, 17, 0, tzinfo=dt.timezone.utc)
    assert offset_row["exported_at"] == dt.datetime(2024, 3, 10, 17, 0, tzinfo=dt.timezone.utc)


def test_duckdb_reads_the_lake_with_hive_partitioning(quirky_lake):
    con = duckdb.connect()
    rel = duck_rel(quirky_lake)
    types = dict(con.sql(f"select column_name, column_type from (describe select * from {rel})").fetchall())
    assert types["instance"] == "VARCHAR"
    assert types["queue"] == "VARCHAR"
    assert types["interval_start"] == "TIMESTAMP WITH TIME ZONE"
    assert types["interval_end"] == "TIMESTAMP WITH TIME ZONE"
    assert types["exported_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["interval_start_local"] == "TIMESTAMP"
    assert types["contacts_handled"] == "BIGINT"
    assert types["average_handle_time_seconds"] == "DOUBLE"
    assert types["service_level_20_seconds_pct"] == "DOUBLE"
    assert types["coffee_break_time_seconds"] == "DOUBLE"
    assert "dt" in types  # the partition column comes from the path

    got = con.sql(f"select dt::varchar, queue, sum(contacts_handled), count(*), count(contacts_handled) "
                  f"from {rel} group by all order by all").fetchall()
    assert got == [
        ("2024-03-10", "Billing", 0, 1, 1),
        ("2024-03-10", "Köln\nÜberlauf", 7, 1, 1),
        ("2024-03-10", "Ops", 12, 1, 1),
        ("2024-03-10", "Sales, EU", 13, 2, 2),
        ("2024-03-10", 'Support "Tier 2"', None, 1, 0),
    ]
    assert con.execute(f"select max(service_level_20_seconds_pct), min(service_level_20_seconds_pct) from {rel}").fetchone() == (100.0, 0.0)
    # partition pruning on dt works like in Athena
    assert con.execute(f"select count(*) from {rel} where dt = '2024-03-10'").fetchone() == (6,)
    assert con.execute(f"select count(*) from {rel} where dt = '2024-03-11'").fetchone() == (0,)


def test_polars_reads_the_lake_with_the_same_types(quirky_lake):
    frame = pl.read_parquet(f"{(quirky_lake / QUEUE).as_posix()}/*/*.parquet", hive_partitioning=True)
    assert frame.height == 6
    assert frame.schema["interval_start"] == pl.Datetime("ms", "UTC")
    assert frame.schema["interval_start_local"] == pl.Datetime("ms")
    assert frame.schema["contacts_handled"] == pl.Int64
    assert frame.schema["occupancy_pct"] == pl.Float64
    assert frame["contacts_handled"].sum() == 32


def test_agent_report_lands_in_the_agent_table(cx, tmp_path):
    agent_report(tmp_path / "agents")
    connect_job(tmp_path, source="file://agents/", report="agent", name="connect-agent")
    result = cx("run", "job.toml")
    assert result.code == 0, result
    lake = tmp_path / "lake"
    assert relative(lake, partition_files(lake, AGENT)) == [partition_path(AGENT, "2024-03-10")]
    assert not (lake / QUEUE).exists()
    schema = pq.read_schema(partition_files(lake, AGENT)[0])
    assert [(f.name, f.type) for f in schema] == expected_columns("agent", unknown=("lunch_time_seconds",))
    got = rows(lake, AGENT)
    assert [(r["agent"], r["agent_name"], r["agent_first_name"], r["contacts_handled"], r["occupancy_pct"],
             r["agent_answer_rate_pct"], r["lunch_time_seconds"]) for r in got] == [
        ("asmith", "Al Smith", "Al", None, None, None, None),
        ("jdoe", "Doe, Jane", "Jane", 4, 75.25, 100.0, 300.0),
    ]
    assert got[1]["source_key"].endswith("/" + AGENT_FILE)


def test_header_spellings_and_aliases_map_to_known_columns(cx, tmp_path):
    alias_headers_report(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 0, result
    files = partition_files(tmp_path / "lake")
    # no column was invented for a known metric
    assert [(f.name, f.type) for f in pq.read_schema(files[0])] == expected_columns("queue")
    (row,) = rows(tmp_path / "lake")
    assert (row["queue"], row["contacts_handled"], row["contacts_abandoned"], row["non_productive_time_seconds"],
            row["contacts_handled_connected_to_agent"], row["contacts_transferred_out_from_queue"]) == ("Sales", 5, 2, 30.0, 4, 1)
    assert row["interval_start"] == dt.datetime(2024, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
    assert row["source_key"].endswith("/" + ALIASES_FILE)


# --------------------------------------------------------------------------------------------
# One row per key, later export wins


def test_later_export_of_an_interval_wins_within_one_run(cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10", "100"), ("Billing", "3")])
    # A later file restates the 16:00 interval (Sales corrected, Billing gone from it) and adds 17:30.
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "11", "-")], exported="2024-03-10T19:00:00Z")
    queue_report(reports, "2024-03-10T17:30Z", [("Sales", "5")])
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 0, result
    got = [(r["queue"], hhmm(r["interval_start"]), r["contacts_handled"], r["average_handle_time_seconds"],
            r["exported_at"].strftime("%H:%M")) for r in rows(tmp_path / "lake")]
    assert got == [
        ("Billing", "16:00", 3, 120.5, "16:30"),
        ("Sales", "16:00", 11, None, "19:00"),  # the whole row comes from the later file
        ("Sales", "17:30", 5, 120.5, "18:00"),
    ]


def test_older_export_processed_later_does_not_replace_the_newer_row(cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "11")], exported="2024-03-10T18:00:00Z")
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    # the original export (earlier name time) shows up afterwards and the day is rerun
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10")])
    result = cx("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-10")
    assert result.code == 0, result
    (row,) = rows(tmp_path / "lake")
    assert (row["contacts_handled"], row["exported_at"].strftime("%H:%M")) == (11, "18:00")


def test_each_instance_queue_and_interval_appears_once(cx, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    queue_report(reports, "2024-03-10T09:00Z", [("Sales", "12"), ("Billing", "4")], exported="2024-03-10T11:00:00Z")
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    con = duckdb.connect()
    dupes = con.sql(f"select instance, queue, interval_start, count(*) from {duck_rel(tmp_path / 'lake')} "
                    f"group by all having count(*) > 1").fetchall()
    assert dupes == []
    assert con.execute(f"select count(*) from {duck_rel(tmp_path / 'lake')}").fetchone() == (8,)


# --------------------------------------------------------------------------------------------
# Reruns, corrections, watermark


def test_rerun_of_the_same_window_rewrites_nothing(cx, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    lake = tmp_path / "lake"
    files = partition_files(lake)
    assert relative(lake, files) == [partition_path(QUEUE, d) for d in TWO_DAYS]
    age(files)
    before = snapshot(lake / QUEUE)
    again = cx("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-11")
    assert again.code == 0, again
    assert snapshot(lake / QUEUE) == before  # same files, same bytes, same mtimes


def test_rerun_without_new_files_rewrites_nothing(cx, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    lake = tmp_path / "lake"
    assert relative(lake, partition_files(lake)) == [partition_path(QUEUE, d) for d in TWO_DAYS]
    age(partition_files(lake))
    before = snapshot(lake / QUEUE)
    again = cx("run", "job.toml")
    assert again.code == 0, again
    assert snapshot(lake / QUEUE) == before


def test_corrected_reexport_wins_and_changes_only_its_partition(cx, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    lake = tmp_path / "lake"
    day10, day11 = partition_files(lake)
    age([day10, day11])
    before10, before11 = snapshot(day10.parent), day11.read_bytes()
    # The 09:00 interval of the 11th exported again an hour later with a corrected count.
    corrected = queue_report(reports, "2024-03-11T09:00Z", [("Sales", "99")], exported="2024-03-11T10:30:00Z")
    result = cx("run", "job.toml")
    assert result.code == 0, result
    assert snapshot(day10.parent) == before10
    assert day11.read_bytes() != before11
    got = [r for r in rows(lake) if r["dt"] == "2024-03-11"]
    assert [(r["queue"], hhmm(r["interval_start"]), r["contacts_handled"]) for r in got] == [
        ("Billing", "09:00", 4), ("Billing", "09:30", 4), ("Sales", "09:00", 99), ("Sales", "09:30", 10)]
    assert got[2]["source_key"].endswith("/" + corrected.name)
    assert len(rows(lake)) == 8  # nothing duplicated, nothing lost


def test_scheduled_run_reads_new_files_and_late_files_within_the_lookback(cx, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    lake = tmp_path / "lake"
    state = json.loads((lake / "_etl/state/connect-queue.json").read_text())
    assert "2024-03-11T10:00:00" in str(state["watermark"])  # export time of the newest report read

    # a new export after the watermark is picked up by a plain run, and so is a late file whose
    # name time is before the watermark but within the lookback (3 days by default) ...
    queue_report(reports, "2024-03-11T10:00Z", [("Sales", "7")])
    queue_report(reports, "2024-03-10T08:00Z", [("Late", "1")])
    # ... but not one named more than the lookback before the watermark
    queue_report(reports, "2024-03-01T08:00Z", [("Ancient", "1")])
    result = cx("run", "job.toml")
    assert result.code == 0, result
    got = rows(lake)
    assert ("Sales", "10:00", 7) in [(r["queue"], hhmm(r["interval_start"]), r["contacts_handled"]) for r in got]
    assert "Late" in {r["queue"] for r in got}
    assert "Ancient" not in {r["queue"] for r in got}
    assert len(got) == 10
    state = json.loads((lake / "_etl/state/connect-queue.json").read_text())
    assert "2024-03-11T10:30:00" in str(state["watermark"])

    # ... until its day is rerun explicitly
    result = cx("run", "job.toml", "--from", "2024-03-01", "--to", "2024-03-01")
    assert result.code == 0, result
    assert "Ancient" in {r["queue"] for r in rows(lake)}
    assert len(rows(lake)) == 11


# --------------------------------------------------------------------------------------------
# Rejects


def test_bad_files_are_rejected_with_reasons_and_the_rest_lands(cx, tmp_path):
    sources = bad_files(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 3, result
    lake = tmp_path / "lake"
    rejects = lake / "_etl" / "rejects" / "connect-queue"
    assert sorted(p.name for p in rejects.iterdir()) == sorted([*BAD_FILES, *(f"{n}.error.json" for n in BAD_FILES)])
    for name, (_text, _crlf, line, column, words) in BAD_FILES.items():
        assert (rejects / name).read_bytes() == sources[name].read_bytes(), name  # a copy of the original
        reason = json.loads((rejects / f"{name}.error.json").read_text(encoding="utf-8"))
        assert {"source_key", "line", "column", "reason"} <= reason.keys(), reason
        assert reason["source_key"] == f"file://reports/{name}"
        assert isinstance(reason["reason"], str) and reason["reason"].strip(), reason
        assert words in reason["reason"].lower(), reason
        if line is None:  # header problems: no data line, or the header line
            assert reason["line"] in (None, 1), reason
        else:
            assert (reason["line"], reason["column"]) == (line, column), (name, reason)
    # the good file landed, and nothing of the rejected files (not even their good rows)
    assert [(r["queue"], r["source_key"]) for r in rows(lake)] == [("Good", f"file://reports/{GOOD_FILE}")]


def test_a_run_with_only_good_files_exits_0_and_writes_no_rejects(cx, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 0, result
    assert len(rows(tmp_path / "lake")) == 8
    assert not (tmp_path / "lake/_etl/rejects").exists() or not any((tmp_path / "lake/_etl/rejects").rglob("*"))


# --------------------------------------------------------------------------------------------
# Time zones and DST


def dst_spring_reports(reports: pathlib.Path) -> None:
    # America/New_York springs forward on 2024-03-10: local day = 05:00Z on the 10th .. 04:00Z on the 11th
    for start in half_hours("2024-03-10T04:00Z", "2024-03-11T04:30Z"):
        queue_report(reports, start, [("Sales", "1")])


def test_reporting_day_follows_the_job_time_zone_on_the_spring_forward_day(cx, tmp_path):
    dst_spring_reports(tmp_path / "reports")
    connect_job(tmp_path, timezone="America/New_York")
    result = cx("run", "job.toml")
    assert result.code == 0, result
    lake = tmp_path / "lake"
    assert relative(lake, partition_files(lake)) == [partition_path(QUEUE, d) for d in ("2024-03-09", "2024-03-10", "2024-03-11")]
    got = {r["interval_start"].strftime("%m-%dT%H:%M"): (r["dt"], r["interval_start_local"].strftime("%m-%dT%H:%M")) for r in rows(lake)}
    assert got["03-10T04:30"] == ("2024-03-09", "03-09T23:30")
    assert got["03-10T05:00"] == ("2024-03-10", "03-10T00:00")
    assert got["03-10T06:30"] == ("2024-03-10", "03-10T01:30")
    assert got["03-10T07:00"] == ("2024-03-10", "03-10T03:00")  # 02:00-02:59 does not exist that night
    assert got["03-11T03:30"] == ("2024-03-10", "03-10T23:30")
    assert got["03-11T04:00"] == ("2024-03-11", "03-11T00:00")

    con = duckdb.connect()
    per_day = con.sql(f"select dt::varchar, count(*), count(distinct interval_start_local) from {duck_rel(lake)} group by 1 order by 1").fetchall()
    assert per_day == [("2024-03-09", 2, 2), ("2024-03-10", 46, 46), ("2024-03-11", 2, 2)]
    assert con.execute(f"select count(*) from {duck_rel(lake)} where hour(interval_start_local) = 2 and dt = '2024-03-10'").fetchone() == (0,)


def test_fall_back_day_has_50_intervals_with_repeated_local_times(cx, tmp_path):
    reports = tmp_path / "reports"
    # America/New_York falls back on 2024-11-03: local day = 04:00Z on the 3rd .. 05:00Z on the 4th
    for start in half_hours("2024-11-03T03:30Z", "2024-11-04T04:30Z"):
        queue_report(reports, start, [("Sales", "1")])
    connect_job(tmp_path, timezone="America/New_York")
    assert cx("run", "job.toml").code == 0
    day = [r for r in rows(tmp_path / "lake") if r["dt"] == "2024-11-03"]
    assert len(day) == 50
    assert {r["dt"] for r in rows(tmp_path / "lake")} == {"2024-11-02", "2024-11-03"}
    locals_ = [r["interval_start_local"].strftime("%H:%M") for r in day]
    assert locals_.count("01:00") == 2 and locals_.count("01:30") == 2 and locals_.count("02:00") == 1
    # sorted by interval_start (UTC), not by local wall clock
    starts = [r["interval_start"] for r in day]
    assert starts == sorted(starts)


def test_from_and_to_are_days_in_the_job_time_zone(cx, tmp_path):
    dst_spring_reports(tmp_path / "reports")
    connect_job(tmp_path, timezone="America/New_York")
    result = cx("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-10", "--dry-run")
    assert result.code == 0, result
    planned = {word for line in result.stdout.splitlines() for word in line.replace("/", " ").split() if word.endswith(".csv")}
    expected = {file_name(interval(s)[1]) for s in half_hours("2024-03-10T05:00Z", "2024-03-11T03:30Z")}
    assert len(expected) == 46
    assert planned == expected
    for line in result.stdout.splitlines():
        if ".csv" in line:
            assert "dt=2024-03-10" in line, line
    assert not (tmp_path / "lake").exists()


# --------------------------------------------------------------------------------------------
# Dry run


def test_dry_run_prints_each_file_with_its_partition_and_writes_nothing(cx, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml", "--dry-run", "--from", "2024-03-11", "--to", "2024-03-11")
    assert result.code == 0, result
    for name in ("sfIntervalQueue-2024-03-11T09:30:00Z.csv", "sfIntervalQueue-2024-03-11T10:00:00Z.csv"):
        (line,) = [l for l in result.stdout.splitlines() if name in l]
        assert "dt=2024-03-11" in line, line
    assert "2024-03-10T09:30" not in result.stdout and "2024-03-10T10:00" not in result.stdout
    assert not (tmp_path / "lake").exists()


def test_dry_run_on_an_existing_lake_changes_nothing(cx, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    new = queue_report(reports, "2024-03-12T09:00Z", [("Sales", "1")])
    bad = write(reports, "sfIntervalQueue-2024-03-12T10:00:00Z.csv", "Queue,Contacts handled\nX,1\n")
    lake = tmp_path / "lake"
    age(partition_files(lake))
    before = snapshot(lake)
    result = cx("run", "job.toml", "--dry-run")
    assert result.code in (0, 3), result
    assert [l for l in result.stdout.splitlines() if new.name in l][0].count("dt=2024-03-12") == 1
    assert "sfIntervalQueue-2024-03-11T09:30:00Z.csv" not in result.stdout  # already read: below the watermark
    assert snapshot(lake) == before  # no partition, no reject, no state change
    assert bad.exists()


# --------------------------------------------------------------------------------------------
# Job files, validation, usage


def test_validate_reports_every_problem_at_once(cx, tmp_path):
    write_job(tmp_path, job={"name": "connect-queue", "kind": "connect-intervals", "timezone": "Mars/Base", "colour": "x"},
              source={"url": "ftp://x/", "report": "queues", "instance": "demo"}, lake={"url": "file://lake"})
    result = cx("validate", "job.toml")
    assert result.code == 2, result
    for key in ("job.timezone", "job.colour", "source.report", "source.url"):
        assert key in result.output, (key, result)
    assert "job.toml" in result.output


def test_validate_reports_a_bad_kind_together_with_other_problems(cx, tmp_path):
    # the brief's example: job.kind, source.report and job.timezone named by one validate call
    write_job(tmp_path, job={"name": "connect-queue", "kind": "connect-interval", "timezone": "Mars/Base"},
              source={"url": "file://reports/", "report": "queues", "instance": "demo"}, lake={"url": "file://lake"})
    result = cx("validate", "job.toml")
    assert result.code == 2, result
    for key in ("job.kind", "source.report", "job.timezone"):
        assert key in result.output, (key, result)


def test_validate_names_the_bad_file_among_several(cx, tmp_path):
    connect_job(tmp_path, file="good.toml")
    write_job(tmp_path, "bad.toml", job={"name": "x", "kind": "connect-intervals", "timezone": "UTC"},
              source={"url": "file://reports/", "report": "queue", "instance": "demo"}, lake={"url": "file://lake"},
              extra={"key": "value"})
    result = cx("validate", "good.toml", "bad.toml")
    assert result.code == 2, result
    assert "bad.toml" in result.output and "extra" in result.output
    assert cx("validate", "good.toml").code == 0


def test_every_job_file_in_the_repository_validates(cxlake_bin):
    jobs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "jobs").glob("*/*.toml"))
    assert jobs
    result = run_cxlake(["validate", *jobs], REPO, binary=cxlake_bin)
    assert result.code == 0, result


def test_run_with_an_invalid_job_exits_2_and_writes_nothing(cx, tmp_path):
    two_days(tmp_path / "reports")
    write_job(tmp_path, job={"name": "connect-queue", "kind": "connect-intervals", "timezone": "UTC"},
              source={"url": "file://reports/", "report": "queue", "instance": "demo", "typo_key": "1"}, lake={"url": "file://lake"})
    result = cx("run", "job.toml")
    assert result.code == 2, result
    assert "source.typo_key" in result.output
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("args", [
    ["run"],
    ["run", "missing.toml"],
    ["validate", "missing.toml"],
    ["run", "job.toml", "--from", "2024-13-01"],
    ["run", "job.toml", "--from", "10/03/2024"],
    ["frobnicate", "job.toml"],
], ids=["run-without-job", "run-missing-file", "validate-missing-file", "bad-month", "bad-date-format", "unknown-command"])
def test_bad_usage_exits_2(cx, tmp_path, args):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx(*args)
    assert result.code == 2, result
    assert result.stderr.strip(), result  # says what is wrong
    assert not (tmp_path / "lake").exists()


def test_schema_command_lists_columns_with_glue_types(cx, tmp_path):
    (tmp_path / "reports").mkdir()
    connect_job(tmp_path)
    result = cx("schema", "job.toml")
    assert result.code == 0, result
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for name, arrow_type in expected_columns("queue"):
        assert name in lines, (name, result.stdout)
        assert GLUE_TYPES[arrow_type] in lines[name].split(), lines[name]
    assert QUEUE in result.stdout
    assert "connect_interval_coverage" in result.stdout and "status" in lines, result.stdout


def test_schema_command_does_not_need_the_source_folder(cx, tmp_path):
    # printing a table's columns reads no report; a job whose reports have not arrived yet still has a schema
    connect_job(tmp_path)
    result = cx("schema", "job.toml")
    assert result.code == 0, result
    assert "contacts_handled" in result.stdout


# --------------------------------------------------------------------------------------------
# Environment overrides


def test_environment_overrides_the_lake_location(cx, tmp_path):
    quirky_day(tmp_path / "reports")
    connect_job(tmp_path)
    result = cx("run", "job.toml", env={"CXLAKE_LAKE_URL": "file://elsewhere"})
    assert result.code == 0, result
    assert not (tmp_path / "lake").exists()
    assert relative(tmp_path / "elsewhere", partition_files(tmp_path / "elsewhere")) == [partition_path(QUEUE, "2024-03-10")]
    assert (tmp_path / "elsewhere/_etl/state/connect-queue.json").exists()


def test_environment_overrides_source_instance_and_time_zone(cx, tmp_path):
    queue_report(tmp_path / "other", "2024-03-10T04:30Z", [("Sales", "1")])
    connect_job(tmp_path)  # reports/, instance demo, UTC
    result = cx("run", "job.toml", env={"CXLAKE_SOURCE_URL": "file://other/", "CXLAKE_SOURCE_INSTANCE": "prod",
                                        "CXLAKE_JOB_TIMEZONE": "America/New_York"})
    assert result.code == 0, result
    (row,) = rows(tmp_path / "lake")
    assert (row["instance"], row["dt"], row["interval_start_local"]) == ("prod", "2024-03-09", dt.datetime(2024, 3, 9, 23, 30))
    assert row["source_key"] == "file://other/sfIntervalQueue-2024-03-10T05:00:00Z.csv"


# --------------------------------------------------------------------------------------------
# Schema evolution, several jobs, failures


def test_unknown_header_in_a_later_run_adds_a_column_and_old_rows_stay_readable(cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T09:00Z", [("Sales", "10")])
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    write(reports, "sfIntervalQueue-2024-03-11T09:30:00Z.csv",
          "Queue,StartInterval,EndInterval,Contacts handled,Lunch time\n"
          "Sales,2024-03-11T09:00:00.000Z,2024-03-11T09:30:00.000Z,4,900\n")
    result = cx("run", "job.toml")
    assert result.code == 0, result
    lake = tmp_path / "lake"
    new_schema = pq.read_schema(lake / partition_path(QUEUE, "2024-03-11"))
    assert new_schema.names[-1] == "lunch_time_seconds" and new_schema.field("lunch_time_seconds").type == pa.float64()
    con = duckdb.connect()
    got = con.sql(f"select dt::varchar, contacts_handled, lunch_time_seconds from "
                  f"read_parquet('{(lake / QUEUE).as_posix()}/*/*.parquet', hive_partitioning = true, union_by_name = true) order by 1").fetchall()
    assert got == [("2024-03-10", 10, None), ("2024-03-11", 4, 900.0)]


def test_two_jobs_in_one_invocation_write_both_tables(cx, tmp_path):
    quirky_day(tmp_path / "queue")
    agent_report(tmp_path / "agent")
    connect_job(tmp_path, source="file://queue/", name="q", file="q.toml")
    connect_job(tmp_path, source="file://agent/", report="agent", name="a", file="a.toml")
    result = cx("run", "q.toml", "a.toml")
    assert result.code == 0, result
    lake = tmp_path / "lake"
    assert (len(rows(lake, QUEUE)), len(rows(lake, AGENT))) == (6, 2)
    assert (lake / "_etl/state/a.json").is_file() and (lake / "_etl/state/q.json").is_file()


def test_unwritable_lake_fails_with_exit_1(cx, tmp_path):
    two_days(tmp_path / "reports")
    (tmp_path / "lake").write_text("a file where the lake folder should be\n")
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 1, result
    assert (tmp_path / "lake").read_text() == "a file where the lake folder should be\n"


# --------------------------------------------------------------------------------------------
# Beyond the brief's contract: behaviour the binary documents (kept from the earlier suite)


def test_ui_style_hh_mm_ss_times_are_read_as_seconds(cx, tmp_path):
    queue_report(tmp_path / "reports", "2024-03-10T17:00Z", [("Billing", "1", "01:02:03")])
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    (row,) = rows(tmp_path / "lake")
    assert row["average_handle_time_seconds"] == 3723.0


def test_run_summary_counts_written_and_unchanged_partitions(cx, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    first = cx("run", "job.toml")
    assert "2 written, 0 unchanged" in first.stdout, first
    again = cx("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-11")
    assert "0 written, 2 unchanged" in again.stdout, again
