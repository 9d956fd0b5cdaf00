"""Harness for the integration tests: the real `cxlake` binary, temp lakes, and a moto server."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import textwrap

import boto3
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cxlake_bin() -> str:
    path = os.environ.get("CXLAKE_BIN")
    assert path and pathlib.Path(path).exists(), "set CXLAKE_BIN to the built cxlake binary (make test does)"
    return str(pathlib.Path(path).resolve())


class Runner:
    """Runs cxlake in a working directory with a controlled environment."""

    def __init__(self, binary: str, cwd: pathlib.Path, env: dict[str, str]):
        self.binary, self.cwd, self.env = binary, cwd, env

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        full_env = {**self.env, **(env or {})}
        return subprocess.run([self.binary, *args], cwd=self.cwd, env=full_env, capture_output=True, text=True, timeout=300)


def base_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    return {**keep, "CXLAKE_LOG": "warn"}


@pytest.fixture
def run(cxlake_bin, tmp_path) -> Runner:
    return Runner(cxlake_bin, tmp_path, base_env())


def write_job(directory: pathlib.Path, name: str = "job.toml", **sections: dict) -> pathlib.Path:
    """Writes a job file from section dicts (values are TOML-quoted strings)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f'{k} = "{v}"' for k, v in values.items()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def connect_job(directory: pathlib.Path, source: str = "file://reports/", lake: str = "file://lake",
                report: str = "queue", timezone: str = "UTC", name: str = "connect-queue", **extra) -> pathlib.Path:
    sections = {
        "job": {"name": name, "kind": "connect-intervals", "timezone": timezone},
        "source": {"url": source, "report": report, "instance": "demo"},
        "lake": {"url": lake},
    }
    sections.update(extra)
    return write_job(directory, **sections)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto():
    """A moto server (S3, Glue) on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    yield {
        "env": env,
        "s3": session.client("s3", endpoint_url=endpoint),
        "glue": session.client("glue", endpoint_url=endpoint),
    }
    server.stop()


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
