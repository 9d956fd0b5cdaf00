"""Job locks against moto S3 (conditional puts, If-None-Match / If-Match) and a local folder:
two concurrent runs of one job — exactly one proceeds; a stale lock is taken over."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from conftest import base_env, connect_job, cxlake_path
from fixtures import half_hours, queue_report

LOCK = "cxlake/_etl/locks/connect-queue"


def many_reports(folder, n=400):
    for start in list(half_hours("2024-01-01T00:00Z", "2024-02-01T00:00Z"))[:n]:
        queue_report(folder, start, [("Sales", "10"), ("Support", "3")])


def upload(s3, bucket, folder):
    for path in sorted(folder.iterdir()):
        s3.put_object(Bucket=bucket, Key=f"reports/{path.name}", Body=path.read_bytes())


def test_two_concurrent_runs_exactly_one_proceeds(tmp_path, aws, buckets):
    many_reports(tmp_path / "reports")
    upload(aws["s3"], buckets["reports"], tmp_path / "reports")
    job = connect_job(tmp_path, source=f"s3://{buckets['reports']}/reports/", lake=f"s3://{buckets['lake']}/cxlake")
    env = {**base_env(), **aws["env"]}
    runs = [subprocess.Popen([cxlake_path(), "run", str(job)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(r.wait(timeout=300), r.stdout.read(), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 4], outcomes
    skipped = next(o for o in outcomes if o[0] == 4)
    assert "skipped: job connect-queue is running elsewhere" in skipped[2], skipped
    # The winner released its lock; the lake has every report's rows.
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=buckets["lake"], Prefix="cxlake/_etl/locks/").get("Contents", [])]
    assert keys == []


def test_a_stale_lock_is_taken_over_and_a_live_one_is_respected(tmp_path, aws, buckets, cx):
    queue_report(tmp_path / "reports", "2024-03-10T16:00Z", [("Sales", "10")])
    upload(aws["s3"], buckets["reports"], tmp_path / "reports")
    job = connect_job(tmp_path, source=f"s3://{buckets['reports']}/reports/", lake=f"s3://{buckets['lake']}/cxlake")
    now = dt.datetime.now(dt.timezone.utc)

    def lock(expires: dt.datetime) -> None:
        body = {"owner": "crashed-host pid 1", "started_at": (now - dt.timedelta(hours=5)).isoformat(),
                "expires_at": expires.isoformat(), "command": "cxlake run job.toml"}
        aws["s3"].put_object(Bucket=buckets["lake"], Key=LOCK, Body=json.dumps(body))

    lock(now + dt.timedelta(hours=1))
    held = cx("run", job, env=aws["env"])
    assert held.code == 4 and "crashed-host pid 1" in held.stderr, held
    assert not aws["s3"].list_objects_v2(Bucket=buckets["lake"], Prefix="cxlake/connect_queue_interval/").get("Contents")

    lock(now - dt.timedelta(minutes=1))
    taken = cx("run", job, env={**aws["env"], "CXLAKE_LOG": "warn"})
    assert taken.code == 0, taken
    assert "took over a stale lock" in taken.output, taken
    assert aws["s3"].list_objects_v2(Bucket=buckets["lake"], Prefix="cxlake/connect_queue_interval/")["KeyCount"] == 1
    assert aws["s3"].list_objects_v2(Bucket=buckets["lake"], Prefix=LOCK).get("KeyCount", 0) == 0


def test_dry_runs_take_no_lock_and_local_lakes_lock_too(tmp_path, cx):
    queue_report(tmp_path / "reports", "2024-03-10T16:00Z", [("Sales", "10")])
    job = connect_job(tmp_path)
    lock_file = tmp_path / "lake" / "_etl" / "locks" / "connect-queue"
    lock_file.parent.mkdir(parents=True)
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    lock_file.write_text(json.dumps({"owner": "laptop pid 7", "started_at": future, "expires_at": future, "command": "x"}))
    assert cx("run", "--dry-run", job).code == 0
    held = cx("run", job)
    assert held.code == 4 and "laptop pid 7" in held.stderr, held
    lock_file.unlink()
    assert cx("run", job).code == 0
    assert not lock_file.exists()
