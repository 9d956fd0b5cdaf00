"""The Salesforce CLI (`sf`, npm @salesforce/cli, unmodified, on the Node 22 it needs) against the
emulator over HTTPS: log in with an access token, REST query, Bulk 2.0 export, Bulk 2.0 upsert
and its results. Run by `make test-clients` (the CLI is a slow install, so not in `make test`)."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "integration"))
from conftest import DEMO_CREDENTIALS, start_emulator  # noqa: E402  (the integration suite's harness)

NODE = HERE / "node_modules" / "node" / "bin" / "node"
SF = HERE / "node_modules" / "@salesforce" / "cli" / "bin" / "run.js"


@pytest.fixture
def org(tmp_path):
    if not (NODE.is_file() and SF.is_file()):
        pytest.fail("the Salesforce CLI is not installed: `make test-clients` runs `npm ci` in tests/clients/sf",
                    pytrace=False)
    emu = start_emulator(tmp_path, tls=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{NODE.parent}:{os.environ.get('PATH', '')}", "HOME": str(home),
           "NODE_EXTRA_CA_CERTS": str(emu.cert), "SF_DISABLE_TELEMETRY": "true",
           "SF_AUTOUPDATE_DISABLE": "true", "SF_SKIP_NEW_VERSION_CHECK": "true",
           "SF_USE_GENERIC_UNIX_KEYCHAIN": "true", "SF_CONTENT_TYPE": "JSON"}
    token = requests.post(f"{emu.url}/services/oauth2/token", verify=str(emu.cert), timeout=30, data={
        "grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
        "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
        "password": DEMO_CREDENTIALS["Password"]}).json()["access_token"]

    def sf(*args: str, extra_env: dict | None = None, status: int = 0) -> dict:
        """Runs `sf … --json`; returns `result` (or the whole answer for a non-zero `status`)."""
        run = subprocess.run([str(NODE), str(SF), *args, "--json"], cwd=tmp_path, env={**env, **(extra_env or {})},
                             capture_output=True, text=True, timeout=300)
        try:
            out = json.loads(run.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"sf {' '.join(args)}: exit {run.returncode}\n{run.stdout}\n{run.stderr}")
        assert out.get("status") == status, f"sf {' '.join(args)}: {json.dumps(out)[:3000]}"
        return out["result"] if status == 0 else out

    login = sf("org", "login", "access-token", "--instance-url", emu.url, "--no-prompt", "--alias", "emu",
               extra_env={"SF_ACCESS_TOKEN": token})
    try:
        yield emu, sf, login, tmp_path
    finally:
        emu.stop()


def test_sf_cli_logs_in_queries_exports_and_upserts(org):
    emu, sf, login, work = org
    assert login["username"] == DEMO_CREDENTIALS["Username"]
    assert login["orgId"] == "00Dcx0000000001AAA"
    live_accounts = sorted(r["Id"] for r in emu.records("Account") if not r["IsDeleted"])
    live_interactions = sorted(r["Id"] for r in emu.records("CX_Interaction__c") if not r["IsDeleted"])

    queried = sf("data", "query", "--query", "SELECT Id, Name, Owner.Name FROM Account", "--target-org", "emu")
    assert queried["totalSize"] == len(live_accounts)
    assert sorted(r["Id"] for r in queried["records"]) == live_accounts

    out = work / "export.csv"
    sf("data", "export", "bulk", "--query", "SELECT Id, Name FROM CX_Interaction__c", "--output-file", str(out),
       "--wait", "5", "--target-org", "emu")
    with out.open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert sorted(r["Id"] for r in exported) == live_interactions

    upload = work / "upsert.csv"
    upload.write_text("External_Key__c,Name,Hold_Count__c\nSF-1,from sf,4\nEXT-1,renamed by sf,\nSF-2,bad,x\n")
    # One row fails, so the CLI exits 1 and names the job for `sf data bulk results`.
    upserted = sf("data", "upsert", "bulk", "--sobject", "CX_Interaction__c", "--file", str(upload),
                  "--external-id", "External_Key__c", "--wait", "5", "--target-org", "emu", status=1)
    assert upserted["name"] == "FailedRecordDetailsError", upserted
    job_id = upserted["data"]["jobId"]
    results = sf("data", "bulk", "results", "--job-id", job_id, "--target-org", "emu")
    assert results["processedRecords"] == 3 and results["successfulRecords"] == 2, results
    assert results["failedRecords"] == 1, results
    records = {r["External_Key__c"]: r for r in emu.records("CX_Interaction__c")}
    assert records["SF-1"]["Name"] == "from sf" and records["SF-1"]["Hold_Count__c"] == 4
    assert records["EXT-1"]["Name"] == "renamed by sf"
    assert "SF-2" not in records
