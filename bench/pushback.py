"""Push-back benchmark: a month of queue intervals (20 queues, ~29k records) upserted into the
emulator by cxlake (Bulk API 2.0 ingest), against the CTI Lambdas' pattern of one API call per
record (measured on a sample of records, one sObject Collections call each, over one keep-alive
connection — cheaper per call than the Lambdas' REST PATCH, so the comparison favours it).

usage: pushback.py --cxlake BIN --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import duckdb
import requests

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", type=pathlib.Path, required=True)
    args = parser.parse_args()
    work = args.work.resolve()
    reports = work / "pushback-reports"
    if not reports.exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "sample", reports, "--days", "30", "--queues", "20",
                        "--agents", "1"], check=True)
    lake = work / "out" / "pushback" / "lake"
    subprocess.run(["rm", "-rf", str(lake)], check=True)
    env = {**os.environ, "CXLAKE_SOURCE_URL": f"file://{reports}/Queue/", "CXLAKE_LAKE_URL": f"file://{lake}",
           "CXLAKE_LOG": "warn"}
    subprocess.run([args.cxlake, "run", str(HERE / "jobs" / "connect-bench.toml")], env=env, check=True,
                   capture_output=True)
    emulator = subprocess.Popen([args.cxlake, "emulator", "--port", "0", "--no-seed"], stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        started = time.perf_counter()
        result = subprocess.run([args.cxlake, "run", str(HERE / "jobs" / "pushback-bench.toml")],
                                env={**env, "CXLAKE_SALESFORCE_LOGIN_URL": url}, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"push-back failed:\n{result.stdout}\n{result.stderr}")
        records = int(re.search(r"(\d+) records from", result.stdout).group(1))
        api_calls = int(re.search(r"(\d+) API", result.stdout).group(1))
        stored = len(requests.get(f"{url}/__emulator/objects/amazonconnect__AC_HistoricalQueueMetrics__c/records").json())
        assert stored == records, (stored, records)

        # One call per record, as the CTI Lambdas do.
        token = requests.post(f"{url}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": "cxlake-demo-client",
            "client_secret": "cxlake-demo-secret"}).json()["access_token"]
        rows = duckdb.sql(f"select queue, interval_start, contacts_handled, average_handle_time_seconds "
                          f"from read_parquet('{lake}/connect_queue_interval/*/*.parquet') limit {SAMPLE}").fetchall()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        target = f"{url}/services/data/v66.0/composite/sobjects/amazonconnect__AC_HistoricalQueueMetrics__c/amazonconnect__AC_Record_Id__c"
        started = time.perf_counter()
        for queue, start, handled, aht in rows:
            body = {"allOrNone": False, "records": [{
                "attributes": {"type": "amazonconnect__AC_HistoricalQueueMetrics__c"},
                "amazonconnect__AC_Record_Id__c": f"lambda|{queue}|{start.isoformat()}",
                "amazonconnect__AC_Object_Name__c": queue,
                "amazonconnect__Contacts_handled__c": handled,
                "amazonconnect__Average_handle_time__c": aht}]}
            response = session.patch(target, json=body)
            assert response.status_code == 200, response.text
        per_row_seconds = (time.perf_counter() - started) / len(rows)
    finally:
        emulator.terminate()
        emulator.wait()
    figures = {
        "records": records, "cxlake_seconds": seconds, "cxlake_records_per_s": records / seconds,
        "cxlake_api_calls": api_calls, "one_call_per_row_records_per_s": 1 / per_row_seconds,
        "one_call_per_row_api_calls": records, "speedup": (1 / per_row_seconds and (records / seconds) * per_row_seconds),
    }
    print(f"\npushback: {records:,} records: cxlake {seconds:.2f} s ({records / seconds:,.0f} records/s, "
          f"{api_calls} API calls) vs one call per record {1 / per_row_seconds:,.0f} records/s "
          f"({records:,} calls) -> {figures['speedup']:.1f}x")
    (work / "pushback-results.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
