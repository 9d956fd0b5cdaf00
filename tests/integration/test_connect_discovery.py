"""Which report files a connect-intervals run reads, whatever their names and directory entries:
the lookback state (late, re-exported and future-named files), odd names and unreadable entries,
and where rejected files are kept. On a file:// source and on moto S3."""

from __future__ import annotations

import json
import os
import pathlib

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from conftest import connect_job
from fixtures import QUEUE_HEADER, file_name, interval, queue_report, queue_row, two_days, write

QUEUE = "connect_queue_interval"
STATE = "_etl/state/connect-queue.json"
REJECTS = "_etl/rejects/connect-queue"
FUTURE = "sfIntervalQueue-2099-01-01T00:00:00Z.csv"
PREFIX = "connect/demo/Reports/SFDC/Queue/"


def rows(lake: pathlib.Path) -> list[dict]:
    partitioning = ds.partitioning(pa.schema([("dt", pa.string())]), flavor="hive")
    return ds.dataset(lake / QUEUE, format="parquet", partitioning=partitioning).to_table().to_pylist()


def counts(lake: pathlib.Path) -> dict[tuple[str, str], int]:
    """(queue, interval start HH:MM on its day) -> contacts handled."""
    return {(r["queue"], r["interval_start"].strftime("%d %H:%M")): r["contacts_handled"] for r in rows(lake)}


def state(lake: pathlib.Path) -> dict:
    return json.loads((lake / STATE).read_text())


def report_text(start: str, queue_rows: list[tuple[str, str]]) -> str:
    s, e = interval(start)
    return "\n".join([QUEUE_HEADER] + [queue_row(q, s, e, handled) for q, handled in queue_rows]) + "\n"


# --------------------------------------------------------------------------------------------
# Scheduled runs never skip data (file:// source)


def test_late_file_lands_on_the_next_scheduled_run(cx, tmp_path):
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    # A retried export of an interval of the 10th arrives after the 11th was loaded.
    late = queue_report(reports, "2024-03-10T12:00Z", [("Late", "5")])
    result = cx("run", "job.toml")
    assert result.code == 0, result
    assert counts(lake)[("Late", "10 12:00")] == 5
    assert late.name in state(lake)["seen"]
    assert "2024-03-11T10:00:00" in state(lake)["watermark"]  # a late name does not move it back
    # Read once: the next run has nothing to do.
    again = cx("run", "job.toml")
    assert again.code == 0 and ": 0 files" in again.stdout, again


def test_reexported_object_overwriting_its_key_reloads(cx, tmp_path):
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    assert counts(lake)[("Sales", "11 09:30")] == 10
    # Connect writes the newest interval's report again under the same key, with a correction.
    newest = reports / file_name("2024-03-11T10:00:00Z")
    newest.write_text(report_text("2024-03-11T09:30Z", [("Sales", "77"), ("Billing", "4")]))
    dry = cx("run", "job.toml", "--dry-run")
    assert f"{newest.name}  ->  dt=2024-03-11  (changed since it was read)" in dry.stdout, dry
    result = cx("run", "job.toml")
    assert result.code == 0, result
    assert counts(lake)[("Sales", "11 09:30")] == 77
    assert len(rows(lake)) == 8


def test_future_file_name_neither_loads_nor_blocks(cx, tmp_path):
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    # Good content, but a name whose time is decades away.
    write(reports, FUTURE, report_text("2024-03-11T11:00Z", [("Future", "1")]))
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 3, result
    (line,) = [l for l in result.stdout.splitlines() if l.startswith(f"  rejected file://reports/{FUTURE}: ")]
    assert "in the future" in line, result
    assert "Future" not in {r["queue"] for r in rows(lake)}
    assert len(rows(lake)) == 8
    assert "2024-03-11T10:00:00" in state(lake)["watermark"]
    assert FUTURE not in state(lake)["seen"]
    reason = json.loads((lake / REJECTS / f"{FUTURE}.error.json").read_text())
    assert "in the future" in reason["reason"]
    # The next real file still lands.
    queue_report(reports, "2024-03-11T10:00Z", [("Sales", "3")])
    result = cx("run", "job.toml")
    assert result.code == 3, result
    assert counts(lake)[("Sales", "11 10:00")] == 3
    assert "2024-03-11T10:30:00" in state(lake)["watermark"]
    # Once the file is gone, runs are clean again.
    (reports / FUTURE).unlink()
    assert cx("run", "job.toml").code == 0


def test_state_with_a_watermark_in_the_future_is_repaired(cx, tmp_path):
    """A state file written by a version that let a file name set the watermark."""
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    (lake / "_etl/state").mkdir(parents=True)
    (lake / STATE).write_text(json.dumps({"watermark": "2099-01-01T00:00:00Z"}))
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 0, result
    assert len(rows(lake)) == 8
    assert "2024-03-11T10:00:00" in state(lake)["watermark"]


def test_state_without_seen_objects_is_read_and_migrated(cx, tmp_path):
    """State files from before the lookback state hold only a watermark."""
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    connect_job(tmp_path)
    assert cx("run", "job.toml").code == 0
    (lake / STATE).write_text(json.dumps({"watermark": "2024-03-11T10:00:00Z"}))
    late = queue_report(reports, "2024-03-10T12:00Z", [("Late", "5")])
    result = cx("run", "job.toml")
    assert result.code == 0, result
    # The lookback window is read once more (idempotent), which also finds what the old
    # watermark had skipped.
    assert counts(lake)[("Late", "10 12:00")] == 5
    assert len(rows(lake)) == 9
    assert sorted(state(lake)["seen"]) == sorted(p.name for p in reports.iterdir())
    assert late.name in state(lake)["seen"]


def test_lookback_days_is_a_validated_job_setting(cx, tmp_path):
    job = connect_job(tmp_path)
    job.write_text(job.read_text().replace('instance = "demo"', 'instance = "demo"\nlookback_days = 7'))
    printed = cx("validate", "job.toml", "--print")
    assert printed.code == 0 and "source.lookback_days = 7" in printed.stdout, printed
    assert "source.lookback_days = 3" in cx("validate", "job.toml", "--print", env={"CXLAKE_SOURCE_LOOKBACK_DAYS": "3"}).stdout
    for bad in ("0", "-1", "1000"):
        refused = cx("validate", "job.toml", env={"CXLAKE_SOURCE_LOOKBACK_DAYS": bad})
        assert refused.code == 2 and "source.lookback_days" in refused.output, refused


def test_lookback_days_bounds_what_a_scheduled_run_lists_again(cx, tmp_path):
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    two_days(reports)
    job = connect_job(tmp_path)
    job.write_text(job.read_text().replace('instance = "demo"', 'instance = "demo"\nlookback_days = 1'))
    assert cx("run", "job.toml").code == 0
    queue_report(reports, "2024-03-10T12:00Z", [("Inside", "1")])  # 22 hours before the watermark
    queue_report(reports, "2024-03-09T12:00Z", [("Outside", "1")])  # 46 hours before
    assert cx("run", "job.toml").code == 0
    queues = {r["queue"] for r in rows(lake)}
    assert "Inside" in queues and "Outside" not in queues


# --------------------------------------------------------------------------------------------
# Odd names and directory entries (file:// source)

GOOD_START = "2024-03-10T09:00Z"


def good_report(reports: pathlib.Path) -> None:
    queue_report(reports, GOOD_START, [("Good", "1")])


def odd_name(name: str):
    def setup(reports: pathlib.Path):
        write(reports, name, report_text("2024-03-10T10:00Z", [("Odd", "2")]))
        return {"loads": name}
    return setup


def symlink_loop(reports: pathlib.Path):
    (reports / "sub").mkdir()
    os.symlink("..", reports / "sub" / "loop")
    return {"skipped": "sub/loop", "reason": "symbolic link"}


def self_symlink(reports: pathlib.Path):
    os.symlink("me-2024-03-10T10:30:00Z.csv", reports / "me-2024-03-10T10:30:00Z.csv")
    return {"skipped": "me-2024-03-10T10:30:00Z.csv", "reason": "symbolic link"}


def dangling_symlink(reports: pathlib.Path):
    os.symlink("nowhere.csv", reports / "gone-2024-03-10T10:30:00Z.csv")
    return {"skipped": "gone-2024-03-10T10:30:00Z.csv", "reason": "dangling symbolic link"}


def non_utf8_name(reports: pathlib.Path):
    name = os.fsencode(reports) + b"/Queue\xff-2024-03-10T10:30:00Z.csv"
    with open(name, "wb") as f:
        f.write(report_text("2024-03-10T10:00Z", [("Bytes", "2")]).encode())
    return {"skipped": "Queue\ufffd-2024-03-10T10:30:00Z.csv", "reason": "not valid UTF-8"}


def unreadable_folder(reports: pathlib.Path):
    locked = reports / "locked"
    locked.mkdir()
    write(locked, file_name("2024-03-10T11:00Z"), report_text("2024-03-10T10:30Z", [("Locked", "1")]))
    locked.chmod(0)
    return {"skipped": "locked", "reason": "cannot be read", "cleanup": lambda: locked.chmod(0o755)}


CASES = {
    "space": odd_name("Queue report-2024-03-10T10:30:00Z.csv"),
    "percent": odd_name("Queue%20report 100%-2024-03-10T10:30:00Z.csv"),
    "hash": odd_name("Queue#1-2024-03-10T10:30:00Z.csv"),
    "non_ascii": odd_name("Warteschlange Zoë Ü-2024-03-10T10:30:00Z.csv"),
    "encoded_colons": odd_name("sfIntervalQueue-2024-03-10T10%3A30%3A00Z.csv"),
    "symlink_loop": symlink_loop,
    "self_symlink": self_symlink,
    "dangling_symlink": dangling_symlink,
    "non_utf8_name": non_utf8_name,
    "unreadable_folder": unreadable_folder,
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_odd_names_load_and_bad_directory_entries_are_skipped_once(cx, tmp_path, case):
    if case == "unreadable_folder" and os.geteuid() == 0:
        pytest.skip("root reads folders without read permission")
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    reports.mkdir()
    good_report(reports)
    expect = CASES[case](reports)
    connect_job(tmp_path)
    try:
        result = cx("run", "job.toml")
    finally:
        expect.get("cleanup", lambda: None)()
    assert "Good" in {r["queue"] for r in rows(lake)}, result
    if "loads" in expect:
        assert result.code == 0, result
        (odd,) = [r for r in rows(lake) if r["queue"] == "Odd"]
        assert odd["source_key"].endswith("/" + expect["loads"]), odd["source_key"]
        assert expect["loads"] in state(lake)["seen"]
        # Read once, then known: a second run reads nothing.
        again = cx("run", "job.toml")
        assert again.code == 0 and ": 0 files" in again.stdout, again
    else:
        assert result.code == 3, result
        lines = [l for l in result.stdout.splitlines() if "skipped" in l and expect["skipped"] in l]
        assert len(lines) == 1, result  # reported once, with its reason
        assert expect["reason"] in lines[0], lines[0]
        warnings = [l for l in result.stderr.splitlines() if "cannot be read or named" in l]
        assert len(warnings) == 1, result.stderr


def test_rejects_keep_every_rejected_object_by_its_relative_path(cx, tmp_path):
    reports, lake = tmp_path / "reports", tmp_path / "lake"
    good_report(reports)
    name = file_name("2024-03-10T10:30Z")
    for folder, text in (("east", "Queue,Contacts handled\nEast,1\n"), ("west", "Queue,Contacts handled\nWest,2\n")):
        write(reports / folder, name, text)  # no StartInterval: both are rejected
    connect_job(tmp_path)
    result = cx("run", "job.toml")
    assert result.code == 3, result
    for folder, text in (("east", "East,1"), ("west", "West,2")):
        copy = lake / REJECTS / folder / name
        assert text in copy.read_text(), copy
        reason = json.loads((lake / REJECTS / folder / f"{name}.error.json").read_text())
        assert reason["source_key"].endswith(f"/{folder}/{name}"), reason
        assert "StartInterval" in reason["reason"], reason


# --------------------------------------------------------------------------------------------
# The same on moto S3: ETags, odd keys, listing


def put(s3, bucket: str, key: str, text: str) -> None:
    s3.put_object(Bucket=bucket, Key=PREFIX + key, Body=text.encode())


def s3_lake_state(s3, buckets) -> dict:
    return json.loads(s3.get_object(Bucket=buckets["lake"], Key=f"cxlake/{STATE}")["Body"].read())


def s3_rows(s3, buckets) -> dict[tuple[str, str], int]:
    import io

    import pyarrow.parquet as pq

    out = {}
    listed = s3.list_objects_v2(Bucket=buckets["lake"], Prefix=f"cxlake/{QUEUE}/")
    for o in listed.get("Contents", []):
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=buckets["lake"], Key=o["Key"])["Body"].read()))
        for r in table.to_pylist():
            out[(r["queue"], r["interval_start"].strftime("%d %H:%M"))] = r["contacts_handled"]
    return out


def test_s3_late_reexported_and_future_objects(cx, tmp_path, aws, buckets):
    s3 = aws["s3"]
    local = tmp_path / "local"
    two_days(local)
    for path in sorted(local.iterdir()):
        put(s3, buckets["reports"], path.name, path.read_text())
    connect_job(tmp_path, source=f"s3://{buckets['reports']}/{PREFIX}", lake=f"s3://{buckets['lake']}/cxlake")
    assert cx("run", "job.toml", env=aws["env"]).code == 0
    etag = s3.head_object(Bucket=buckets["reports"], Key=PREFIX + file_name("2024-03-11T10:00Z"))["ETag"]
    assert s3_lake_state(s3, buckets)["seen"][file_name("2024-03-11T10:00Z")]["etag"] == etag

    put(s3, buckets["reports"], file_name("2024-03-10T12:30Z"), report_text("2024-03-10T12:00Z", [("Late", "5")]))
    put(s3, buckets["reports"], file_name("2024-03-11T10:00Z"),
        report_text("2024-03-11T09:30Z", [("Sales", "77"), ("Billing", "4")]))  # same key, new ETag
    put(s3, buckets["reports"], FUTURE, report_text("2024-03-11T11:00Z", [("Future", "1")]))
    result = cx("run", "job.toml", env=aws["env"])
    assert result.code == 3, result
    got = s3_rows(s3, buckets)
    assert got[("Late", "10 12:00")] == 5
    assert got[("Sales", "11 09:30")] == 77
    assert not any(q == "Future" for q, _ in got)
    saved = s3_lake_state(s3, buckets)
    assert "2024-03-11T10:00:00" in saved["watermark"]
    assert FUTURE not in saved["seen"]
    reason = json.loads(s3.get_object(Bucket=buckets["lake"], Key=f"cxlake/{REJECTS}/{FUTURE}.error.json")["Body"].read())
    assert "in the future" in reason["reason"]


@pytest.mark.parametrize("name", [
    "Queue report-2024-03-10T10:30:00Z.csv",
    "Queue%20report 100%-2024-03-10T10:30:00Z.csv",
    "Queue#1-2024-03-10T10:30:00Z.csv",
    "Warteschlange Zoë Ü-2024-03-10T10:30:00Z.csv",
    "sub folder/Queue-2024-03-10T10:30:00Z.csv",
], ids=["space", "percent", "hash", "non_ascii", "folder_with_space"])
def test_s3_odd_keys_load_without_double_encoding(cx, tmp_path, aws, buckets, name):
    s3 = aws["s3"]
    put(s3, buckets["reports"], name, report_text("2024-03-10T10:00Z", [("Odd", "2")]))
    connect_job(tmp_path, source=f"s3://{buckets['reports']}/{PREFIX}", lake=f"s3://{buckets['lake']}/cxlake")
    result = cx("run", "job.toml", env=aws["env"])
    assert s3_rows(s3, buckets) == {("Odd", "10 10:00"): 2}, result
    assert name in s3_lake_state(s3, buckets)["seen"]


def test_s3_scheduled_run_lists_only_the_lookback_window(cx, tmp_path, aws, buckets):
    """2,200 reports of one schedule: the first run lists all three pages, a scheduled run
    starts after the names older than the lookback and reads one page."""
    s3 = aws["s3"]
    import datetime as dt

    first = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    text = report_text("2024-01-01T00:00Z", [("Sales", "1")])
    for i in range(2200):
        end = first + dt.timedelta(minutes=30 * (i + 1))
        put(s3, buckets["reports"], f"sfIntervalQueue-{end:%Y-%m-%dT%H:%M:%S}Z.csv", text)
    connect_job(tmp_path, source=f"s3://{buckets['reports']}/{PREFIX}", lake=f"s3://{buckets['lake']}/cxlake")
    result = cx("run", "job.toml", env=aws["env"])
    assert result.code == 0, result
    assert "source 2200 GET, 3 LIST pages" in result.stdout, result
    late = first + dt.timedelta(minutes=30 * 2150)
    put(s3, buckets["reports"], f"sfIntervalQueue-{late:%Y-%m-%dT%H:%M:%S}Z.csv".replace(":00Z", ":10Z"), text)
    again = cx("run", "job.toml", env=aws["env"])
    assert again.code == 0, again
    # one page up to the schedule's older names (its first key is one of them), one after them
    assert "source 1 GET, 2 LIST pages" in again.stdout, again
