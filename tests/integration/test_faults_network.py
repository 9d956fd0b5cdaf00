"""Network faults for every job kind: many seeded runs through the fault proxy (faultproxy.py) in
front of moto's S3 and Glue and of the Salesforce emulator. Every run either succeeds (its
retries absorb the faults) or exits 1 with a one-line reason naming the call; no run leaves a
partial or uncommitted object under a table prefix; and after one fault-free rerun the lake
(data, state, rejects; run records aside) equals, byte for byte, the lake of a fault-free run;
for push-back the org holds the same records, no duplicates.

`make test` runs SEEDS_PER_KIND seeds per job kind; CXLAKE_FAULT_SEEDS=<n> runs n per kind.
CXLAKE_FAULT_REPORT=<file> writes the figures (outcomes, faults by type) as JSON.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pyarrow.parquet as pq
import pytest

from conftest import DEMO_CREDENTIALS, base_env, connect_job, cxlake_path, export_job, is_run_record, \
    start_emulator, write_job
from faultproxy import FaultProxy
from fixtures import half_hours, queue_report

SEEDS_PER_KIND = {"connect": 60, "rollup": 50, "export": 50, "pushback": 45}
WORKERS = 4
RATE = 0.12  # S3 and Glue: a run makes 40-80 requests
SF_RATE = 0.3  # Salesforce: a run makes 8-20 requests
MAX_FAULTS = 3
SLOW_SECONDS = 1.0

# Client settings for the test: a stalled answer is dropped after 0.6 s, retries back off from
# 10 ms, so a faulty run ends in seconds (the defaults are documented in the README).
NET_ENV = {
    "CXLAKE_NET_MAX_RETRIES": "4",
    "CXLAKE_NET_BACKOFF_MS": "10",
    "CXLAKE_NET_MAX_BACKOFF_MS": "100",
    "CXLAKE_NET_CALL_TIMEOUT_MS": "10000",
    "CXLAKE_NET_READ_TIMEOUT_MS": "600",
    "CXLAKE_NET_CONNECT_TIMEOUT_MS": "1000",
}
RUN_TIMEOUT = 60
OBJECT = "amazonconnect__AC_HistoricalQueueMetrics__c"
# A failure's reason names the call: an S3/lake URL, a Glue operation, a Salesforce resource.
NAMES_A_CALL = re.compile(r"s3://|file://|glue \w+|/services/|https?://")

REPORT: dict[str, dict] = {}


def seeds(kind: str) -> range:
    count = int(os.environ.get("CXLAKE_FAULT_SEEDS", "0")) or SEEDS_PER_KIND[kind]
    return range(1, count + 1)


def run(args, cwd, env, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([cxlake_path(), *map(str, args)], cwd=cwd, env={**base_env(), **env},
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def outcome(result: subprocess.CompletedProcess | None) -> str:
    """succeeded, failed-cleanly, or a description of anything else."""
    if result is None:
        return "other: hung past the run timeout"
    if result.returncode == 0:
        return "succeeded"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    # one line per failed unit (an export fails each object on its own), each naming its call
    if result.returncode == 1 and errors and all(NAMES_A_CALL.search(line) for line in errors):
        return "failed-cleanly: " + errors[0].split(": ", 2)[-1]
    return f"other: exit {result.returncode}: {result.stderr.strip()[-600:]}"


def record(kind: str, outcomes: list[tuple[int, str, FaultProxy]]) -> dict:
    figures = collections.Counter(o.split(":")[0] for _, o, _ in outcomes)
    faults = collections.Counter()
    for _, _, proxy in outcomes:
        for (fault, detail), n in proxy.injected.items():
            faults[f"{fault}:{detail}" if fault == "error" else fault] += n
    reasons = collections.Counter(re.sub(r"\d+", "N", o.split(":", 1)[1].strip())[:160]
                                  for _, o, _ in outcomes if o.startswith("failed-cleanly"))
    REPORT[kind] = {"runs": len(outcomes), **{k: figures.get(k, 0) for k in ("succeeded", "failed-cleanly", "other")},
                    "faults": dict(sorted(faults.items())), "faults_total": sum(faults.values()),
                    "clean_failure_reasons": dict(reasons.most_common())}
    path = os.environ.get("CXLAKE_FAULT_REPORT")
    if path:
        pathlib.Path(path).write_text(json.dumps(REPORT, indent=2))
    print(kind, REPORT[kind])
    return REPORT[kind]


def check_figures(kind: str, outcomes, problems: list[str]) -> None:
    figures = record(kind, outcomes)
    others = [f"seed {seed}: {o}" for seed, o, _ in outcomes if o.startswith("other")]
    assert not others and not problems, "\n".join(others + problems)
    assert figures["faults_total"] >= len(outcomes) // 2, figures  # the proxy did inject
    assert figures["succeeded"] > 0


def each_seed(kind: str, one_run) -> list:
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one_run, seeds(kind)))


# --------------------------------------------------------------------------------------------
# Reading a lake


def s3_objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            found[o["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return found


def local_objects(lake: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()}


def comparable(objects: dict[str, bytes]) -> dict[str, bytes]:
    """Data, state and rejects: run records and locks aside."""
    return {k: v for k, v in objects.items() if not is_run_record(k) and not k.startswith("_etl/locks/")}


def lake_problems(objects: dict[str, bytes], baseline_keys: set[str]) -> list[str]:
    """Every Parquet object is whole, and every object under a table prefix is one a committed
    run writes (no temporary or partial names)."""
    problems = []
    for key, body in objects.items():
        if key.endswith(".parquet"):
            try:
                pq.read_table(io.BytesIO(body))
            except Exception as e:  # pyarrow raises several kinds for a torn file
                problems.append(f"{key}: not a readable Parquet file: {e}")
        if not key.startswith("_etl/") and not is_run_record(key) and key not in baseline_keys:
            problems.append(f"{key}: under a table prefix but not a file a committed run writes")
    return problems


NOW_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def masked(value):
    """A state document with the instants of the run itself masked: a roll-up's watermark is
    its input files' modification time, an export's the org's clock at the run, so two
    fault-free runs a second apart differ there and nowhere else."""
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and NOW_INSTANT.match(value):
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if abs((datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()) < 6 * 3600:
            return "<instant of the run>"
    return value


def differences(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    problems = [f"missing {k}" for k in sorted(set(want) - set(got))]
    problems += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
    for key in sorted(set(got) & set(want)):
        if key.endswith(".json"):
            same = masked(json.loads(got[key])) == masked(json.loads(want[key]))
        else:
            same = got[key] == want[key]
        if not same:
            detail = f": {got[key][:300]!r} vs {want[key][:300]!r}" if key.endswith(".json") else ""
            problems.append(f"differs {key}{detail}")
    return problems


# --------------------------------------------------------------------------------------------
# Inputs: two days of queue reports in a source bucket, and the lake of one fault-free run


@pytest.fixture(scope="module")
def world(tmp_path_factory, aws):
    folder = tmp_path_factory.mktemp("netfaults")
    s3 = aws["s3"]
    suffix = uuid.uuid4().hex[:8]
    names = {"source": f"nf-source-{suffix}", "lake": f"nf-lake-{suffix}"}
    for bucket in names.values():
        s3.create_bucket(Bucket=bucket)
    for start in half_hours("2024-03-10T08:00Z", "2024-03-11T09:30Z"):
        if start[11:13] in ("08", "09"):
            path = queue_report(folder / "reports", start, [("Sales", "10", "120.5", "87.50%", "1"),
                                                            ("Support EU", "3", "60", "-", "0")])
            s3.put_object(Bucket=names["source"], Key=f"reports/{path.name}", Body=path.read_bytes())
    return {"folder": folder, "s3": s3, "aws": aws, **names}


def aws_env(world, endpoint: str) -> dict[str, str]:
    return {**world["aws"]["env"], "AWS_ENDPOINT_URL": endpoint, **NET_ENV}


def connect_run_job(world, directory: pathlib.Path, prefix: str, database: str | None) -> pathlib.Path:
    return connect_job(directory, source=f"s3://{world['source']}/reports/", lake=f"s3://{world['lake']}/{prefix}",
                       catalog=database, file=f"connect-{prefix}.toml")


def rollup_run_job(world, directory: pathlib.Path, prefix: str, database: str) -> pathlib.Path:
    return write_job(directory, f"rollup-{prefix}.toml",
                     job={"name": "rollup-queue", "kind": "interval-rollup", "timezone": "UTC"},
                     rollup={"report": "queue", "grains": ["hourly", "daily"]},
                     lake={"url": f"s3://{world['lake']}/{prefix}"}, catalog={"database": database})


@pytest.fixture(scope="module")
def connect_baseline(world):
    directory = world["folder"]
    env = aws_env(world, world["aws"]["endpoint"])
    result = run(["run", connect_run_job(world, directory, "baseline-connect", f"nf_base_{uuid.uuid4().hex[:6]}")],
                 directory, env)
    assert result is not None and result.returncode == 0, result
    return comparable(s3_objects(world["s3"], world["lake"], "baseline-connect/"))


def test_connect_intervals_from_s3_to_an_s3_lake_with_glue(world, connect_baseline):
    moto = world["aws"]["endpoint"]

    def one(seed: int):
        directory = world["folder"] / f"connect-{seed}"
        directory.mkdir()
        prefix, database = f"connect-{seed}", f"nf_connect_{seed}_{uuid.uuid4().hex[:4]}"
        job = connect_run_job(world, directory, prefix, database)
        with FaultProxy(moto, seed=seed, rate=RATE, max_faults=MAX_FAULTS, slow_seconds=SLOW_SECONDS) as proxy:
            result = run(["run", job], directory, aws_env(world, proxy.url))
        return seed, outcome(result), proxy, converge(world, directory, job, prefix, connect_baseline)

    results = each_seed("connect", one)
    check_figures("connect", [r[:3] for r in results], [p for r in results for p in r[3]])


def converge(world, directory, job, prefix, baseline) -> list[str]:
    """The faulty run's lake is sound; a fault-free rerun makes it equal to the baseline."""
    objects = s3_objects(world["s3"], world["lake"], f"{prefix}/")
    problems = lake_problems(objects, set(baseline))
    rerun = run(["run", job], directory, aws_env(world, world["aws"]["endpoint"]))
    if rerun is None or rerun.returncode != 0:
        return problems + [f"{prefix}: fault-free rerun: {outcome(rerun)}"]
    problems += differences(comparable(s3_objects(world["s3"], world["lake"], f"{prefix}/")), baseline)
    return [f"{prefix}: {p}" for p in problems]


# --------------------------------------------------------------------------------------------
# Roll-up over the connect baseline's interval tables


@pytest.fixture(scope="module")
def rollup_baseline(world, connect_baseline):
    directory = world["folder"]
    copy_lake(world, connect_baseline, "baseline-rollup")
    database = f"nf_base_rollup_{uuid.uuid4().hex[:6]}"
    result = run(["run", rollup_run_job(world, directory, "baseline-rollup", database)], directory,
                 aws_env(world, world["aws"]["endpoint"]))
    assert result is not None and result.returncode == 0, result
    return comparable(s3_objects(world["s3"], world["lake"], "baseline-rollup/"))


def copy_lake(world, objects: dict[str, bytes], prefix: str) -> None:
    for key, body in objects.items():
        world["s3"].put_object(Bucket=world["lake"], Key=f"{prefix}/{key}", Body=body)


def test_rollup_on_an_s3_lake_with_glue(world, connect_baseline, rollup_baseline):
    moto = world["aws"]["endpoint"]

    def one(seed: int):
        directory = world["folder"] / f"rollup-{seed}"
        directory.mkdir()
        prefix = f"rollup-{seed}"
        copy_lake(world, connect_baseline, prefix)
        job = rollup_run_job(world, directory, prefix, f"nf_rollup_{seed}_{uuid.uuid4().hex[:4]}")
        with FaultProxy(moto, seed=1000 + seed, rate=RATE, max_faults=MAX_FAULTS, slow_seconds=SLOW_SECONDS) as proxy:
            result = run(["run", job], directory, aws_env(world, proxy.url))
        return seed, outcome(result), proxy, converge(world, directory, job, prefix, rollup_baseline)

    results = each_seed("rollup", one)
    check_figures("rollup", [r[:3] for r in results], [p for r in results for p in r[3]])


# --------------------------------------------------------------------------------------------
# Salesforce export (Bulk results downloads, REST pages) into a local lake


@pytest.fixture(scope="module")
def sf_emulator(world, cxlake_bin):
    emulator = start_emulator(world["folder"])
    yield emulator
    emulator.stop()


def export_run(world, directory: pathlib.Path, url: str, env: dict):
    job = export_job(directory, url, objects=("Account", "Contact"), api="bulk", mode="incremental",
                     file="export.toml")
    return run(["run", job], directory, {**NET_ENV, **env})


@pytest.fixture(scope="module")
def export_baseline(world, sf_emulator):
    directory = world["folder"] / "export-baseline"
    directory.mkdir()
    result = export_run(world, directory, sf_emulator.url, {})
    assert result is not None and result.returncode == 0, result
    return comparable(local_objects(directory / "lake"))


def test_salesforce_export(world, sf_emulator, export_baseline):
    def one(seed: int):
        directory = world["folder"] / f"export-{seed}"
        directory.mkdir()
        with FaultProxy(sf_emulator.url, service="salesforce", seed=2000 + seed, rate=SF_RATE, max_faults=MAX_FAULTS,
                        slow_seconds=SLOW_SECONDS) as proxy:
            result = export_run(world, directory, proxy.url, {})
        lake = directory / "lake"
        problems = lake_problems(local_objects(lake), set(export_baseline)) if lake.exists() else []
        rerun = export_run(world, directory, sf_emulator.url, {})
        if rerun is None or rerun.returncode != 0:
            problems.append(f"fault-free rerun: {outcome(rerun)}")
        else:
            problems += differences(comparable(local_objects(lake)), export_baseline)
        return seed, outcome(result), proxy, [f"export-{seed}: {p}" for p in problems]

    results = each_seed("export", one)
    check_figures("export", [r[:3] for r in results], [p for r in results for p in r[3]])


# --------------------------------------------------------------------------------------------
# Push-back of the connect lake into a fresh org per run


def threshold(seed: int) -> int:
    """Odd seeds push through sObject Collections, even seeds through Bulk ingest jobs."""
    return 1000 if seed % 2 else 6


def pushback_run(directory: pathlib.Path, url: str, bulk_threshold: int):
    creds = directory / "sf-credentials.json"
    creds.write_text(json.dumps(DEMO_CREDENTIALS))
    job = write_job(directory, "pushback.toml", job={"name": "pushback-queue", "kind": "salesforce-pushback",
                                                     "timezone": "UTC"},
                    salesforce={"login_url": url, "auth": "client-credentials", "credentials": f"file:{creds}"},
                    pushback={"report": "queue", "namespace": "amazonconnect", "key": "lambda",
                              "bulk_threshold": bulk_threshold},
                    lake={"url": "file://lake"})
    return run(["run", job], directory, NET_ENV)


@pytest.fixture(scope="module")
def pushback_lake(world, connect_baseline):
    """The connect baseline's interval table and state as a local lake."""
    lake = world["folder"] / "pushback-lake"
    for key, body in connect_baseline.items():
        path = lake / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return lake


def org_records(emulator) -> list[dict]:
    """The pushed records, without the org's own ids and audit fields."""
    volatile = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "attributes", "CreatedById",
                "LastModifiedById"}
    return sorted(({k: v for k, v in r.items() if k not in volatile} for r in emulator.records(OBJECT)),
                  key=lambda r: json.dumps(r, sort_keys=True))


@pytest.fixture(scope="module")
def pushback_baseline(world, pushback_lake, cxlake_bin):
    """Per push path (Collections, Bulk), the lake and the org after one fault-free run."""
    baselines = {}
    for bulk_threshold in (threshold(1), threshold(2)):
        directory = world["folder"] / f"pushback-baseline-{bulk_threshold}"
        shutil.copytree(pushback_lake, directory / "lake")
        emulator = start_emulator(directory)
        try:
            result = pushback_run(directory, emulator.url, bulk_threshold)
            assert result is not None and result.returncode == 0, result
            records = org_records(emulator)
        finally:
            emulator.stop()
        assert len(records) == 16  # 8 intervals, 2 queues
        baselines[bulk_threshold] = comparable(local_objects(directory / "lake")), records
    return baselines


def test_salesforce_pushback(world, pushback_lake, pushback_baseline):
    def one(seed: int):
        baseline_lake, baseline_records = pushback_baseline[threshold(seed)]
        directory = world["folder"] / f"pushback-{seed}"
        shutil.copytree(pushback_lake, directory / "lake")
        emulator = start_emulator(directory)
        try:
            with FaultProxy(emulator.url, service="salesforce", seed=3000 + seed, rate=SF_RATE,
                            max_faults=MAX_FAULTS, slow_seconds=SLOW_SECONDS) as proxy:
                result = pushback_run(directory, proxy.url, threshold(seed))
            problems = lake_problems(local_objects(directory / "lake"), set(baseline_lake))
            rerun = pushback_run(directory, emulator.url, threshold(seed))
            if rerun is None or rerun.returncode != 0:
                problems.append(f"fault-free rerun: {outcome(rerun)}")
            else:
                problems += differences(comparable(local_objects(directory / "lake")), baseline_lake)
                records = org_records(emulator)
                if records != baseline_records:
                    problems.append(f"org holds {len(records)} records, not the baseline's "
                                    f"{len(baseline_records)} (duplicates or differences)")
        finally:
            emulator.stop()
        return seed, outcome(result), proxy, [f"pushback-{seed}: {p}" for p in problems]

    results = each_seed("pushback", one)
    check_figures("pushback", [r[:3] for r in results], [p for r in results for p in r[3]])
