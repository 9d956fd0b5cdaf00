"""SIGKILL a connect run against moto S3 at several points, rerun, and the lake equals that of an
uninterrupted run; meanwhile no partial object is ever visible under the table prefix."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from conftest import base_env, connect_job, cxlake_path, is_run_record
from fixtures import half_hours, queue_report

TABLE_PREFIX = "cxlake/connect_queue_interval/"


def lake_state(s3, bucket) -> dict[str, bytes]:
    """Data files and job state: everything but the run records (manifests, run tables) and locks."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="cxlake/"):
        for o in page.get("Contents", []):
            key = o["Key"]
            if is_run_record(key) or "/_etl/locks/" in key:
                continue
            found[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, aws):
    """Reports in a source bucket and the lake of one uninterrupted run over them."""
    folder = tmp_path_factory.mktemp("sigkill")
    s3 = aws["s3"]
    for bucket in ("sk-source", "sk-reference"):
        s3.create_bucket(Bucket=bucket)
    for start in list(half_hours("2024-01-01T00:00Z", "2024-03-01T00:00Z"))[:1500]:
        path = queue_report(folder / "reports", start, [("Sales", "10", "120.5"), ("Support EU", "3", "60"),
                                                         ("Billing", "-", "-")])
        s3.put_object(Bucket="sk-source", Key=f"reports/{path.name}", Body=path.read_bytes())
    job = connect_job(folder, source="s3://sk-source/reports/", lake="s3://sk-reference/cxlake", file="ref.toml")
    env = {**base_env(), **aws["env"]}
    assert subprocess.run([cxlake_path(), "run", str(job)], cwd=folder, env=env, capture_output=True).returncode == 0
    return lake_state(s3, "sk-reference")


@pytest.mark.parametrize("kill_after", [0.15, 0.5, 1.2])
def test_killed_run_then_rerun_equals_an_uninterrupted_run(tmp_path, aws, uninterrupted, kill_after):
    s3 = aws["s3"]
    killed = f"sk-kill-{int(kill_after * 100)}"
    s3.create_bucket(Bucket=killed)
    env = {**base_env(), **aws["env"]}
    expected = {k.replace("sk-reference", killed): v for k, v in uninterrupted.items()}

    job = connect_job(tmp_path, source="s3://sk-source/reports/", lake=f"s3://{killed}/cxlake", file="kill.toml")
    run = subprocess.Popen([cxlake_path(), "run", str(job), "--lock-ttl", "1"], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + kill_after
    while time.monotonic() < deadline and run.poll() is None:
        # Every object under the table prefix is a whole Parquet file at every moment.
        for o in s3.list_objects_v2(Bucket=killed, Prefix=TABLE_PREFIX).get("Contents", []):
            body = s3.get_object(Bucket=killed, Key=o["Key"])["Body"].read()
            pq.read_table(io.BytesIO(body))
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL, "the run finished before it could be killed: make the input larger"

    time.sleep(1.1)  # the killed run's lock (TTL 1 s) goes stale and is taken over
    rerun = subprocess.run([cxlake_path(), "run", str(job)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    got = lake_state(s3, killed)
    assert set(got) == set(expected)
    for key in expected:
        if key.endswith(".json"):
            assert json.loads(got[key]) == json.loads(expected[key]), key
        else:
            assert got[key] == expected[key], key
