"""`cxlake init` writes a new deployment's job files that validate and run as they are."""

from __future__ import annotations

import tomllib

from fixtures import queue_report


def init_args(tmp_path, *extra: str, instance: str = "acme-prod", lake: str = "file://lake") -> list[str]:
    return ["init", "jobs/acme", "--reports", f"file://{tmp_path}/reports/", "--instance", instance,
            "--lake", lake, "--timezone", "Europe/Berlin", *extra]


def test_init_writes_every_job_kind_with_the_deployments_settings(cx, tmp_path):
    result = cx(*init_args(tmp_path, "--database", "acme_cc", "--salesforce-user", "etl@acme.example",
                           "--salesforce-credentials", "env", lake="s3://acme-lake/cx"))
    assert result.code == 0, result
    files = sorted(p.name for p in (tmp_path / "jobs" / "acme").glob("*.toml"))
    assert files == ["connect-agent.toml", "connect-queue.toml", "pushback-agent.toml", "pushback-queue.toml",
                     "rollup-agent.toml", "rollup-queue.toml", "salesforce-export.toml"]
    jobs = {name: tomllib.loads((tmp_path / "jobs" / "acme" / name).read_text()) for name in files}
    assert {j["job"]["kind"] for j in jobs.values()} == {"connect-intervals", "interval-rollup",
                                                         "salesforce-export", "salesforce-pushback"}
    assert jobs["connect-agent.toml"]["source"]["url"] == f"file://{tmp_path}/reports/Agent/"
    assert jobs["connect-queue.toml"]["source"]["instance"] == "acme-prod"
    assert all(j["job"]["timezone"] == "Europe/Berlin" and j["lake"]["url"] == "s3://acme-lake/cx"
               for j in jobs.values())
    assert jobs["rollup-queue.toml"]["catalog"]["database"] == "acme_cc"
    assert jobs["salesforce-export.toml"]["salesforce"]["credentials"] == "env"
    assert jobs["pushback-queue.toml"]["salesforce"]["username"] == "etl@acme.example"
    assert jobs["pushback-agent.toml"]["pushback"]["report"] == "agent"
    assert jobs["pushback-agent.toml"]["salesforce"]["username"] == "etl@acme.example"

    validated = cx("validate", "--print", *[f"jobs/acme/{n}" for n in files])
    assert validated.code == 0, validated
    assert 'source.instance = "acme-prod"' in validated.stdout


def test_an_initialised_connect_job_runs_as_written(cx, tmp_path):
    queue_report(tmp_path / "reports" / "Queue", "2024-03-10T16:00Z", [("Sales", "10")])
    assert cx(*init_args(tmp_path)).code == 0
    result = cx("run", "jobs/acme/connect-queue.toml")
    assert result.code == 0, result
    assert list((tmp_path / "lake" / "connect_queue_interval").glob("dt=2024-03-10/*.parquet"))
    # Without --database the jobs make no Glue calls.
    assert "catalog" not in tomllib.loads((tmp_path / "jobs" / "acme" / "connect-queue.toml").read_text())


def test_init_refuses_to_overwrite_and_writes_nothing_for_bad_settings(cx, tmp_path):
    assert cx(*init_args(tmp_path)).code == 0
    before = (tmp_path / "jobs" / "acme" / "connect-queue.toml").read_text()
    again = cx(*init_args(tmp_path, instance="other"))
    assert again.code == 2 and "--force" in again.stderr, again
    assert (tmp_path / "jobs" / "acme" / "connect-queue.toml").read_text() == before
    assert cx(*init_args(tmp_path, "--force", instance="other")).code == 0
    assert '"other"' in (tmp_path / "jobs" / "acme" / "connect-queue.toml").read_text()

    bad = cx("init", "jobs/bad", "--reports", "s3://r/", "--instance", "x", "--lake", "s3://l/cx",
             "--timezone", "Mars/Olympus")
    assert bad.code == 2 and "Mars/Olympus" in bad.stderr, bad
    assert not (tmp_path / "jobs" / "bad").exists()
    # Every problem is named, file by file, one per line: a Glue catalog needs an S3 lake.
    local = cx("init", "jobs/bad", "--reports", "s3://r/", "--instance", "x", "--lake", "file://lake",
               "--database", "cc")
    assert local.code == 2, local
    problems = [l for l in local.stderr.splitlines() if "a Glue catalog needs an s3:// lake.url" in l]
    assert {p.split(":")[0].strip(" -") for p in problems} == {"connect-queue.toml", "connect-agent.toml",
                                                               "rollup-queue.toml", "rollup-agent.toml",
                                                               "salesforce-export.toml"}, local.stderr
    assert not (tmp_path / "jobs" / "bad").exists()
