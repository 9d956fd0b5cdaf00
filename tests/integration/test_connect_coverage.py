"""Every interval accounted for: the coverage table names the intervals no report covers, and a job
with `[fill]` fills them from the Connect API (the fake in tests/fakes, answering from a synthetic
contact center that also writes the reports), until a late report replaces the API's rows.

Expected values come from the report files (the demo's, or the synthetic center's) and from the
time zone rules (46/48/50 intervals a day), never from cxlake."""

from __future__ import annotations

import csv
import datetime as dt
import json
import pathlib
import re
import shutil
import tomllib
import zoneinfo

import pyarrow.parquet as pq
import pytest

from conftest import REPO

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.timezone.utc
DEMO_QUEUE = REPO / "examples" / "connect" / "Reports" / "SFDC" / "Queue"
METRICS = tomllib.loads((REPO / "schemas" / "connect_metrics.toml").read_text(encoding="utf-8"))
MAPPING = tomllib.loads((REPO / "schemas" / "connect_api_metrics.toml").read_text(encoding="utf-8"))
TABLES = {"queue": "connect_queue_interval", "agent": "connect_agent_interval"}
SCHEDULE = {"queue": "sfIntervalQueue", "agent": "sfIntervalAgent"}


def job_file(folder: pathlib.Path, report: str, source: pathlib.Path, lake: pathlib.Path, fill: str = "") -> pathlib.Path:
    path = folder / f"{report}.toml"
    path.write_text(
        f'[job]\nname = "cov-{report}"\nkind = "connect-intervals"\ntimezone = "America/New_York"\n'
        f'[source]\nurl = "file://{source}/"\nreport = "{report}"\ninstance = "demo"\n'
        f'[lake]\nurl = "file://{lake}"\n{fill}',
        encoding="utf-8",
    )
    return path


def fill_section(fake, rate: float = 10) -> str:
    return f'[fill]\ninstance_arn = "{fake.instance_arn}"\nrequests_per_second = {rate}\n'


def fake_env(fake) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_CONNECT": fake.url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}


def coverage(lake: pathlib.Path, job: str) -> dict[str, list[dict]]:
    """Coverage rows by dt, in interval order."""
    out = {}
    for path in sorted((lake / "connect_interval_coverage").glob(f"dt=*/{job}.parquet")):
        rows = pq.read_table(path).to_pylist()
        out[path.parent.name[3:]] = sorted(rows, key=lambda r: r["interval_start"])
    return out


def interval_of(name: str) -> dt.datetime:
    """The interval a report file covers: the 30 minutes before the time in its name."""
    end = dt.datetime.strptime(name.split("-", 1)[1].removesuffix(".csv"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return end - dt.timedelta(minutes=30)


def emf(stdout: str) -> dict:
    [line] = [json.loads(x) for x in stdout.splitlines() if x.startswith("{") and '"_aws"' in x]
    return line


def local_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), NY).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), NY).astimezone(UTC)
    return start, end


# --------------------------------------------------------------------------------------------
# Acceptance 1: the coverage names exactly the missing intervals; 46 / 48 / 50 a day


def test_removed_demo_files_are_exactly_the_missing_intervals_and_a_whole_day_shows_none(cx, tmp_path):
    source = tmp_path / "Queue"
    shutil.copytree(DEMO_QUEUE, source)
    # 2024-03-10 is the spring-forward day in New York: 23 hours, 46 intervals.
    day_files = sorted(p.name for p in source.iterdir() if interval_of(p.name).astimezone(NY).date() == dt.date(2024, 3, 10))
    assert len(day_files) == 46
    removed = [day_files[10], day_files[11], day_files[12], day_files[30]]
    for name in removed:
        (source / name).unlink()
    job = job_file(tmp_path, "queue", source, tmp_path / "lake")
    result = cx("run", str(job))
    assert result.code == 0, result  # a missing export is not a failed run

    days = coverage(tmp_path / "lake", "cov-queue")
    spring = days["2024-03-10"]
    assert len(spring) == 46
    missing = [r["interval_start"] for r in spring if r["status"] == "missing"]
    assert missing == sorted(interval_of(n) for n in removed)
    assert all(r["status"] == "report" for r in spring if r["interval_start"] not in missing)
    assert [r["rows"] for r in spring if r["status"] == "missing"] == [0, 0, 0, 0]
    # 2024-03-09 is whole: 48 intervals, none missing; its rows match the table's
    whole = days["2024-03-09"]
    assert len(whole) == 48 and {r["status"] for r in whole} == {"report"}
    table = pq.read_table(tmp_path / "lake" / TABLES["queue"] / "dt=2024-03-09").to_pylist()
    assert sum(r["rows"] for r in whole) == len(table)
    # the summary says it in one line, with the local ranges; the run's metric carries the count
    [line] = [x for x in result.stdout.splitlines() if "coverage (connect_interval_coverage)" in x]
    reported_missing = sum(1 for rows in days.values() for r in rows if r["status"] == "missing")
    assert f"{reported_missing} MISSING" in line
    first, last = (interval_of(n).astimezone(NY) for n in (removed[0], removed[2]))
    assert f"2024-03-10 {first:%H:%M}–{last + dt.timedelta(minutes=30):%H:%M}" in line
    assert emf(result.stdout)["MissingIntervals"] == reported_missing
    assert {"Name": "MissingIntervals", "Unit": "Count"} in emf(result.stdout)["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    runs = pq.read_table(tmp_path / "lake" / "cxlake_runs").to_pylist()
    assert [r["missing_intervals"] for r in runs] == [reported_missing]

    # putting the files back fills the holes; a rerun with nothing new writes nothing
    for name in removed:
        shutil.copy(DEMO_QUEUE / name, source / name)
    again = cx("run", str(job))
    assert again.code == 0, again
    assert {r["status"] for r in coverage(tmp_path / "lake", "cov-queue")["2024-03-10"]} == {"report"}
    quiet = cx("run", str(job))
    assert quiet.code == 0 and " 0 PUT" in quiet.stdout, quiet


def test_a_fall_back_day_expects_50_intervals(cx, tmp_path, connect_api):
    start, end = local_day_bounds(dt.date(2024, 11, 3))
    fake = connect_api(start, end, seed=5)
    fake.center.write_reports(tmp_path / "Queue", "queue")
    job = job_file(tmp_path, "queue", tmp_path / "Queue", tmp_path / "lake")
    result = cx("run", str(job))
    assert result.code == 0, result
    day = coverage(tmp_path / "lake", "cov-queue")["2024-11-03"]
    assert len(day) == 50 and {r["status"] for r in day} == {"report"}


# --------------------------------------------------------------------------------------------
# Acceptance 2 and 3: filling from the API, report precedence, the API's limits


def three_recent_days() -> tuple[dt.datetime, dt.datetime]:
    """Three whole New York days ending two days ago: inside the API's 3 months, all overdue."""
    today = dt.datetime.now(NY).date()
    return local_day_bounds(today - dt.timedelta(days=4))[0], local_day_bounds(today - dt.timedelta(days=2))[1]


def read_csv_rows(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def header_of(column: str, report: str) -> str:
    [header] = [m["header"] for m in METRICS["metric"] if m["column"] == column and report in m["reports"]]
    return header


def unit_of(column: str) -> str:
    [unit] = {m["unit"] for m in METRICS["metric"] if m["column"] == column}
    return unit


def assert_filled_rows_equal_the_removed_report(lake: pathlib.Path, report: str, removed: list[pathlib.Path]):
    mapped = {m["column"] for m in MAPPING["metric"] if report in m["reports"]}
    metric_columns = [m["column"] for m in METRICS["metric"] if report in m["reports"] and m["unit"] != "text"]
    grouping = "queue" if report == "queue" else "agent"
    rows = [r for r in pq.read_table(lake / TABLES[report]).to_pylist() if r["origin"] == "api"]
    by_key = {(r[grouping], r["interval_start"]): r for r in rows}
    expected_keys = set()
    checked = 0
    for path in removed:
        for cells in read_csv_rows(path):
            start = dt.datetime.strptime(cells["StartInterval"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
            key = (cells["Queue" if report == "queue" else "Agent"], start)
            expected_keys.add(key)
            row = by_key[key]
            assert row["source_key"].startswith("connect-api://"), row["source_key"]
            for column in metric_columns:
                got = row[column]
                if column not in mapped:
                    assert got is None, (key, column, got)
                    continue
                cell = cells[header_of(column, report)].strip().removesuffix("%")
                if cell == "":
                    assert got is None, (key, column, got)
                    continue
                want = float(cell)
                unit = unit_of(column)
                tolerance = {"count": 0, "seconds": 0.00051, "percent": 0.0051}[unit]
                assert got is not None and abs(got - want) <= tolerance, (key, column, got, want)
                checked += 1
    assert set(by_key) == expected_keys  # exactly the removed reports' rows came from the API
    assert checked > 0
    return checked


def lake_files(lake: pathlib.Path) -> dict[str, bytes]:
    """The interval tables and the coverage, byte for byte."""
    return {str(p.relative_to(lake)): p.read_bytes() for sub in (*TABLES.values(), "connect_interval_coverage")
            for p in sorted((lake / sub).rglob("*.parquet"))}


def test_missing_intervals_are_filled_from_the_api_and_replaced_by_reports_that_arrive_later(cx, tmp_path, connect_api):
    start, end = three_recent_days()
    fake = connect_api(start, end, seed=11)
    # one source folder for both lakes (the rows' source_key names it)
    source = tmp_path / "src"
    reports = {report: fake.center.write_reports(source / report.title(), report) for report in TABLES}
    kept = tmp_path / "kept"
    shutil.copytree(source, kept)

    # lake A never missed anything (filling on: nothing to fill, so no API call)
    (tmp_path / "a").mkdir()
    jobs_a = [job_file(tmp_path / "a", r, source / r.title(), tmp_path / "lake-a", fill_section(fake)) for r in TABLES]
    for job in jobs_a:
        result = cx("run", str(job), env=fake_env(fake))
        assert result.code == 0, result
        assert "none missing" in result.stdout, result.stdout
    assert fake.requests() == []

    # lake B: a block of busy queue intervals and two agent intervals never arrived
    removed = {}
    for report, paths in reports.items():
        busy = [kept / report.title() / p.name for p in paths if read_csv_rows(p)]
        middle = len(busy) // 2
        removed[report] = busy[middle:middle + 3] if report == "queue" else [busy[middle], busy[middle + 7]]
        for path in removed[report]:
            (source / report.title() / path.name).unlink()
    (tmp_path / "b").mkdir()
    jobs_b = [job_file(tmp_path / "b", r, source / r.title(), tmp_path / "lake-b", fill_section(fake)) for r in TABLES]
    for job, report in zip(jobs_b, TABLES):
        result = cx("run", str(job), env=fake_env(fake))
        assert result.code == 0, result
        assert f"filled {len(removed[report])} intervals" in result.stdout, result.stdout
        assert emf(result.stdout)["MissingIntervals"] == 0
        statuses = {r["interval_start"]: r for rows in coverage(tmp_path / "lake-b", f"cov-{report}").values() for r in rows}
        for path in removed[report]:
            filled = statuses[interval_of(path.name)]
            assert filled["status"] == "api" and filled["source_key"].startswith("connect-api://"), filled
        assert_filled_rows_equal_the_removed_report(tmp_path / "lake-b", report, removed[report])

    # the API's rules held for every request
    requests = fake.requests("GetMetricDataV2")
    assert requests and all(r["status"] == 200 for r in requests)
    reach = dt.datetime.now(UTC) - dt.timedelta(days=89)
    for r in requests:
        span = float(r["EndTime"]) - float(r["StartTime"])
        assert 0 < span < 3 * 86400, r
        assert dt.datetime.fromtimestamp(float(r["StartTime"]), UTC) > reach, r
        assert r["metric_count"] <= 20 and r["metrics"].count("SERVICE_LEVEL") <= 20
        assert sum(len(f["FilterValues"]) for f in r["Filters"]) <= 100

    # a rerun with nothing new changes nothing; then the late reports replace the API's rows
    before = lake_files(tmp_path / "lake-b")
    for job in jobs_b:
        again = cx("run", str(job), env=fake_env(fake))
        assert again.code == 0 and " 0 PUT" in again.stdout, again
    assert lake_files(tmp_path / "lake-b") == before
    for report, paths in removed.items():
        for path in paths:
            shutil.copy(path, source / report.title() / path.name)
    for job in jobs_b:
        late = cx("run", str(job), env=fake_env(fake))
        assert late.code == 0, late
    assert lake_files(tmp_path / "lake-b") == lake_files(tmp_path / "lake-a")


def test_throttling_is_retried_and_a_fill_that_cannot_finish_leaves_the_intervals_missing(cx, tmp_path, connect_api):
    start, end = three_recent_days()
    fake = connect_api(start, end, seed=3)
    paths = fake.center.write_reports(tmp_path / "Queue", "queue")
    busy = [p for p in paths if read_csv_rows(p)]
    gone = busy[len(busy) // 2]
    gone.unlink()
    job = job_file(tmp_path, "queue", tmp_path / "Queue", tmp_path / "lake", fill_section(fake))

    # every answer throttled: the fill gives up after its retries, the interval stays missing
    fake.throttle(1000)
    stopped = cx("run", str(job), env=fake_env(fake))
    assert stopped.code == 1, stopped
    [reason] = [x for x in stopped.stdout.splitlines() if "filling from the Connect API stopped" in x]
    assert "ListQueues" in reason and "Throttl" in reason, reason
    statuses = {r["interval_start"]: r["status"] for rows in coverage(tmp_path / "lake", "cov-queue").values() for r in rows}
    assert statuses[interval_of(gone.name)] == "missing"
    assert all(r["status"] == 429 for r in fake.requests())
    assert 2 <= len(fake.requests()) <= 10  # bounded retries, then it stops

    # a short burst of throttling is absorbed with backoff: the next run fills the interval
    fake.faults(throttle_next=2)
    served = len(fake.requests())
    filled = cx("run", str(job), env=fake_env(fake))
    assert filled.code == 0, filled
    log = fake.requests()[served:]
    assert [r["status"] for r in log[:3]] == [429, 429, 200]
    statuses = {r["interval_start"]: r["status"] for rows in coverage(tmp_path / "lake", "cov-queue").values() for r in rows}
    assert statuses[interval_of(gone.name)] == "api"


def test_day_one_history_fills_within_three_months_and_leaves_older_intervals_missing(cx, tmp_path, connect_api):
    today = dt.datetime.now(NY).date()
    first, last = today - dt.timedelta(days=95), today - dt.timedelta(days=88)
    fake = connect_api(local_day_bounds(today - dt.timedelta(days=90))[0], local_day_bounds(today - dt.timedelta(days=89))[1], seed=8)
    (tmp_path / "Queue").mkdir()  # no report was ever scheduled
    job = job_file(tmp_path, "queue", tmp_path / "Queue", tmp_path / "lake", fill_section(fake))
    window = ("--from", first.isoformat(), "--to", last.isoformat())

    dry = cx("run", str(job), *window, "--dry-run", env=fake_env(fake))
    assert dry.code == 0, dry
    assert "GetMetricDataV2 requests" in dry.stdout and "stay missing" in dry.stdout, dry.stdout
    assert fake.requests("GetMetricDataV2") == [] and not (tmp_path / "lake").exists()

    result = cx("run", str(job), *window, env=fake_env(fake))
    assert result.code == 0, result
    days = coverage(tmp_path / "lake", "cov-queue")
    assert sorted(days) == [(first + dt.timedelta(days=i)).isoformat() for i in range(8)]
    reach = dt.datetime.now(UTC) - dt.timedelta(days=92)  # 3 calendar months are at most 92 days
    for r in fake.requests("GetMetricDataV2"):
        assert dt.datetime.fromtimestamp(float(r["StartTime"]), UTC) > reach, r
    statuses = [r for rows in days.values() for r in rows]
    assert {r["status"] for r in statuses} == {"api", "missing"}
    oldest_filled = min(r["interval_start"] for r in statuses if r["status"] == "api")
    assert all(r["status"] == "missing" for r in statuses if r["interval_start"] < oldest_filled)
    assert all(r["status"] == "api" for r in statuses if r["interval_start"] >= oldest_filled)
    # the center's two days came with their rows; the rows carry their origin
    table = pq.read_table(tmp_path / "lake" / TABLES["queue"]).to_pylist()
    assert table and {r["origin"] for r in table} == {"api"}
    assert sum(r["rows"] for r in statuses) == len(table)
    # the missing ones are counted in the run's metric
    assert emf(result.stdout)["MissingIntervals"] == sum(r["status"] == "missing" for r in statuses) > 0


def test_validate_reports_the_fill_and_rejects_a_bad_instance_arn(cx, tmp_path):
    source = tmp_path / "Queue"
    source.mkdir()
    arn = "arn:aws:connect:eu-central-1:123456789012:instance/4f1b2c3d-0000-4000-8000-123456789abc"
    good = job_file(tmp_path, "queue", source, tmp_path / "lake", f'[fill]\ninstance_arn = "{arn}"\n')
    ok = cx("validate", str(good))
    assert ok.code == 0, ok
    queue_columns = sum("queue" in m["reports"] for m in MAPPING["metric"])
    assert f"GetMetricDataV2 of {arn}: {queue_columns} report columns mapped" in ok.stdout, ok.stdout
    bad = job_file(tmp_path, "agent", source, tmp_path / "lake",
                   '[fill]\ninstance_arn = "arn:aws:s3:::bucket"\nrequests_per_second = 50\n')
    refused = cx("validate", str(bad))
    assert refused.code == 2, refused
    assert "fill.instance_arn" in refused.stderr and "fill.requests_per_second" in refused.stderr, refused.stderr


def test_api_rows_are_pushed_back_and_updated_when_their_report_arrives(emulator, cx, tmp_path, connect_api):
    """Push-back sends filled rows like report rows (the CTI adapter's objects would otherwise keep
    the hole); when the report arrives, its rows replace the API's and the records are updated."""
    from test_pushback import OBJECT, check_org_matches_lake, pushback_job

    day = dt.datetime.now(NY).date() - dt.timedelta(days=3)
    fake = connect_api(*local_day_bounds(day), seed=13)
    paths = fake.center.write_reports(tmp_path / "Queue", "queue")
    busy = [p for p in paths if read_csv_rows(p)]
    held = tmp_path / "held"
    held.mkdir()
    for path in busy[len(busy) // 2:len(busy) // 2 + 2]:
        path.rename(held / path.name)
    job = job_file(tmp_path, "queue", tmp_path / "Queue", tmp_path / "lake", fill_section(fake))
    filled = cx("run", str(job), env=fake_env(fake))
    assert filled.code == 0 and "filled 2 intervals" in filled.stdout, filled
    api_rows = [r for r in pq.read_table(tmp_path / "lake" / TABLES["queue"]).to_pylist() if r["origin"] == "api"]
    assert api_rows

    push = pushback_job(tmp_path, emulator.url)
    first = cx("run", push)
    assert first.code == 0, first
    check_org_matches_lake(emulator, tmp_path / "lake")  # the API's rows are in the org too
    records = len(emulator.records(OBJECT))

    for path in held.iterdir():
        path.rename(tmp_path / "Queue" / path.name)
    assert cx("run", str(job), env=fake_env(fake)).code == 0
    assert {r["origin"] for r in pq.read_table(tmp_path / "lake" / TABLES["queue"]).to_pylist()} == {"report"}
    second = cx("run", push)
    assert second.code == 0, second
    assert re.search(r"\(0 created, [1-9]\d* updated, 0 rejected\)", second.stdout), second.stdout
    check_org_matches_lake(emulator, tmp_path / "lake")
    assert len(emulator.records(OBJECT)) == records  # updated in place, no duplicates
