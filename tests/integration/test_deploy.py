"""The deployment: CloudFormation templates lint clean, IAM stays least-privilege (no `*` resource
on a data action), every schedule has a fixed window, retries and a dead-letter queue, the lake
bucket is private and encrypted, the image ships no compiler, and the alarms and dashboard watch
metrics a real run emits (namespace, metric and dimension names of its EMF line, the job names of
the scheduled job files), every scheduled job has failed-run and freshness alarms, and every alarm
notifies the alarm topic."""

from __future__ import annotations

import json
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
    assert len(schedules) >= 6
    commands = []
    for name, props in schedules:
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}, name
        target = props["Target"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        assert "DeadLetterConfig" in target, name
        assert target["EcsParameters"]["LaunchType"] == "FARGATE"
        commands.append(str(target["Input"]))
    for job in ("aws/connect-queue.toml", "aws/connect-agent.toml", "aws/salesforce-export.toml",
                "aws/rollup-queue.toml", "aws/rollup-agent.toml", "aws/pushback-queue.toml",
                "aws/pushback-agent.toml"):
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


# --------------------------------------------------------------------------------------------
# Alarms and dashboard (deploy/cxlake.yaml): they watch what a real run emits

STACK = REPO / "deploy" / "cxlake.yaml"
NOTIFY = [
    {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]},
    {"Fn::If": ["HasAlarmEmail", {"Ref": "AlarmTopic"}, {"Ref": "AWS::NoValue"}]},
]


def stack_resources(kind: str) -> dict[str, dict]:
    return {name: r for name, r in template(STACK)["Resources"].items() if r["Type"] == kind}


def alarms() -> dict[str, dict]:
    found = {name: r["Properties"] for name, r in stack_resources("AWS::CloudWatch::Alarm").items()}
    assert found, "deploy/cxlake.yaml has no alarms"
    return found


def scheduled_jobs() -> dict[str, str]:
    """The [job] name of every job file a schedule runs (the EMF `Job` dimension), by schedule."""
    import re
    import tomllib

    jobs = {}
    for name, resource in stack_resources("AWS::Scheduler::Schedule").items():
        target = resource["Properties"]["Target"]
        command = target["Input"]["Fn::Sub"] if isinstance(target["Input"], dict) else target["Input"]
        files = re.findall(r'"(aws/[a-z0-9-]+\.toml)"', command)
        assert files, f"{name} runs no job file"
        for file in files:
            job = tomllib.loads((REPO / "jobs" / file).read_text(encoding="utf-8"))["job"]["name"]
            jobs[job] = name
    return jobs


def dimensions(props: dict) -> dict:
    return {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


def dashboard_metrics() -> list[tuple[str, str, dict, str]]:
    """(namespace, metric, dimensions, widget title) of every metric line of the dashboard."""
    import re

    [(_, dashboard)] = stack_resources("AWS::CloudWatch::Dashboard").items()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # ${AWS::Region}, ${DeadLetterQueue.QueueName}: substituted by CloudFormation; keep the name.
    parsed = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))
    lines = []
    for widget in parsed["widgets"]:
        props = widget["properties"]
        for line in props["metrics"]:
            assert "..." not in line and "." not in line, f"spell out each metric line: {line}"
            names = [x for x in line if not isinstance(x, dict)]
            namespace, metric, pairs = names[0], names[1], names[2:]
            assert len(pairs) % 2 == 0, line
            lines.append((namespace, metric, dict(zip(pairs[::2], pairs[1::2])), props["title"]))
    return lines


@pytest.fixture
def emf(cx, tmp_path) -> dict:
    """The EMF document of a real run: the demo queue job (same [job] name as the production one)
    over the bundled reports, into a lake in the test's directory."""
    reports = (REPO / "examples" / "connect" / "Reports" / "SFDC" / "Queue").as_uri() + "/"
    result = cx("run", str(REPO / "jobs" / "demo" / "connect-queue.toml"),
                env={"CXLAKE_SOURCE_URL": reports, "CXLAKE_LAKE_URL": "file://lake"})
    assert result.code == 0, result
    [line] = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{") and '"_aws"' in l]
    return line


def emitted(emf: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension names) of every metric the EMF document declares, each with
    a numeric value and each dimension with a value in the document."""
    found = set()
    for directive in emf["_aws"]["CloudWatchMetrics"]:
        for names in directive["Dimensions"]:
            assert all(isinstance(emf.get(n), str) for n in names), names
            for metric in directive["Metrics"]:
                assert isinstance(emf[metric["Name"]], (int, float)), metric
                found.add((directive["Namespace"], metric["Name"], tuple(sorted(names))))
    return found


def test_every_watched_metric_is_one_a_real_run_emits(emf):
    emits = emitted(emf)
    jobs = scheduled_jobs()
    # The dimension value the binary writes is the job file's [job] name, which the alarms use.
    assert emf["Job"] in jobs, (emf["Job"], jobs)
    watched = [(p["Namespace"], p["MetricName"], dimensions(p), name) for name, p in alarms().items()]
    watched += dashboard_metrics()
    for namespace, metric, dims, where in watched:
        if namespace == "AWS/SQS":  # the scheduler's dead-letter queue, measured by SQS itself
            assert (metric, list(dims)) == ("ApproximateNumberOfMessagesVisible", ["QueueName"]), where
            assert dims["QueueName"] in ({"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]},
                                         "<DeadLetterQueue.QueueName>"), where
            continue
        assert (namespace, metric, tuple(sorted(dims))) in emits, f"{where}: {namespace}/{metric} {dims} is not emitted"
        assert dims["Job"] in jobs, f"{where}: no schedule runs a job named {dims['Job']!r}"
    assert any(ns == "AWS/SQS" for ns, *_ in watched), "nothing watches the dead-letter queue"


def test_dashboard_shows_rows_bytes_rejects_duration_and_api_calls_per_job():
    shown = {(metric, dims.get("Job")) for _, metric, dims, _ in dashboard_metrics()}
    for job in scheduled_jobs():
        for metric in ("Rows", "Bytes", "Rejects", "DurationSeconds", "ApiCalls"):
            assert (metric, job) in shown, (metric, job)


def is_freshness(props: dict) -> bool:
    return props["ComparisonOperator"] in ("LessThanThreshold", "LessThanOrEqualToThreshold")


def test_freshness_alarms_treat_missing_data_as_breaching_and_the_rest_do_not(emf):
    parameters = template(STACK)["Parameters"]
    freshness = {name: p for name, p in alarms().items() if is_freshness(p)}
    assert freshness
    for name, props in freshness.items():
        assert props["TreatMissingData"] == "breaching", name
        # Every run emits the metric once: its sample count is the number of runs.
        assert props["Statistic"] == "SampleCount" and props["MetricName"] in emf, name
        assert props["ComparisonOperator"] == "LessThanThreshold" and props["Threshold"] == 1, name
        # N of N hourly periods without a run: the window is a parameter, within CloudWatch's
        # limit (periods of an hour or more: at most 7 days of evaluation).
        hours = props["EvaluationPeriods"]["Ref"]
        assert props["DatapointsToAlarm"] == {"Ref": hours}, name
        assert int(props["Period"]) == 3600, name
        assert parameters[hours]["Type"] == "Number"
        assert 1 <= int(parameters[hours]["MinValue"]) and int(parameters[hours]["MaxValue"]) * 3600 <= 604800
    for name, props in alarms().items():
        if not is_freshness(props):
            assert props["TreatMissingData"] == "notBreaching", f"{name}: a quiet hour is not an alarm"


def test_every_scheduled_job_has_failed_rejects_and_freshness_alarms():
    parameters = template(STACK)["Parameters"]
    schedules = stack_resources("AWS::Scheduler::Schedule")
    by_job: dict[str, dict[str, dict]] = {}
    for props in alarms().values():
        job = dimensions(props).get("Job")
        if job:
            key = "Freshness" if is_freshness(props) else props["MetricName"]
            assert key not in by_job.setdefault(job, {}), f"two {key} alarms for {job}"
            by_job[job][key] = props
    for job, schedule in scheduled_jobs().items():
        watched = by_job.get(job, {})
        for key in ("Failed", "Rejects", "Freshness"):
            assert key in watched, f"{job} ({schedule}) has no {key} alarm"
        for key in ("Failed", "Rejects"):
            assert watched[key]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and watched[key]["Threshold"] == 1
        # The default window is longer than the gap between two scheduled runs.
        hour_field = schedules[schedule]["Properties"]["ScheduleExpression"].split()[1]
        gap_hours = 0.5 if hour_field == "*" else 24
        window = parameters[watched["Freshness"]["EvaluationPeriods"]["Ref"]]["Default"]
        assert int(window) > gap_hours, f"{job}: a {window} h window on a {gap_hours} h schedule"
    export = [job for job in scheduled_jobs() if job == "salesforce-export"]
    assert export and all("BudgetStopped" in by_job[job] for job in export)


def test_every_production_job_file_has_a_schedule():
    """Every job `cxlake init` writes (jobs/aws/) runs on some schedule, so none goes unwatched."""
    import tomllib

    names = {tomllib.loads(f.read_text(encoding="utf-8"))["job"]["name"] for f in (REPO / "jobs" / "aws").glob("*.toml")}
    assert len(names) == 7, names
    assert names == set(scheduled_jobs()), names ^ set(scheduled_jobs())


def test_alarm_actions_point_at_the_topic():
    parsed = template(STACK)
    parameters, conditions, resources_ = parsed["Parameters"], parsed["Conditions"], parsed["Resources"]
    for name, props in alarms().items():
        assert props["AlarmActions"] == NOTIFY, name
    # Both ways to be notified are optional parameters.
    assert parameters["AlarmTopicArn"]["Default"] == "" and parameters["AlarmEmail"]["Default"] == ""
    assert conditions["HasAlarmTopicArn"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    assert conditions["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    topic = resources_["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic" and topic["Condition"] == "HasAlarmEmail"
    [subscription] = [r for r in resources_.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}


def test_connect_fill_is_optional_and_scoped_to_the_instance():
    """With ConnectInstanceArn set, the task role may read exactly the Connect calls a fill makes,
    on that instance only, and both Connect schedules pass it as [fill] instance_arn; empty, the
    policy does not exist and the empty variable leaves [fill] unset."""
    stack = template(STACK)
    assert stack["Parameters"]["ConnectInstanceArn"]["Default"] == ""
    [(_, policy)] = [(n, r) for n, r in stack["Resources"].items() if r["Type"] == "AWS::IAM::Policy"
                     and r["Properties"]["PolicyName"] == "read-connect-metrics"]
    assert policy["Condition"] == "HasConnectFill"
    assert policy["Properties"]["Roles"] == [{"Ref": "TaskRole"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["connect:GetMetricDataV2", "connect:ListQueues", "connect:ListUsers"]
    assert statement["Resource"] == [{"Ref": "ConnectInstanceArn"}, {"Fn::Sub": "${ConnectInstanceArn}/*"}]
    connect_inputs = [r["Properties"]["Target"]["Input"]["Fn::Sub"] for r in stack["Resources"].values()
                      if r["Type"] == "AWS::Scheduler::Schedule" and "aws/connect-" in str(r["Properties"]["Target"]["Input"])]
    assert len(connect_inputs) == 2
    for text in connect_inputs:
        assert '{"name":"CXLAKE_FILL_INSTANCE_ARN","value":"${ConnectInstanceArn}"}' in text


def test_an_empty_fill_variable_leaves_the_connect_job_without_fill(cx):
    for name in ("aws/connect-queue.toml", "aws/connect-agent.toml"):
        job = str(REPO / "jobs" / name)
        off = cx("validate", job, "--print", env={"CXLAKE_FILL_INSTANCE_ARN": ""})
        assert off.code == 0, off
        assert "fill = (none" in off.stdout
        arn = "arn:aws:connect:eu-west-2:123456789012:instance/0b1d2c3e-aaaa-bbbb-cccc-123456789012"
        on = cx("validate", job, "--print", env={"CXLAKE_FILL_INSTANCE_ARN": arn})
        assert on.code == 0, on
        assert f'fill.instance_arn = "{arn}"' in on.stdout
        assert "fills missing intervals from GetMetricDataV2" in on.stdout
