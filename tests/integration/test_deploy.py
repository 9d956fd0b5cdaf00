"""The deployment: CloudFormation templates lint clean, IAM stays least-privilege (no `*` resource
on a data action), every schedule has a fixed window, retries and a dead-letter queue, the lake
bucket is private and encrypted, and the image ships no compiler."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from cfnlint.decode import decode

from conftest import REPO

TEMPLATES = sorted((REPO / "deploy").glob("*.yaml"))
DATA_ACTIONS = ("s3:", "glue:", "secretsmanager:", "kms:", "sqs:", "ecs:", "iam:")


def template(path: pathlib.Path) -> dict:
    parsed, problems = decode(str(path))
    assert not problems, problems
    return parsed


def resources(kind: str):
    for path in TEMPLATES:
        for name, resource in template(path)["Resources"].items():
            if resource["Type"] == kind:
                yield name, resource["Properties"]


def statements(document):
    for statement in document.get("Statement", []):
        # A Fn::If picks one of two statements.
        if "Fn::If" in statement:
            yield from (s for s in statement["Fn::If"][1:] if isinstance(s, dict) and "Effect" in s)
        else:
            yield statement


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_templates_exist_and_lint_clean():
    assert TEMPLATES, "deploy/ has no templates"
    cfn_lint = pathlib.Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), *map(str, TEMPLATES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_wildcard_resource_on_data_actions():
    checked = 0
    for name, props in resources("AWS::IAM::Role"):
        for policy in props.get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                actions = as_list(statement["Action"])
                if statement["Effect"] != "Allow" or not any(a.startswith(DATA_ACTIONS) for a in actions):
                    continue
                checked += 1
                for resource in as_list(statement["Resource"]):
                    assert resource != "*", f"{name}/{policy['PolicyName']}: {actions} on *"
                    assert not (isinstance(resource, str) and resource.endswith(":*:*")), resource
    assert checked >= 8


def test_task_role_reads_only_the_report_prefix_and_writes_only_the_lake_prefix():
    [(_, task)] = [r for r in resources("AWS::IAM::Role") if r[0] == "TaskRole"]
    policies = {p["PolicyName"]: list(statements(p["PolicyDocument"])) for p in task["Policies"]}
    read = policies["read-connect-reports"]
    assert all(a in ("s3:GetObject", "s3:ListBucket") for s in read for a in as_list(s["Action"]))
    assert read[1]["Condition"]["StringLike"]["s3:prefix"]
    write = policies["write-lake"]
    assert "s3:PutObject" in write[0]["Action"] and "LakePrefix" in str(write[0]["Resource"])
    [secret] = [s for s in policies["salesforce-secret"] if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert secret["Resource"] == {"Ref": "SalesforceSecretArn"}


def test_every_schedule_is_exact_retried_and_has_a_dead_letter_queue():
    schedules = list(resources("AWS::Scheduler::Schedule"))
    assert len(schedules) >= 5
    commands = []
    for name, props in schedules:
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}, name
        target = props["Target"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        assert "DeadLetterConfig" in target, name
        assert target["EcsParameters"]["LaunchType"] == "FARGATE"
        commands.append(str(target["Input"]))
    for job in ("aws/connect-queue.toml", "aws/connect-agent.toml", "aws/salesforce-export.toml",
                "aws/rollup-queue.toml", "aws/pushback-queue.toml"):
        assert any(job in c for c in commands), job
        assert (REPO / "jobs" / job).exists(), job


def test_lake_bucket_is_private_encrypted_and_expires_rejects():
    [(_, bucket)] = list(resources("AWS::S3::Bucket"))
    block = bucket["PublicAccessBlockConfiguration"]
    assert all(block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert "_etl/rejects/" in str(rules["expire-rejects"]["Prefix"])


@pytest.mark.parametrize("line", ["FROM gcr.io/distroless", "ENTRYPOINT [\"/usr/local/bin/cxlake\"]"])
def test_image_is_distroless_with_cxlake_as_entrypoint(line):
    dockerfile = (REPO / "Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert line.replace("FROM ", "") in final_stage or line in dockerfile
    assert not any(tool in final_stage.split("\n")[0] for tool in ("rust", "cargo", "gcc"))


def test_build_stage_copies_every_folder_the_binary_embeds():
    # include_str!/include_bytes! read files at compile time: the image's build stage must hold them.
    import re

    build_stage = re.split(r"^FROM ", (REPO / "Dockerfile").read_text(), flags=re.M)[1]
    copied = set(re.findall(r"^COPY (?:--\S+ )*(\S+)", build_stage, re.M))
    embedded = set()
    for source in [*(REPO / "src").rglob("*.rs"), *(REPO / "crates").rglob("*.rs")]:
        for included in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', source.read_text()):
            top = (source.parent / included).resolve().relative_to(REPO).parts[0]
            embedded.add(top)
    assert embedded >= {"schemas", "jobs", "crates"}, embedded
    assert embedded <= copied, f"not copied into the build stage: {embedded - copied}"


def test_backfill_array_job_runs_every_shard_of_one_command_line(tmp_path, cx):
    """The Batch job definition's command, with the parameters a submit gives, is a sharded
    `cxlake run` the CLI accepts; each child takes its shard from AWS_BATCH_JOB_ARRAY_INDEX."""
    from conftest import connect_job
    from fixtures import half_hours, queue_report

    definition = dict(resources("AWS::Batch::JobDefinition"))["BackfillJobDefinition"]
    assert definition["PlatformCapabilities"] == ["FARGATE"]
    container = definition["ContainerProperties"]
    assert container["JobRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert definition["RetryStrategy"]["Attempts"] >= 2
    command = container["Command"]
    assert command[0] == "run" and "--shard" in command
    assert definition["Parameters"]["shards"].startswith("array/")

    for start in half_hours("2024-03-01T00:00Z", "2024-03-02T23:30Z"):
        queue_report(tmp_path / "reports", start, [("Sales", "10", "120.5")])
    job = connect_job(tmp_path)
    submitted = {**definition["Parameters"], "job": str(job), "from": "2024-03-01", "to": "2024-03-02",
                 "shards": "array/2"}
    args = [submitted[a[len("Ref::"):]] if a.startswith("Ref::") else a for a in command]
    days = set()
    for index in range(2):
        result = cx(*args, env={"AWS_BATCH_JOB_ARRAY_INDEX": str(index)})
        assert result.code == 0, result
        days |= {p.parent.name for p in (tmp_path / "lake" / "connect_queue_interval").rglob("*.parquet")}
    assert days == {"dt=2024-03-01", "dt=2024-03-02"}


def test_export_shard_array_job_splits_the_objects_of_one_command_line(tmp_path, cx, emulator):
    """The export job definition's command, with a submit's parameters, is `cxlake run <job>
    --shard array/N`: each child exports its own objects, together every object of the job."""
    from conftest import export_job

    definition = dict(resources("AWS::Batch::JobDefinition"))["ExportShardJobDefinition"]
    command = definition["ContainerProperties"]["Command"]
    assert "--from" not in command, "an export shard runs the job's own window"
    objects = ("Account", "Contact", "Case")
    job = export_job(tmp_path, emulator.url, objects=objects, api="rest")
    submitted = {**definition["Parameters"], "job": str(job), "shards": "array/2"}
    args = [submitted[a[len("Ref::"):]] if a.startswith("Ref::") else a for a in command]
    tables = []
    for index in range(2):
        result = cx(*args, env={"AWS_BATCH_JOB_ARRAY_INDEX": str(index)})
        assert result.code == 0, result
        tables.append({p.name for p in (tmp_path / "lake").iterdir() if p.name.startswith("sf_")})
    assert tables[0] == {"sf_account", "sf_account_latest", "sf_case", "sf_case_latest"}
    assert tables[1] - tables[0] == {"sf_contact", "sf_contact_latest"}
