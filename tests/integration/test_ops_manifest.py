"""Every run leaves a manifest under _etl/runs/ and, off a terminal, one CloudWatch EMF line."""

from __future__ import annotations

import json

from conftest import connect_job
from fixtures import queue_report


def test_manifest_and_emf_line_agree_with_the_run(cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10"), ("Support", "4")])
    queue_report(reports, "2024-03-10T16:30Z", [("Sales", "12")])
    queue_report(reports, "2024-03-10T17:00Z", [("Sales", "x")])  # rejected: not a count
    result = cx("run", connect_job(tmp_path))
    assert result.code == 3, result
    [manifest_file] = list((tmp_path / "lake" / "_etl" / "runs").glob("*.json"))
    manifest = json.loads(manifest_file.read_text())
    assert manifest["job"] == "connect-queue" and manifest["kind"] == "connect-intervals"
    assert manifest["exit_code"] == 3 and manifest["inputs"] == 3 and manifest["rows"] == 3
    assert manifest["rejects"] == 1 and manifest["bytes_written"] > 0
    assert manifest_file.name.startswith(manifest["run_id"][:8])

    [emf] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{') and '"_aws"' in line]
    metrics = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Rows", "Bytes", "Rejects", "ApiCalls", "DurationSeconds"} <= metrics
    assert emf["Job"] == "connect-queue" and emf["Rows"] == 3 and emf["Rejects"] == 1
    assert emf["Bytes"] == manifest["bytes_written"]

    # A dry run writes no manifest.
    assert cx("run", "--dry-run", connect_job(tmp_path)).code == 0
    assert len(list((tmp_path / "lake" / "_etl" / "runs").glob("*.json"))) == 1
