"""Faults at every step (issue 23): a run killed at any named fault point of any job kind, then
rerun, leaves the lake an uninterrupted run leaves (for push-back: the org holds the same records,
no duplicates); a run told to stop (SIGTERM, SIGINT) releases its lock, records itself as stopped
and exits within the documented bound; a full disk fails a run cleanly and leaves the lake's
previous files intact.

The fault points come from the binary built with them (`cxlake-failpoints fault-points`, the list in
src/faults.rs), so a new point is crashed at without touching this file; the points covered per job
kind are printed at the end of the session. Crashes are SIGKILL (src/faults.rs says why), reruns
and baselines use the normal binary (CXLAKE_BIN), the one that ships.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pyarrow.parquet as pq
import pytest

import conftest
from conftest import DEMO_CREDENTIALS, base_env, connect_job, export_job, is_run_record, run_cxlake, start_emulator
from fixtures import file_name, half_hours, queue_report, write
from test_pushback import pushback_job
from test_rollup import rollup_job

FAILPOINTS_BIN = "CXLAKE_FAILPOINTS_BIN"
KINDS = ("connect", "rollup", "export", "pushback")
# cxlake stops within this many seconds of SIGTERM (src/runner/stop.rs, README "Exit codes").
STOP_SECONDS = 10
SYSTEM_FIELDS = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById", "LastModifiedById",
                 "OwnerId"}


def failpoints_bin() -> str:
    path = os.environ.get(FAILPOINTS_BIN)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{FAILPOINTS_BIN}={path!r} is not an executable: `make failpoints` builds cxlake-failpoints "
                    "(`make test` sets it)", pytrace=False)
    return path


def compiled_points() -> dict[str, list[str]]:
    """The binary's fault points by job kind; empty when the binary is missing (the tests then fail)."""
    path = os.environ.get(FAILPOINTS_BIN)
    if not path or not os.access(path, os.X_OK):
        return {}
    listing = subprocess.run([path, "fault-points"], capture_output=True, text=True, check=True).stdout
    points = collections.defaultdict(list)
    for line in listing.splitlines():
        kind, name, _after = line.split("\t")
        points[kind].append(name)
    return dict(points)


POINTS = compiled_points()


def points_of(kind: str) -> list[str]:
    # A missing binary still yields one test per kind, which fails saying how to build it.
    return POINTS.get(kind, ["<no cxlake-failpoints binary>"] if not POINTS else [])


def test_every_job_kind_has_fault_points_and_the_tests_cover_them():
    failpoints_bin()
    assert set(POINTS) == set(KINDS), POINTS
    for kind in KINDS:
        assert POINTS[kind], kind
        conftest.FAULT_POINTS_COVERED[kind] = list(POINTS[kind])
        print(f"{kind}: {len(POINTS[kind])} fault points: {', '.join(POINTS[kind])}")


# --------------------------------------------------------------------------------------------
# Crashing, stopping, comparing


def crash_at(point: str, args, cwd, env: dict | None = None) -> None:
    """Runs `cxlake-failpoints run <args>` with `point` armed to panic: the run must die by SIGKILL
    there. Its lock (TTL 1 s) goes stale before this returns."""
    result = run_cxlake(["run", *args, "--lock-ttl", "1"], cwd, {**(env or {}), "FAILPOINTS": f"{point}=panic"},
                        binary=failpoints_bin())
    assert result.code == -signal.SIGKILL, f"{point}: the run did not die at the point\n{result}"
    assert f"fault point reached: {point}" in result.stderr, result
    time.sleep(1.1)


def lake_files(lake: pathlib.Path, skip=()) -> dict[str, object]:
    """Every file of the lake but the run records and the lock: JSON parsed, the rest as bytes.
    (A file left half-written, e.g. a local store's `name#N` staging file, is a file too.)"""
    found = {}
    for path in sorted(p for p in lake.rglob("*") if p.is_file()):
        key = path.relative_to(lake).as_posix()
        if is_run_record(key) or key.startswith("_etl/locks/") or any(key.startswith(s) for s in skip):
            continue
        found[key] = json.loads(path.read_bytes()) if key.endswith(".json") else path.read_bytes()
    return found


def assert_same_lake(got: dict, expected: dict, point: str) -> None:
    assert sorted(got) == sorted(expected), f"{point}: files differ"
    for key in expected:
        assert got[key] == expected[key], f"{point}: {key} differs"


def no_lock(lake: pathlib.Path) -> bool:
    locks = lake / "_etl" / "locks"
    return not locks.exists() or not any(locks.iterdir())


def run_manifests(lake: pathlib.Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((lake / "_etl" / "runs").glob("*.json"))]


def stop_mid_run(args, cwd, slow_point: str, lake: pathlib.Path, sig=signal.SIGTERM, env: dict | None = None,
                 sleep_ms: int = 2000) -> float:
    """Runs the job with `slow_point` sleeping, sends `sig` once the point is reached, and checks the
    stop: exit 143 within STOP_SECONDS, no lock left, the run recorded as stopped. Returns the
    seconds from the signal to the exit."""
    process = subprocess.Popen([failpoints_bin(), "run", *map(str, args)], cwd=cwd, text=True,
                               env={**base_env(), **(env or {}), "FAILPOINTS": f"{slow_point}=sleep({sleep_ms})"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reached = threading.Event()
    lines: list[str] = []

    def read_stderr():
        for line in process.stderr:
            lines.append(line)
            if f"fault point reached: {slow_point}" in line:
                reached.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if not reached.wait(120):
        process.kill()
        pytest.fail(f"{slow_point} was never reached:\n{''.join(lines)}")
    process.send_signal(sig)
    sent = time.monotonic()
    try:
        code = process.wait(timeout=STOP_SECONDS + 20)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"no exit {STOP_SECONDS + 20} s after {sig.name}")
    seconds = time.monotonic() - sent
    reader.join(5)
    stderr = "".join(lines)
    assert code == 143, f"exit {code}\n{stderr}"
    assert seconds <= STOP_SECONDS, f"{seconds:.1f} s from {sig.name} to exit"
    assert f"stopped: job " in stderr and f"({sig.name})" in stderr, stderr
    assert no_lock(lake), "the stopped run left its lock"
    stopped = [m for m in run_manifests(lake) if m["exit_code"] == 143]
    assert len(stopped) == 1 and f"stopped by {sig.name}" in stopped[0]["error"], run_manifests(lake)
    conftest.STOPS.append((slow_point.split("-")[0], sig.name, round(seconds, 2)))
    return seconds


# --------------------------------------------------------------------------------------------
# connect-intervals: two days of reports, a report with a column no map knows (table metadata),
# a file that is rejected


def write_reports(folder: pathlib.Path, first: str, last: str, queues=("Sales", "Billing", "Support EU")) -> None:
    for start in half_hours(first, last):
        queue_report(folder, start[:16] + "Z", [(q, str(10 + n)) for n, q in enumerate(queues)])


@pytest.fixture(scope="module")
def connect_case(tmp_path_factory):
    """Reports (read in place by every run, so their ETags agree) and the lake of one
    uninterrupted run over them."""
    root = tmp_path_factory.mktemp("connect-faults")
    reports = root / "reports"
    write_reports(reports, "2024-03-10T00:00Z", "2024-03-11T23:30Z")
    write(reports, file_name("2024-03-12T00:30Z"),
          "Queue,StartInterval,EndInterval,Contacts handled,Callback contacts flagged\n"
          "Sales,2024-03-12T00:00:00.000Z,2024-03-12T00:30:00.000Z,7,2\n")
    write(reports, file_name("2024-03-12T01:00Z"), "Nothing,Here\n1,2\n")
    base = root / "base"
    base.mkdir()
    job = connect_job(base, source=f"file://{reports}/")
    result = run_cxlake(["run", job], base)
    assert result.code == 3, result  # the bad file is rejected
    return {"reports": reports, "lake": lake_files(base / "lake"), "base": base}


def connect_in(directory: pathlib.Path, case) -> pathlib.Path:
    return connect_job(directory, source=f"file://{case['reports']}/")


@pytest.mark.parametrize("point", points_of("connect"))
def test_connect_killed_at_a_fault_point_then_rerun_equals_an_uninterrupted_run(tmp_path, connect_case, point):
    job = connect_in(tmp_path, connect_case)
    crash_at(point, [job], tmp_path)
    rerun = run_cxlake(["run", job], tmp_path)
    assert rerun.code in (0, 3), rerun
    assert_same_lake(lake_files(tmp_path / "lake"), connect_case["lake"], point)
    assert no_lock(tmp_path / "lake")


# --------------------------------------------------------------------------------------------
# interval-rollup: the connect lake rolled up hourly and daily


@pytest.fixture(scope="module")
def rollup_case(tmp_path_factory, connect_case):
    root = tmp_path_factory.mktemp("rollup-faults")
    base = root / "base"
    shutil.copytree(connect_case["base"] / "lake", base / "lake")  # copy2 keeps the files' times
    result = run_cxlake(["run", rollup_job(base, timezone="UTC")], base)
    assert result.code == 0, result
    return {"seed": connect_case["base"] / "lake", "lake": lake_files(base / "lake")}


@pytest.mark.parametrize("point", points_of("rollup"))
def test_rollup_killed_at_a_fault_point_then_rerun_equals_an_uninterrupted_run(tmp_path, rollup_case, point):
    shutil.copytree(rollup_case["seed"], tmp_path / "lake")
    job = rollup_job(tmp_path, timezone="UTC")
    crash_at(point, [job], tmp_path)
    rerun = run_cxlake(["run", job], tmp_path)
    assert rerun.code == 0, rerun
    assert_same_lake(lake_files(tmp_path / "lake"), rollup_case["lake"], point)


# --------------------------------------------------------------------------------------------
# salesforce-export: one org for the module, Bulk failing above 10 records so the object is read in
# halved windows (plans, checkpoints, re-plans); a second org for deletions beyond the recycle bin.
# A run reads up to its own start, so window bounds and file names differ between runs: the lake
# is compared by content (every history row, `_latest`, table metadata, the state less its times).


def export_content(lake: pathlib.Path, table: str = "sf_account") -> dict:
    history = []
    for path in sorted((lake / table).rglob("*.parquet")):
        history += [json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(path).to_pylist()]
    latest = []
    for path in sorted((lake / f"{table}_latest").rglob("*.parquet")):
        latest += [json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(path).to_pylist()]
    states = {}
    for path in sorted((lake / "_etl" / "state").rglob("*.json")):
        state = json.loads(path.read_text())
        assert not state.get("plan"), f"{path}: an unfinished plan is left"
        # The times a run reads up to differ between runs; which of them are set does not.
        times = ("watermark", "formulas_refreshed")
        states[path.relative_to(lake).as_posix()] = (
            {k: v for k, v in state.items() if k not in times}, sorted(k for k in times if state.get(k)))
    others = {k: v for k, v in lake_files(lake, skip=("_etl/state/", f"{table}/", f"{table}_latest/")).items()}
    leftovers = [p.name for p in lake.rglob("*#*")]
    return {"history": sorted(history), "latest": sorted(latest), "states": states, "others": others,
            "leftovers": leftovers}


@pytest.fixture(scope="module")
def export_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-faults")
    emulator = start_emulator(root)
    try:
        emulator.faults(bulk_fail_above_records=10)
        base = root / "base"
        base.mkdir()
        job = export_job(base, emulator.url, api="bulk", export_extra={"slice_floor_minutes": 1})
        result = run_cxlake(["run", job], base)
        assert result.code == 0, result
        yield {"emulator": emulator, "content": export_content(base / "lake")}
    finally:
        emulator.stop()


@pytest.mark.parametrize("point", [p for p in points_of("export") if p != "export-after-deletes-file"])
def test_export_killed_at_a_fault_point_then_rerun_equals_an_uninterrupted_run(tmp_path, export_case, point):
    job = export_job(tmp_path, export_case["emulator"].url, api="bulk", export_extra={"slice_floor_minutes": 1})
    crash_at(point, [job], tmp_path)
    rerun = run_cxlake(["run", job], tmp_path)
    assert rerun.code == 0, rerun
    assert export_content(tmp_path / "lake") == export_case["content"], point


def deletions_beyond_the_recycle_bin(emulator, count=3) -> None:
    live = sorted(r["Id"] for r in emulator.records("Account") if not r.get("IsDeleted"))
    for record_id in live[:count]:
        emulator.admin("DELETE", f"objects/Account/records/{record_id}")
    emulator.admin("POST", "clock", {"advance_days": 20})


@pytest.mark.parametrize("point", [p for p in points_of("export") if p == "export-after-deletes-file"])
def test_export_killed_after_its_deletions_file_then_rerun_equals_an_uninterrupted_run(tmp_path, point):
    emulator = start_emulator(tmp_path)
    try:
        base, crashed = tmp_path / "base", tmp_path / "crashed"
        base.mkdir()
        job = export_job(base, emulator.url, api="bulk")
        assert run_cxlake(["run", job], base).code == 0
        shutil.copytree(base / "lake", crashed / "lake")
        deletions_beyond_the_recycle_bin(emulator)
        second = run_cxlake(["run", job], base)
        assert "Id reconciliation: 3 deleted beyond the recycle bin" in second.stdout, second
        crashed_job = export_job(crashed, emulator.url, api="bulk")
        crash_at(point, [crashed_job], crashed)
        rerun = run_cxlake(["run", crashed_job], crashed)
        assert rerun.code == 0, rerun
        assert export_content(crashed / "lake") == export_content(base / "lake"), point
    finally:
        emulator.stop()


# --------------------------------------------------------------------------------------------
# salesforce-push-back: 288 interval rows of the connect lake upserted into the CTI adapter's
# object, in two sObject Collections calls (or one Bulk ingest job); each test gets a fresh org.

OBJECT = "amazonconnect__AC_HistoricalQueueMetrics__c"
KEY_FIELD = "amazonconnect__AC_Record_Id__c"


def org_state(emulator) -> dict[str, dict]:
    records = emulator.records(OBJECT)
    by_key = {r[KEY_FIELD]: {k: v for k, v in r.items() if k not in SYSTEM_FIELDS} for r in records}
    assert len(by_key) == len(records), "duplicate records in the org"
    return by_key


def pushback_route(point: str) -> int:
    """The bulk threshold that takes a point's route: Bulk ingest for the Bulk job's point."""
    return 100 if point == "pushback-after-bulk-job" else 1000


@pytest.fixture(scope="module")
def pushback_case(tmp_path_factory, connect_case):
    """For each route, the org and lake after one uninterrupted push-back."""
    root = tmp_path_factory.mktemp("pushback-faults")
    cases = {}
    for threshold in (1000, 100):
        base = root / f"base-{threshold}"
        shutil.copytree(connect_case["base"] / "lake", base / "lake")
        emulator = start_emulator(base)
        try:
            result = run_cxlake(["run", pushback_job(base, emulator.url, bulk_threshold=threshold)], base)
            assert result.code == 0, result
            org = org_state(emulator)
        finally:
            emulator.stop()
        assert len(org) == 288 + 1, len(org)  # two days of 3 queues, and the extra report's row
        cases[threshold] = {"org": org, "lake": lake_files(base / "lake")}
    return {"seed": connect_case["base"] / "lake", **cases}


@pytest.mark.parametrize("point", points_of("pushback"))
def test_pushback_killed_at_a_fault_point_then_rerun_leaves_the_org_and_lake_of_an_uninterrupted_run(
        tmp_path, pushback_case, point):
    threshold = pushback_route(point)
    shutil.copytree(pushback_case["seed"], tmp_path / "lake")
    emulator = start_emulator(tmp_path)
    try:
        job = pushback_job(tmp_path, emulator.url, bulk_threshold=threshold)
        crash_at(point, [job], tmp_path)
        rerun = run_cxlake(["run", job], tmp_path)
        assert rerun.code == 0, rerun
        assert org_state(emulator) == pushback_case[threshold]["org"], point
    finally:
        emulator.stop()
    assert_same_lake(lake_files(tmp_path / "lake"), pushback_case[threshold]["lake"], point)


# --------------------------------------------------------------------------------------------
# SIGTERM (and SIGINT) in the middle of each job kind


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_connect_told_to_stop_releases_its_lock_records_the_stop_and_the_next_run_converges(tmp_path, connect_case,
                                                                                               sig):
    job = connect_in(tmp_path, connect_case)
    stop_mid_run([job], tmp_path, "connect-after-partition-put", tmp_path / "lake", sig=sig)
    rerun = run_cxlake(["run", job], tmp_path)
    assert rerun.code == 3, rerun
    assert_same_lake(lake_files(tmp_path / "lake"), connect_case["lake"], sig.name)


def test_rollup_told_to_stop_releases_its_lock_records_the_stop_and_the_next_run_converges(tmp_path, rollup_case):
    shutil.copytree(rollup_case["seed"], tmp_path / "lake")
    job = rollup_job(tmp_path, timezone="UTC")
    stop_mid_run([job], tmp_path, "rollup-after-grain-put", tmp_path / "lake")
    assert run_cxlake(["run", job], tmp_path).code == 0
    assert_same_lake(lake_files(tmp_path / "lake"), rollup_case["lake"], "SIGTERM")


def test_export_told_to_stop_releases_its_lock_records_the_stop_and_the_next_run_converges(tmp_path, export_case):
    job = export_job(tmp_path, export_case["emulator"].url, api="bulk", export_extra={"slice_floor_minutes": 1})
    stop_mid_run([job], tmp_path, "export-after-history-file", tmp_path / "lake")
    rerun = run_cxlake(["run", job], tmp_path)
    assert rerun.code == 0, rerun
    assert "resuming the unfinished run" in rerun.stderr, rerun
    assert export_content(tmp_path / "lake") == export_case["content"]


def test_pushback_told_to_stop_releases_its_lock_records_the_stop_and_the_next_run_converges(tmp_path, pushback_case):
    shutil.copytree(pushback_case["seed"], tmp_path / "lake")
    emulator = start_emulator(tmp_path)
    try:
        job = pushback_job(tmp_path, emulator.url)
        stop_mid_run([job], tmp_path, "pushback-after-collections-batch", tmp_path / "lake")
        assert run_cxlake(["run", job], tmp_path).code == 0
        assert org_state(emulator) == pushback_case[1000]["org"]
    finally:
        emulator.stop()
    assert_same_lake(lake_files(tmp_path / "lake"), pushback_case[1000]["lake"], "SIGTERM")


# --------------------------------------------------------------------------------------------
# A full disk under a local lake: a real filesystem of 1 MiB (tmpfs) that fills up


def checksums(folder: pathlib.Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk (mounting needs root, which the tests and CI run as)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_fails_the_run_cleanly_keeps_the_previous_files_and_a_rerun_with_space_converges(
        tmp_path, small_disk):
    reports = tmp_path / "reports"
    write_reports(reports, "2024-03-10T00:00Z", "2024-03-10T23:30Z")
    job = connect_job(tmp_path, source=f"file://{reports}/", lake=f"file://{small_disk}/lake")
    assert run_cxlake(["run", job], tmp_path).code == 0
    before = checksums(small_disk / "lake")
    # Twenty more days, about twice the space left once a filler takes all but 128 KiB.
    write_reports(reports, "2024-03-11T00:00Z", "2024-03-30T23:30Z")
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 128 * 1024))

    full = run_cxlake(["run", job], tmp_path)
    assert full.code == 1, full
    error = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "No space left on device" in error[0] and "connect_queue_interval/dt=" in error[0], full
    conftest.FULL_DISK.append(error[0])
    after = checksums(small_disk / "lake")
    for key, digest in before.items():
        if not is_run_record(key) and not key.startswith("_etl/locks/"):
            assert after.get(key) == digest, f"{key} changed by the failed run"
    assert not [k for k in after if "#" in k], f"a half-written file was left: {sorted(after)}"
    for key in after:
        if key.endswith(".parquet"):
            pq.read_metadata(small_disk / "lake" / key)  # every file there is whole
    assert no_lock(small_disk / "lake")

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert run_cxlake(["run", job], tmp_path).code == 0
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    reference = connect_job(roomy, source=f"file://{reports}/")
    assert run_cxlake(["run", reference], roomy).code == 0
    assert_same_lake(lake_files(small_disk / "lake"), lake_files(roomy / "lake"), "full disk")
