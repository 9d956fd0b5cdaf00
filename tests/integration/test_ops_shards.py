"""`--shard I/N`: the shards of a backfill, run at once, produce exactly the lake of one
unsharded run; shards need a window and apply to connect-intervals jobs only."""

from __future__ import annotations

import subprocess

from conftest import base_env, connect_job, cxlake_path, is_run_record
from fixtures import half_hours, queue_report


def data_files(lake):
    """The data tables' files (each run also adds its own rows to the run tables)."""
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*.parquet"))
            if not is_run_record(p.relative_to(lake).as_posix())}


def test_shards_together_equal_one_unsharded_run(tmp_path, cx):
    reports = tmp_path / "reports"
    for start in list(half_hours("2024-03-01T00:00Z", "2024-03-12T23:30Z")):
        queue_report(reports, start, [("Sales", "10", "120.5"), ("Köln Überlauf", "2", "-")])
    whole = connect_job(tmp_path, lake="file://whole", timezone="America/New_York", file="whole.toml")
    window = ["--from", "2024-03-01", "--to", "2024-03-12"]
    assert cx("run", whole, *window).code == 0

    sharded = connect_job(tmp_path, lake="file://sharded", timezone="America/New_York", file="sharded.toml")
    runs = [subprocess.Popen([cxlake_path(), "run", str(sharded), *window, "--shard", f"{i}/3"], cwd=tmp_path,
                             env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    expected = data_files(tmp_path / "whole")
    assert len(expected) >= 12
    assert data_files(tmp_path / "sharded") == expected
    # Shards leave the watermark alone; the unsharded run moved it.
    assert not (tmp_path / "sharded" / "_etl" / "state" / "connect-queue.json").exists()
    assert (tmp_path / "whole" / "_etl" / "state" / "connect-queue.json").exists()


def test_shard_needs_a_window_and_a_valid_index(tmp_path, cx):
    job = connect_job(tmp_path)
    assert cx("run", job, "--shard", "0/2").code == 2
    for bad in ("2/2", "1", "a/b", "0/0"):
        result = cx("run", job, "--from", "2024-03-01", "--to", "2024-03-02", "--shard", bad)
        assert result.code == 2 and "I/N" in result.stderr, (bad, result)


def test_an_aws_batch_array_job_runs_every_shard_with_one_command_line(tmp_path, cx):
    """`--shard array/N` reads I from AWS_BATCH_JOB_ARRAY_INDEX, which AWS Batch sets in each
    child of an array job (0 … N-1): the children together equal one unsharded run."""
    reports = tmp_path / "reports"
    for start in list(half_hours("2024-03-01T00:00Z", "2024-03-06T23:30Z")):
        queue_report(reports, start, [("Sales", "10", "120.5"), ("Support", "2", "-")])
    window = ["--from", "2024-03-01", "--to", "2024-03-06"]
    whole = connect_job(tmp_path, lake="file://whole", file="whole.toml")
    assert cx("run", whole, *window).code == 0
    array = connect_job(tmp_path, lake="file://array", file="array.toml")
    for index in range(3):
        result = cx("run", array, *window, "--shard", "array/3", env={"AWS_BATCH_JOB_ARRAY_INDEX": str(index)})
        assert result.code == 0, result
    expected = data_files(tmp_path / "whole")
    assert len(expected) >= 6
    assert data_files(tmp_path / "array") == expected

    # Outside an array job, or with an index the size does not allow: bad usage, named.
    unset = cx("run", array, *window, "--shard", "array/3")
    assert unset.code == 2 and "AWS_BATCH_JOB_ARRAY_INDEX" in unset.stderr and "not set" in unset.stderr, unset
    beyond = cx("run", array, *window, "--shard", "array/3", env={"AWS_BATCH_JOB_ARRAY_INDEX": "3"})
    assert beyond.code == 2 and "not below the 3 shards" in beyond.stderr, beyond
