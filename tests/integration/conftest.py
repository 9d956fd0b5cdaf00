"""Harness for the integration tests: the real `cxlake` binary, temp job files, and a moto server.

The binary comes from the environment variable CXLAKE_BIN (`make test` sets it). Nothing is
skipped when it is missing: every test that needs it fails with a message saying so.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import typing
import uuid

import boto3
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# tests/fakes (the Connect API fake and its synthetic contact center) is imported as `fakes`.
sys.path.insert(0, str(REPO / "tests"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engines: reads the lake with other engines (Spark + Hive SerDe); `make test-engines`")


# --------------------------------------------------------------------------------------------
# The binary


class Result(typing.NamedTuple):
    """What one cxlake invocation returned; unpacks as (code, stdout, stderr)."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # shown by assertion messages
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def cxlake_path() -> str:
    path = os.environ.get("CXLAKE_BIN")
    if not path:
        pytest.fail("CXLAKE_BIN is not set: point it at the built cxlake binary (`make test` does)", pytrace=False)
    resolved = pathlib.Path(path).resolve()
    if not resolved.is_file() or not os.access(resolved, os.X_OK):
        pytest.fail(f"CXLAKE_BIN={path} is not an executable file; build cxlake first", pytrace=False)
    return str(resolved)


@pytest.fixture(scope="session")
def cxlake_bin() -> str:
    return cxlake_path()


def base_env() -> dict[str, str]:
    """A clean environment: no CXLAKE_* or AWS_* settings leak in from the developer's shell."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT")}
    return {
        **keep,
        "CXLAKE_LOG": "warn",
        "AWS_EC2_METADATA_DISABLED": "true",
        # no profile/SSO files from the developer's home
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def run_cxlake(args: typing.Sequence[str], cwd: os.PathLike | str, env: dict[str, str] | None = None,
               binary: str | None = None, timeout: float = 300) -> Result:
    """Runs `cxlake <args>` in `cwd` with a clean environment plus `env`; returns (code, stdout, stderr)."""
    completed = subprocess.run(
        [binary or cxlake_path(), *map(str, args)],
        cwd=cwd,
        env={**base_env(), **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def cx(cxlake_bin, tmp_path):
    """`cx("run", "job.toml", env={...})` runs cxlake in this test's temp directory."""

    def call(*args: str, env: dict[str, str] | None = None, cwd: os.PathLike | None = None) -> Result:
        return run_cxlake(args, cwd or tmp_path, env, binary=cxlake_bin)

    return call


# --------------------------------------------------------------------------------------------
# What every run adds to the lake

RUN_TABLES = ("cxlake_runs", "cxlake_reconciliation")


def is_run_record(key: str) -> bool:
    """Whether a lake key (relative to the lake, or a whole S3 key) is one of the records every run
    adds or rewrites: its manifest under `_etl/runs/`, its file of the `cxlake_runs` and
    `cxlake_reconciliation` tables (one new file each per run, named by the run), and the job's
    last-run pointers under `_etl/status/` (which `cxlake status` reads)."""
    key = "/" + str(key).replace("\\", "/")
    return "/_etl/runs/" in key or "/_etl/status/" in key or any(f"/{table}/" in key for table in RUN_TABLES)


# --------------------------------------------------------------------------------------------
# Job files


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def write_job(directory: os.PathLike, name: str = "job.toml", **sections: dict | None) -> pathlib.Path:
    """Writes a job file from one dict per section, e.g. write_job(d, job={...}, source={...})."""
    lines: list[str] = []
    for section, values in sections.items():
        if values is None:
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path = pathlib.Path(directory) / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def connect_job(directory: os.PathLike, *, source: str = "file://reports/", lake: str = "file://lake",
                report: str = "queue", timezone: str = "UTC", name: str = "connect-queue",
                instance: str = "demo", catalog: str | None = None, file: str = "job.toml") -> pathlib.Path:
    """A connect-intervals job file (relative file:// URLs resolve from the run's working directory)."""
    return write_job(
        directory,
        file,
        job={"name": name, "kind": "connect-intervals", "timezone": timezone},
        source={"url": source, "report": report, "instance": instance},
        lake={"url": lake},
        catalog={"database": catalog} if catalog else None,
    )


# --------------------------------------------------------------------------------------------
# moto: S3 and Glue served over HTTP in this process, for the whole session

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws(moto_server):
    """Environment for cxlake and boto3 clients, all pointed at the moto server."""
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {
        "endpoint": moto_server,
        "env": env,
        "s3": session.client("s3", endpoint_url=moto_server),
        "glue": session.client("glue", endpoint_url=moto_server),
    }


@pytest.fixture
def buckets(aws):
    """Fresh, uniquely named report and lake buckets for one test."""
    suffix = uuid.uuid4().hex[:12]
    names = {"reports": f"cx-reports-{suffix}", "lake": f"cx-lake-{suffix}"}
    for bucket in names.values():
        aws["s3"].create_bucket(Bucket=bucket)
    return names


@pytest.fixture
def glue_database():
    """A database name no other test uses (moto state lives for the whole session)."""
    return f"cc_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------------------------
# The Salesforce emulator (`cxlake emulator`), one fresh org per test


class Emulator:
    """A running `cxlake emulator` subprocess plus helpers for its admin API."""

    def __init__(self, process: subprocess.Popen, url: str, cert: pathlib.Path | None):
        self.process = process
        self.url = url
        self.cert = cert

    @property
    def verify(self):
        return str(self.cert) if self.cert else True

    def admin(self, method: str, path: str, body=None):
        import requests

        response = requests.request(method, f"{self.url}/__emulator/{path.lstrip('/')}", json=body,
                                    verify=self.verify, timeout=30)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def records(self, sobject: str) -> list[dict]:
        return self.admin("GET", f"objects/{sobject}/records")

    def stats(self) -> dict:
        return self.admin("GET", "stats")

    def faults(self, **faults) -> None:
        self.admin("POST", "faults", faults)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_emulator(tmp_path: pathlib.Path, *args: str, tls: bool = False) -> Emulator:
    """Starts `cxlake emulator --port 0` and waits for its 'listening on <url>' line."""
    cert = tmp_path / "emulator-cert.pem" if tls else None
    command = [cxlake_path(), "emulator", "--port", "0", *args]
    if tls:
        command += ["--tls", "--cert-out", str(cert)]
    process = subprocess.Popen(command, cwd=tmp_path, env=base_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise AssertionError(f"emulator did not start: {line!r} {process.stderr.read()}")
    url = line.strip().rsplit(" ", 1)[-1]
    return Emulator(process, url, cert)


@pytest.fixture
def emulator(cxlake_bin, tmp_path):
    emu = start_emulator(tmp_path)
    try:
        yield emu
    finally:
        emu.stop()


DEMO_CREDENTIALS = {
    "ConsumerKey": "cxlake-demo-client",
    "ConsumerSecret": "cxlake-demo-secret",
    "Username": "integration@cxlake.demo",
    "Password": "cxlake-demo-password",
    "AccessToken": "",
}


def export_job(directory: os.PathLike, emulator_url: str, *, objects=("Account",), mode: str = "incremental",
               api: str = "auto", lake: str = "file://lake", name: str = "sf-export", auth: str = "password",
               credentials: str | None = None, fields: dict | None = None, filters: dict | None = None,
               catalog: str | None = None, file: str = "job.toml", extra: dict | None = None,
               timezone: str = "UTC", export_extra: dict | None = None) -> pathlib.Path:
    """A salesforce-export job file against the emulator, with the demo credentials in a file."""
    directory = pathlib.Path(directory)
    if credentials is None:
        creds = directory / "sf-credentials.json"
        creds.write_text(json.dumps(DEMO_CREDENTIALS))
        credentials = f"file:{creds}"
    path = write_job(
        directory,
        file,
        job={"name": name, "kind": "salesforce-export", "timezone": timezone},
        salesforce={"login_url": emulator_url, "auth": auth, "credentials": credentials, "api": api,
                    **(extra or {})},
        export={"mode": mode, "objects": list(objects), **(export_extra or {})},
        lake={"url": lake},
        catalog={"database": catalog} if catalog else None,
    )
    text = path.read_text()
    for table, values in (("fields", fields), ("filter", filters)):
        if values:
            text += f"[export.{table}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()) + "\n"
    path.write_text(text)
    return path


def export_watermarks(lake: pathlib.Path, job: str = "sf-export") -> dict[str, str]:
    """Each object's watermark from its state object, `_etl/state/<job>/objects/<Object>.json`."""
    folder = lake / "_etl" / "state" / job / "objects"
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        watermark = json.loads(path.read_text()).get("watermark")
        if watermark:
            found[path.stem] = watermark
    return found


# --------------------------------------------------------------------------------------------
# The Connect API fake (GetMetricDataV2, ListQueues, ListUsers) over a synthetic contact center


@pytest.fixture
def connect_api():
    """`connect_api(start, end, seed=21, **ContactCenter options)` builds a ContactCenter over
    [start, end) (aware UTC datetimes on its interval grid) and serves it on a free port; the
    answer has .url, .instance_id, .instance_arn, .center, .requests(operation=None), .throttle(n),
    .faults(**faults) and .client(**botocore Config). Every server stops after the test."""
    from fakes.connect_api import serve

    served = []

    def start(begin, end, seed: int = 21, **options):
        served.append(serve(begin, end, seed, **options))
        return served[-1]

    try:
        yield start
    finally:
        for fake in served:
            fake.stop()


# --------------------------------------------------------------------------------------------
# Figures of the fault tests (test_fault_points.py), printed at the end of the session

FAULT_POINTS_COVERED: dict[str, list[str]] = {}
STOPS: list[tuple[str, str, float]] = []
FULL_DISK: list[str] = []


def pytest_terminal_summary(terminalreporter):
    """The fault points crashed at per job kind (a point a test did not pass at is named too), the
    stops and the full-disk error, so a new commit boundary's point shows up in every run."""
    outcomes: dict[str, dict[str, list[str]]] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when != "call" or "test_fault_points.py" not in report.nodeid or "_killed_" not in report.nodeid:
                continue
            point = report.nodeid.rsplit("[", 1)[-1].rstrip("]")
            outcomes.setdefault(point.split("-")[0], {}).setdefault(outcome, []).append(point)
    if not (outcomes or FAULT_POINTS_COVERED):
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault points (src/faults.rs): killed there, rerun, compared")
    for kind, points in FAULT_POINTS_COVERED.items():
        done = outcomes.get(kind, {})
        passed, failed = done.get("passed", []), done.get("failed", [])
        untested = [p for p in points if p not in passed + failed]
        write(f"{kind}: {len(points)} points, {len(passed)} converged, {len(failed)} failed, "
              f"{len(untested)} not run: {', '.join(points)}")
        for p in failed + untested:
            write(f"  {p}: {'FAILED' if p in failed else 'not run'}")
    for kind, sig, seconds in STOPS:
        write(f"{kind}: {sig} -> exit 143 in {seconds:.2f} s, lock released, run recorded stopped, rerun converged")
    for line in FULL_DISK:
        write(f"full disk: {line}")
