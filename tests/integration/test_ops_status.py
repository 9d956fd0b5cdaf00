"""`cxlake status`: each job's health from the lake alone (local folder and moto S3), its verdicts
(ok, partial, late, failing), `--json`, and the exit codes `cxlake status --help` documents; and
`make demo`'s output: no JSON, one line per roll-up fallback column."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from conftest import REPO, connect_job, run_cxlake, start_emulator
from fixtures import bad_files, queue_report

DEMO = ["connect-queue", "connect-agent", "rollup-queue", "rollup-agent", "salesforce-export", "pushback-queue",
        "pushback-agent"]
# The [job] names of the demo files, as written in them.
DEMO_NAMES = {"connect-queue-intervals", "connect-agent-intervals", "rollup-queue", "rollup-agent",
              "salesforce-export", "pushback-queue", "pushback-agent"}
DAILY_KINDS = {"interval-rollup", "salesforce-export", "salesforce-pushback"}

# What `cxlake status --help` documents (and the README repeats).
EXIT = {"ok": 0, "partial": 3, "late": 6, "failing": 7}


def makefile_demo_env() -> dict[str, str]:
    """The variables the Makefile's demo target exports (`demo: export NAME = value`)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    found = dict(re.findall(r"^demo: export (\w+) = (\S+)$", text, re.M))
    assert "CXLAKE_LOG_FORMAT" in found, "the demo target sets no log format"
    return found


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_json(result) -> dict:
    assert result.stdout.lstrip().startswith("{"), result
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`make demo`'s runs, in its order and with its environment, into a lake of this module."""
    work = tmp_path_factory.mktemp("status-demo")
    env = {**makefile_demo_env(), "CXLAKE_LOG": "info", "CXLAKE_LAKE_URL": (work / "lake").as_uri() + "/"}
    outputs = {}
    for name in DEMO[:4]:
        result = run_cxlake(["run", f"jobs/demo/{name}.toml"], REPO, env)
        assert result.code == 0, result
        outputs[name] = result
    emulator = start_emulator(work)
    try:
        for name in DEMO[4:]:
            result = run_cxlake(["run", f"jobs/demo/{name}.toml"], REPO,
                                {**env, "CXLAKE_SALESFORCE_LOGIN_URL": emulator.url})
            assert result.code == 0, result
            outputs[name] = result
    finally:
        emulator.stop()
    return {"env": env, "lake": work / "lake", "outputs": outputs, "jobs": [f"jobs/demo/{n}.toml" for n in DEMO]}


def test_every_demo_job_is_ok(demo):
    """Every demo job ran clean, and the demo's reports cover every interval of their days in New
    York (issue 21's coverage finds none missing): every job is ok."""
    manifests = [json.loads(p.read_text()) for p in (demo["lake"] / "_etl" / "runs").glob("*.json")]
    missing = {m["job"]: m.get("missing_intervals") for m in manifests}
    assert missing["connect-queue-intervals"] == 0 and missing["connect-agent-intervals"] == 0, missing
    expected = {n: "ok" for n in DEMO_NAMES}
    table = run_cxlake(["status", *demo["jobs"]], REPO, demo["env"])
    assert table.code == EXIT["ok"], table
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["JOB", "VERDICT"], table
    assert {r.split()[0]: r.split()[1] for r in rows[:len(DEMO)]} == expected, table

    result = run_cxlake(["status", *demo["jobs"], "--json"], REPO, demo["env"])
    assert result.code == EXIT["ok"], result
    report = status_json(result)
    assert report["verdict"] == "ok"
    jobs = {j["job"]: j for j in report["jobs"]}
    assert set(jobs) == DEMO_NAMES
    for name, job in jobs.items():
        [manifest] = [m for m in manifests if m["job"] == name]
        assert job["verdict"] == expected[name] and (job["reason"] == "") == (expected[name] == "ok"), job
        assert job["missing_intervals"] == manifest.get("missing_intervals"), job
        assert job["last_run"]["run_id"] == manifest["run_id"] and job["last_run"]["exit_code"] == 0, job
        assert job["rows"] == manifest["rows"] and job["rejects"] == 0 and job["lost_rows"] == 0, job
        assert 0 <= job["last_success_age_seconds"] < 3600, job
        # The documented defaults: Connect jobs every 30 minutes (late after 2 h), the rest daily (26 h).
        assert job["late_after_seconds"] == (26 if job["kind"] in DAILY_KINDS else 2) * 3600, job
    assert jobs["connect-queue-intervals"]["rows"] > 0
    export = jobs["salesforce-export"]
    assert export["api_calls"] == [m for m in manifests if m["job"] == "salesforce-export"][0]["salesforce_api_calls"] > 0
    # The export's oldest object watermark, read from its state objects.
    marks = [json.loads(p.read_text())["watermark"]
             for p in (demo["lake"] / "_etl" / "state" / "salesforce-export" / "objects").glob("*.json")]
    oldest = min(dt.datetime.fromisoformat(m.replace("Z", "+00:00")) for m in marks)
    assert dt.datetime.fromisoformat(export["watermark"].replace("Z", "+00:00")) == oldest
    assert export["watermark_lag_seconds"] >= 0
    assert jobs["pushback-queue"]["api_calls"] > 0
    assert jobs["connect-queue-intervals"]["watermark"] is None


def test_the_lake_alone_lists_every_job_that_ran(demo):
    result = run_cxlake(["status", "--lake", demo["env"]["CXLAKE_LAKE_URL"], "--json"], REPO)
    assert result.code == EXIT["ok"], result
    report = status_json(result)
    assert sorted(j["job"] for j in report["jobs"]) == sorted(DEMO_NAMES)
    assert {j["kind"] for j in report["jobs"]} == {"connect-intervals"} | DAILY_KINDS


def test_a_lake_without_last_run_objects_is_read_from_its_run_records(demo, tmp_path):
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(demo["lake"], lake)
    shutil.rmtree(lake / "_etl" / "status")
    env = {"CXLAKE_LAKE_URL": lake.as_uri() + "/"}
    result = run_cxlake(["status", *demo["jobs"], "--json"], REPO, env)
    assert result.code == EXIT["ok"], result
    with_pointers = status_json(run_cxlake(["status", *demo["jobs"], "--json"], REPO, demo["env"]))
    ids = lambda report: {j["job"]: (j["verdict"], j["last_run"]["run_id"], j["rows"]) for j in report["jobs"]}  # noqa: E731
    assert ids(status_json(result)) == ids(with_pointers)


def test_jobs_are_late_once_the_clock_passes_their_schedule(demo):
    report = status_json(run_cxlake(["status", *demo["jobs"], "--json"], REPO, demo["env"]))
    # The newest run's end, up to the next whole second (--now takes whole seconds here).
    newest = max(dt.datetime.fromisoformat(j["last_success_at"].replace("Z", "+00:00")) for j in report["jobs"])
    now = newest.replace(microsecond=0) + dt.timedelta(seconds=1)
    # Three hours on: the half-hourly Connect jobs are late, the daily jobs are not yet.
    result = run_cxlake(["status", *demo["jobs"], "--json", "--now", iso(now + dt.timedelta(hours=3))], REPO, demo["env"])
    assert result.code == EXIT["late"], result
    verdicts = {j["job"]: j["verdict"] for j in status_json(result)["jobs"]}
    assert verdicts == {n: ("late" if n.startswith("connect-") else "ok") for n in DEMO_NAMES}, verdicts
    # A day and three hours on: every job is late.
    result = run_cxlake(["status", *demo["jobs"], "--now", iso(now + dt.timedelta(hours=27))], REPO, demo["env"])
    assert result.code == EXIT["late"], result
    assert all(r.split()[1] == "late" for r in result.stdout.splitlines()[1:1 + len(DEMO)]), result
    assert "rollup-queue: late: last success 27h ago, late after 26h" in result.stdout, result
    # Or the threshold instead of the clock.
    result = run_cxlake(["status", "jobs/demo/rollup-queue.toml", "--late-after-hours", "1", "--json",
                         "--now", iso(now + dt.timedelta(minutes=90))], REPO, demo["env"])
    assert result.code == EXIT["late"] and status_json(result)["jobs"][0]["late_after_seconds"] == 3600, result


def test_exit_codes_are_documented_in_help(cx):
    result = cx("status", "--help")
    assert result.code == 0, result
    text = " ".join(result.stdout.split())
    assert "0 every job ok, 3 partial, 6 late, 7 failing" in text, text
    for verdict in EXIT:
        assert f"{verdict} (" in text, verdict
    assert cx("status").code == 2  # neither job files nor a lake


def connect_status(cx, job, env=None, *extra):
    result = cx("status", job, "--json", *extra, env=env)
    report = status_json(result)
    [job_status] = report["jobs"]
    assert result.code == EXIT[job_status["verdict"]], result
    return job_status


def test_a_job_that_never_ran_is_late(cx, tmp_path):
    job = connect_job(tmp_path)
    status = connect_status(cx, job)
    assert status["verdict"] == "late" and status["last_run"] is None, status
    assert status["reason"] == "no run recorded in the lake"


def test_rejects_make_a_job_partial_and_a_failed_run_failing_on_a_local_lake(cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10")])
    job = connect_job(tmp_path)
    assert cx("run", job).code == 0
    # One report of 2024-03-10: the day's 15 later half hours are overdue (issue 21's coverage).
    status = connect_status(cx, job)
    assert (status["verdict"], status["missing_intervals"]) == ("partial", 15), status
    assert status["reason"] == "15 Connect interval(s) missing", status
    bad_files(reports)
    run = cx("run", job)
    assert run.code == 3, run
    status = connect_status(cx, job)
    assert status["verdict"] == "partial" and status["rejects"] == 5, status
    assert status["last_run"]["exit_code"] == 3 and status["last_run"]["outcome"] == "partial", status
    assert "rejected 5" in status["reason"], status

    # A run that fails (its source folder is gone) is recorded; the last success stays.
    success = status["last_success_at"]
    failed = cx("run", job, env={"CXLAKE_SOURCE_URL": "file://no-such-folder/"})
    assert failed.code == 1, failed
    status = connect_status(cx, job)
    assert status["verdict"] == "failing" and status["last_run"]["exit_code"] == 1, status
    assert "no-such-folder" in status["last_run"]["error"] and "no-such-folder" in status["reason"], status
    assert status["last_success_at"] == success
    table = cx("status", job)
    assert table.code == EXIT["failing"] and "connect-queue: failing: last run failed (exit 1" in table.stdout, table

    # A lake from before the last-run objects: the same answer from the newest run records.
    import shutil

    shutil.rmtree(tmp_path / "lake" / "_etl" / "status")
    from_history = connect_status(cx, job)
    assert from_history["verdict"] == "failing", from_history
    assert from_history["last_run"]["run_id"] == status["last_run"]["run_id"], from_history
    assert from_history["last_success_at"][:16] == success[:16], (from_history, success)


def test_status_reads_an_s3_lake(cx, tmp_path, aws, buckets):
    s3 = aws["s3"]
    for name, body in {"sfIntervalQueue-2024-03-10T16:30:00Z.csv":
                       "Queue,StartInterval,EndInterval,Contacts handled\n"
                       "Sales,2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,10\n",
                       "sfIntervalQueue-2024-03-10T17:00:00Z.csv": "Queue,EndInterval\nX,2024-03-10T17:00:00.000Z\n"}.items():
        s3.put_object(Bucket=buckets["reports"], Key=f"reports/{name}", Body=body.encode())
    lake = f"s3://{buckets['lake']}/cx"
    job = connect_job(tmp_path, source=f"s3://{buckets['reports']}/reports/", lake=lake)
    never = connect_status(cx, job, aws["env"])
    assert never["verdict"] == "late" and never["last_run"] is None, never
    run = cx("run", job, env=aws["env"])
    assert run.code == 3, run
    status = connect_status(cx, job, aws["env"])
    assert status["verdict"] == "partial" and status["rejects"] == 1 and status["rows"] == 1, status
    assert status["lake"] == lake + "/"
    # Listing the lake finds the same job; the pointers are the only objects read per job.
    listed = cx("status", "--lake", lake, "--json", env=aws["env"])
    assert listed.code == EXIT["partial"], listed
    assert [j["job"] for j in status_json(listed)["jobs"]] == ["connect-queue"]
    later = iso(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=5))
    assert connect_status(cx, job, aws["env"], "--now", later)["verdict"] == "late"
    failed = cx("run", job, env={**aws["env"], "CXLAKE_SOURCE_URL": f"s3://{buckets['reports']}-missing/reports/"})
    assert failed.code == 1, failed
    assert connect_status(cx, job, aws["env"])["verdict"] == "failing"


# --------------------------------------------------------------------------------------------
# make demo's output


FALLBACK = re.compile(r"^\s+(\w+) weighted by the fallback ")


def test_demo_output_has_no_json_and_one_line_per_fallback_column(demo):
    for name, result in demo["outputs"].items():
        for line in result.output.splitlines():
            assert not line.lstrip().startswith(("{", "[")), f"{name}: JSON line: {line}"
    for name in ("rollup-queue", "rollup-agent"):
        result = demo["outputs"][name]
        columns = [m.group(1) for m in map(FALLBACK.match, result.stdout.splitlines()) if m]
        assert len(columns) == len(set(columns)), f"{name}: a column on more than one line: {result.stdout}"
        # The per-day detail is not on the terminal: it is in the run manifest.
        [manifest] = [json.loads(p.read_text()) for p in (demo["lake"] / "_etl" / "runs").glob(f"*-{name}-*.json")]
        fallback = [w for w in manifest["warnings"] if "fallback" in w["message"]]
        if columns:
            [kind] = fallback
            assert kind["count"] == len(kind["details"]) >= len(columns), kind
            assert {c for c in columns} == {re.search(r"column=(\w+)", d).group(1) for d in kind["details"]}
            # One example in the log, then one line with the count of the rest.
            log_lines = [l for l in result.stderr.splitlines() if "fallback denominator" in l]
            assert len(log_lines) <= 2, result.stderr
    # The demo's queue reports lack the first denominator of some weighted metrics.
    assert any(FALLBACK.match(l) for l in demo["outputs"]["rollup-queue"].stdout.splitlines())


def test_repeated_warnings_are_logged_once_with_a_count_and_each_at_debug(demo, tmp_path):
    """Off a terminal (JSON logs): one fallback warning as the example and one summary with the
    count the manifest holds; at debug, every one."""
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(demo["lake"], lake)
    env = {"CXLAKE_LAKE_URL": lake.as_uri() + "/", "CXLAKE_LOG": "info"}
    job = ["run", "jobs/demo/rollup-queue.toml", "--from", "2024-03-08", "--to", "2024-03-11"]
    counts = {}
    for level in ("info", "cxlake=debug"):
        before = set((lake / "_etl" / "runs").glob("*-rollup-queue-*.json"))
        result = run_cxlake(job, REPO, {**env, "CXLAKE_LOG": level})
        assert result.code == 0, result
        [manifest] = [json.loads(p.read_text()) for p in set((lake / "_etl" / "runs").glob("*-rollup-queue-*.json")) - before]
        [kind] = [w for w in manifest["warnings"] if "fallback" in w["message"]]
        events = [json.loads(l) for l in result.stderr.splitlines() if l.startswith("{")]
        fallback = [e for e in events if e.get("message") == "weighted by a fallback denominator"]
        summary = [e for e in events if "more like this" in e.get("message", "")]
        counts[level] = (kind["count"], len(fallback), summary)
    total, shown, [summary] = counts["info"]
    assert shown == 1 and summary["level"] == "WARN" and summary["count"] == total > 1, counts
    assert summary["message"].startswith(f"{total - 1} more like this"), summary
    debug_total, debug_shown, debug_summary = counts["cxlake=debug"]
    assert debug_shown == debug_total == total and debug_summary == [], counts
