"""connect-intervals into a file:// lake, read back the way Athena would (DuckDB, pyarrow)."""

from __future__ import annotations

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conftest import REPO, connect_job, write_job
from reports import HEADER, file_name, interval, quirky_day, row, write

TABLE = "connect_queue_interval"
UTC_MS = pa.timestamp("ms", tz="UTC")


def table(lake):
    return ds.dataset(lake / TABLE, format="parquet", partitioning="hive").to_table()


def rows_by_queue(lake):
    return {r["queue"]: r for r in table(lake).to_pylist()}


def partition_files(lake):
    return sorted((lake / TABLE).glob("dt=*/*.parquet"))


def test_every_quirk_lands_with_the_right_types_and_values(run, tmp_path):
    quirky_day(tmp_path / "reports")
    connect_job(tmp_path)
    result = run("run", "job.toml")
    assert result.returncode == 0, result.stderr
    lake = tmp_path / "lake"
    files = partition_files(lake)
    assert [f.relative_to(lake).as_posix() for f in files] == [f"{TABLE}/dt=2024-03-10/{TABLE}-2024-03-10.parquet"]

    schema = pq.read_schema(files[0])
    assert schema.field("instance").type == pa.string()
    assert schema.field("queue").type == pa.string()
    assert schema.field("interval_start").type == UTC_MS
    assert schema.field("interval_end").type == UTC_MS
    assert schema.field("interval_start_local").type == pa.timestamp("ms")
    assert schema.field("contacts_handled").type == pa.int64()
    assert schema.field("average_handle_time_seconds").type == pa.float64()
    assert schema.field("service_level_20_seconds_pct").type == pa.float64()
    assert schema.field("exported_at").type == UTC_MS
    # unknown headers become double columns appended at the end, by rule
    assert schema.names[-2:] == ["coffee_break_time_seconds", "frobnication_ratio"]
    assert schema.names.index("source_key") < schema.names.index("coffee_break_time_seconds")
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"

    rows = table(lake).to_pylist()
    assert len(rows) == 5
    by_key = {(r["queue"], r["interval_start"].strftime("%H:%M")): r for r in rows}
    sales = by_key[("Sales, EU", "16:00")]
    assert (sales["contacts_handled"], sales["average_handle_time_seconds"], sales["service_level_20_seconds_pct"]) == (10, 120.5, 87.5)
    assert sales["contacts_abandoned"] == 1
    assert sales["instance"] == "demo"
    assert sales["source_key"] == "file://reports/sfIntervalQueue-2024-03-10T16:30:00Z.csv"
    assert sales["exported_at"].isoformat() == "2024-03-10T16:30:00+00:00"
    assert sales["interval_end"].isoformat() == "2024-03-10T16:30:00+00:00"
    tier2 = by_key[('Support "Tier 2"', "16:00")]
    # '-' and blank are null
    assert [tier2[c] for c in ("contacts_handled", "average_handle_time_seconds", "service_level_20_seconds_pct", "contacts_abandoned")] == [None] * 4
    koln = by_key[("Köln\nÜberlauf", "16:30")]
    assert (koln["contacts_handled"], koln["coffee_break_time_seconds"], koln["frobnication_ratio"]) == (7, 60.0, 0.5)
    assert koln["average_handle_time_seconds"] is None  # column absent from that file
    assert by_key[("Sales, EU", "16:30")]["coffee_break_time_seconds"] is None
    billing = by_key[("Billing", "17:00")]
    assert (billing["average_handle_time_seconds"], billing["service_level_20_seconds_pct"]) == (3723.0, 100.0)
    # rows sorted by name, then interval
    keys = [(r["queue"], r["interval_start"]) for r in rows]
    assert keys == sorted(keys)


def test_duckdb_reads_the_lake_with_hive_partitioning(run, tmp_path):
    quirky_day(tmp_path / "reports")
    connect_job(tmp_path)
    assert run("run", "job.toml").returncode == 0
    con = duckdb.connect()
    rel = f"read_parquet('{tmp_path}/lake/{TABLE}/*/*.parquet', hive_partitioning = true)"
    got = con.sql(f"select dt::varchar, queue, sum(contacts_handled), count(*) from {rel} group by all order by all").fetchall()
    assert got == [
        ("2024-03-10", "Billing", 10, 1),
        ("2024-03-10", "Köln\nÜberlauf", 7, 1),
        ("2024-03-10", "Sales, EU", 13, 2),
        ("2024-03-10", 'Support "Tier 2"', None, 1),
    ]
    types = dict(con.sql(f"select column_name, column_type from (describe select * from {rel})").fetchall())
    assert types["interval_start"] == "TIMESTAMP WITH TIME ZONE"
    assert types["contacts_handled"] == "BIGINT"
    assert types["service_level_20_seconds_pct"] == "DOUBLE"


def two_days(folder):
    for day in ("2024-03-10", "2024-03-11"):
        for hhmm in ("09:00", "09:30"):
            s, e = interval(hhmm, day)
            write(folder, file_name(e), HEADER + "\n" + row("Sales", s, e) + "\n" + row("Billing", s, e, handled="4"))


def test_rerun_of_the_same_window_rewrites_nothing(run, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    assert run("run", "job.toml").returncode == 0
    files = partition_files(tmp_path / "lake")
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    again = run("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-11")
    assert again.returncode == 0, again.stderr
    assert "0 written, 2 unchanged" in again.stdout
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in partition_files(tmp_path / "lake")} == before


def test_corrected_reexport_wins_and_changes_only_its_partition(run, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    connect_job(tmp_path)
    assert run("run", "job.toml").returncode == 0
    lake = tmp_path / "lake"
    day10, day11 = partition_files(lake)
    before10, before11 = day10.read_bytes(), day11.read_bytes()
    mtime10 = day10.stat().st_mtime_ns
    # The 09:00 interval of the 11th exported again an hour later with corrected values.
    s, _ = interval("09:00", "2024-03-11")
    write(reports, "sfIntervalQueue-2024-03-11T10:30:00Z.csv", HEADER + "\n" + row("Sales", s, "2024-03-11T09:30:00.000Z", handled="99"))
    result = run("run", "job.toml")
    assert result.returncode == 0, result.stderr
    assert "1 files" in result.stdout  # only the new file since the watermark
    assert day10.read_bytes() == before10 and day10.stat().st_mtime_ns == mtime10
    assert day11.read_bytes() != before11
    rows = [r for r in table(lake).to_pylist() if r["queue"] == "Sales" and r["interval_start"].isoformat().startswith("2024-03-11T09:00")]
    assert len(rows) == 1
    assert rows[0]["contacts_handled"] == 99
    assert rows[0]["source_key"].endswith("sfIntervalQueue-2024-03-11T10:30:00Z.csv")
    assert table(lake).num_rows == 8  # nothing duplicated, nothing lost


def test_bad_files_are_rejected_with_reasons_and_the_rest_lands(run, tmp_path):
    reports = tmp_path / "reports"
    s, e = interval("10:00")
    write(reports, file_name(e), HEADER + "\n" + row("Good", s, e))
    bad = {
        "sfIntervalQueue-2024-03-10T11:00:00Z.csv": ("Name,StartInterval\nX,2024-03-10T10:30:00Z", None, None, "no grouping column"),
        "sfIntervalQueue-2024-03-10T11:30:00Z.csv": ("Queue,Contacts handled\nX,1", None, None, "StartInterval"),
        "sfIntervalQueue-2024-03-10T12:00:00Z.csv": (HEADER + "\n" + row("A", s, e) + "\nB," + s, 3, None, "truncated"),
        "sfIntervalQueue-2024-03-10T12:30:00Z.csv": (HEADER + "\n" + row("A", s, e) + "\n" + row("B", s, e, handled="abc"), 3, "Contacts handled", "abc"),
    }
    for name, (text, *_rest) in bad.items():
        write(reports, name, text)
    connect_job(tmp_path)
    result = run("run", "job.toml")
    assert result.returncode == 3, result.stdout + result.stderr
    rejects = tmp_path / "lake" / "_etl" / "rejects" / "connect-queue"
    for name, (text, line, column, words) in bad.items():
        assert (rejects / name).read_text() == text.strip("\n") + "\n"
        reason = json.loads((rejects / f"{name}.error.json").read_text())
        assert reason["source_key"] == f"file://reports/{name}"
        assert words in reason["reason"], reason
        if line is not None:
            assert (reason["line"], reason["column"]) == (line, column)
        assert name in result.stdout
    assert [r["queue"] for r in table(tmp_path / "lake").to_pylist()] == ["Good"]


def test_reporting_day_follows_the_job_time_zone_across_dst(run, tmp_path):
    reports = tmp_path / "reports"
    # America/New_York springs forward on 2024-03-10: local midnight is 05:00Z that day.
    for day, hhmm in (("2024-03-10", "04:30"), ("2024-03-10", "05:00"), ("2024-03-10", "07:00"), ("2024-03-11", "03:30")):
        s, e = interval(hhmm, day)
        write(reports, file_name(e), HEADER + "\n" + row("Sales", s, e))
    connect_job(tmp_path, timezone="America/New_York")
    assert run("run", "job.toml").returncode == 0
    rows = table(tmp_path / "lake").to_pylist()
    got = sorted((str(r["dt"]), r["interval_start"].strftime("%m-%dT%H:%M"), r["interval_start_local"].strftime("%m-%dT%H:%M")) for r in rows)
    assert got == [
        ("2024-03-09", "03-10T04:30", "03-09T23:30"),
        ("2024-03-10", "03-10T05:00", "03-10T00:00"),
        ("2024-03-10", "03-10T07:00", "03-10T03:00"),
        ("2024-03-10", "03-11T03:30", "03-10T23:30"),
    ]


def test_dry_run_prints_the_plan_and_writes_nothing(run, tmp_path):
    two_days(tmp_path / "reports")
    connect_job(tmp_path)
    result = run("run", "job.toml", "--dry-run", "--from", "2024-03-11")
    assert result.returncode == 0, result.stderr
    assert "sfIntervalQueue-2024-03-11T09:30:00Z.csv  ->  dt=2024-03-11" in result.stdout
    assert "2024-03-10T09:30" not in result.stdout
    assert not (tmp_path / "lake").exists()


def test_validate_reports_every_problem_at_once(run, tmp_path):
    write_job(tmp_path, job={"name": "Bad Name", "kind": "connect-intervals", "timezone": "Mars/Base", "colour": "x"},
              source={"url": "ftp://x", "report": "queues", "instance": "demo"}, lake={"url": "file://lake"})
    result = run("validate", "job.toml")
    assert result.returncode == 2
    for key in ("job.name", "job.timezone", "job.colour", "source.url", "source.report"):
        assert key in result.stderr, result.stderr
    assert "job.toml" in result.stderr


def test_every_example_job_validates(cxlake_bin):
    import subprocess

    jobs = sorted(str(p) for p in (REPO / "jobs").glob("*/*.toml"))
    assert jobs
    result = subprocess.run([cxlake_bin, "validate", *jobs], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_environment_overrides_the_lake_location(run, tmp_path):
    quirky_day(tmp_path / "reports")
    connect_job(tmp_path)
    result = run("run", "job.toml", env={"CXLAKE_LAKE_URL": "file://elsewhere"})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "lake").exists()
    assert len(list((tmp_path / "elsewhere" / TABLE).glob("dt=*/*.parquet"))) == 1


def test_watermark_run_reads_only_new_files(run, tmp_path):
    reports = tmp_path / "reports"
    two_days(reports)
    connect_job(tmp_path)
    assert run("run", "job.toml").returncode == 0
    state = json.loads((tmp_path / "lake/_etl/state/connect-queue.json").read_text())
    assert state["watermark"].startswith("2024-03-11T10:00:00")
    nothing = run("run", "job.toml")
    assert nothing.returncode == 0 and "0 files" in nothing.stdout
    s, e = interval("10:00", "2024-03-11")
    write(reports, file_name(e), HEADER + "\n" + row("Sales", s, e))
    one = run("run", "job.toml")
    assert "1 files" in one.stdout and "1 written" in one.stdout
    assert table(tmp_path / "lake").num_rows == 9
    os.remove(tmp_path / "lake/_etl/state/connect-queue.json")
