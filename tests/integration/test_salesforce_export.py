"""salesforce-export against the built-in emulator: REST vs Bulk, types read back by DuckDB,
incremental runs with changes and deletes, failure handling, moto S3 + Glue + Secrets Manager."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pathlib
import time
import uuid

import duckdb
import pyarrow.parquet as pq
import pytest
import requests

from conftest import DEMO_CREDENTIALS, REGION, export_job, export_watermarks, is_run_record, start_emulator

CUSTOM = "CX_Interaction__c"
CUSTOM_TABLE = "sf_cx_interaction__c"

# Describe type -> the DuckDB type of its lake column.
DUCKDB_TYPES = {
    "boolean": "BOOLEAN",
    "int": "BIGINT",
    "long": "BIGINT",
    "double": "DOUBLE",
    "currency": "DOUBLE",
    "percent": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP WITH TIME ZONE",
    "time": "VARCHAR",
}
SKIPPED_TYPES = {"base64", "address", "location"}


def snake(path: str) -> str:
    """The lake column name of a field path (same rule as cxlake's)."""
    out = []
    for part in path.split("."):
        chars = []
        for i, c in enumerate(part):
            if c.isupper():
                prev = part[i - 1] if i else None
                nxt = part[i + 1] if i + 1 < len(part) else None
                if prev and prev != "_" and (prev.islower() or prev.isdigit() or (prev.isupper() and nxt and nxt.islower())):
                    chars.append("_")
            chars.append(c.lower())
        out.append("".join(chars))
    return "__".join(out)


def token(emulator) -> tuple[str, str]:
    """(access token, instance URL) by the password flow, straight over HTTP."""
    form = {
        "grant_type": "password",
        "client_id": DEMO_CREDENTIALS["ConsumerKey"],
        "client_secret": DEMO_CREDENTIALS["ConsumerSecret"],
        "username": DEMO_CREDENTIALS["Username"],
        "password": DEMO_CREDENTIALS["Password"],
    }
    response = requests.post(f"{emulator.url}/services/oauth2/token", data=form, verify=emulator.verify, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["access_token"], body["instance_url"]


def describe(emulator, sobject: str) -> dict:
    access, instance = token(emulator)
    response = requests.get(f"{instance}/services/data/v66.0/sobjects/{sobject}/describe",
                            headers={"Authorization": f"Bearer {access}"}, verify=emulator.verify, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def lake_files(lake: pathlib.Path, table: str) -> dict[str, bytes]:
    root = lake / table
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def read_table(lake: pathlib.Path, table: str):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = f"{lake}/{table}/**/*.parquet"
    return con, f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"


# --------------------------------------------------------------------------------------------


def test_rest_and_bulk_paths_write_byte_identical_parquet(emulator, cx, tmp_path):
    for api in ("rest", "bulk"):
        job = export_job(tmp_path, emulator.url, objects=("Account", CUSTOM), mode="snapshot", api=api,
                         lake=f"file://lake-{api}", file=f"{api}.toml")
        result = cx("run", job)
        assert result.code == 0, result
        assert f"via {api}" in result.stdout, result
    for table in ("sf_account", "sf_account_latest", CUSTOM_TABLE, CUSTOM_TABLE + "_latest"):
        rest = lake_files(tmp_path / "lake-rest", table)
        bulk = lake_files(tmp_path / "lake-bulk", table)
        assert rest, f"no files for {table}"
        assert rest.keys() == bulk.keys()
        for key in rest:
            assert rest[key] == bulk[key], f"{key} differs between the REST and Bulk exports"


def test_duckdb_reads_every_field_type_with_the_emulators_values(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=(CUSTOM,), api="bulk")
    result = cx("run", job)
    assert result.code == 0, result
    fields = describe(emulator, CUSTOM)["fields"]
    con, source = read_table(tmp_path / "lake", CUSTOM_TABLE + "_latest")
    columns = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    seen_types = set()
    for field in fields:
        name = snake(field["name"])
        if field["type"] in SKIPPED_TYPES:
            assert name not in columns, f"{field['name']} ({field['type']}) should not be exported"
            continue
        seen_types.add(field["type"])
        expected = DUCKDB_TYPES.get(field["type"], "VARCHAR")
        if field["type"] in ("double", "currency", "percent") and field.get("precision"):
            # Exact numbers: decimal(p,s) of describe's precision and scale.
            expected = f"DECIMAL({field['precision']},{field['scale']})"
        assert columns.get(name) == expected, (field, columns.get(name))
    assert {"boolean", "int", "double", "currency", "percent", "date", "datetime", "time"} <= seen_types

    # Values: every live record, every exported field, against the emulator's own store.
    records = {r["Id"]: r for r in emulator.records(CUSTOM) if not r.get("IsDeleted")}
    rows = con.sql(f"SELECT * FROM {source}").to_arrow_table().to_pylist()
    assert len(rows) == len(records)
    checked = 0
    for row in rows:
        record = records[row["id"]]
        for field in fields:
            if field["type"] in SKIPPED_TYPES:
                continue
            want = record.get(field["name"])
            got = row[snake(field["name"])]
            if want is None or want == "":
                assert got is None, (field["name"], row["id"], got)
                continue
            kind = field["type"]
            if kind == "datetime":
                assert got == dt.datetime.fromisoformat(want.replace("Z", "+00:00")), (field["name"], got, want)
            elif kind == "date":
                assert got == dt.date.fromisoformat(want), (field["name"], got, want)
            elif kind in ("int", "long"):
                assert got == int(want), (field["name"], got, want)
            elif kind in ("double", "currency", "percent") and field.get("precision"):
                exact = decimal.Decimal(str(want)).quantize(decimal.Decimal(1).scaleb(-field["scale"]),
                                                            rounding=decimal.ROUND_HALF_UP)
                assert got == exact, (field["name"], got, want)
            elif kind in ("double", "currency", "percent"):
                assert got == float(want), (field["name"], got, want)
            elif kind == "boolean":
                assert got is bool(want), (field["name"], got, want)
            elif kind == "time":
                assert got == want.rstrip("Z"), (field["name"], got, want)
            else:
                assert got == str(want).replace("\0", ""), (field["name"], got, want)
            checked += 1
    assert checked > len(rows) * 5


def test_incremental_run_picks_up_only_changed_and_deleted_rows(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="rest")
    first = cx("run", job)
    assert first.code == 0, first
    lake = tmp_path / "lake"
    live = [r for r in emulator.records("Account") if not r.get("IsDeleted")]
    con, latest = read_table(lake, "sf_account_latest")
    assert con.execute(f"SELECT count(*) FROM {latest}").fetchone()[0] == len(live)

    changed, deleted = live[0]["Id"], live[1]["Id"]
    emulator.admin("POST", "objects/Account/records", [{"Id": changed, "Name": "Renamed Ltd"}])
    emulator.admin("DELETE", f"objects/Account/records/{deleted}")
    # A run reads changes up to the whole second it starts in; let that second pass.
    time.sleep(1.1)
    second = cx("run", job)
    assert second.code == 0, second
    assert "sf_account 2 rows (1 deleted)" in second.stdout, second

    history = sorted((lake / "sf_account").rglob("*.parquet"))
    assert len(history) == 2, history
    newest = [p for p in history if "part-initial" not in p.name]
    ids = pq.read_table(newest[0]).column("id").to_pylist()
    assert sorted(ids) == sorted([changed, deleted])

    con, latest = read_table(lake, "sf_account_latest")
    assert con.execute(f"SELECT count(*) FROM {latest}").fetchone()[0] == len(live) - 1
    assert con.execute(f"SELECT count(*) FROM {latest} WHERE id = '{deleted}'").fetchone()[0] == 0
    assert con.execute(f"SELECT name FROM {latest} WHERE id = '{changed}'").fetchone()[0] == "Renamed Ltd"
    assert con.execute(f"SELECT count(DISTINCT id) FROM {latest}").fetchone()[0] == len(live) - 1

    # Nothing changed since: a third run exports nothing and leaves the latest table as it was.
    before = (lake / "sf_account_latest" / "part-00000.parquet").read_bytes()
    third = cx("run", job)
    assert third.code == 0, third
    assert "sf_account 0 rows" in third.stdout, third
    assert (lake / "sf_account_latest" / "part-00000.parquet").read_bytes() == before
    assert "Account" in export_watermarks(lake)


def test_expired_token_mid_run_logs_in_again(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account", CUSTOM), api="bulk")
    emulator.faults(expire_tokens_after_calls=3)
    result = cx("run", job)
    assert result.code == 0, result
    assert "1 re-logins" in result.stdout or "2 re-logins" in result.stdout, result
    live = [r for r in emulator.records(CUSTOM) if not r.get("IsDeleted")]
    con, latest = read_table(tmp_path / "lake", CUSTOM_TABLE + "_latest")
    assert con.execute(f"SELECT count(*) FROM {latest}").fetchone()[0] == len(live)


@pytest.mark.parametrize("fault", [{"concurrent_limit_calls": 2}, {"server_error_calls": 2, "status": 503}])
def test_limit_errors_and_server_errors_are_retried(emulator, cx, tmp_path, fault):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="rest")
    emulator.faults(**fault)
    result = cx("run", job)
    assert result.code == 0, result
    assert "(2 retries" in result.stdout, result
    assert (tmp_path / "lake" / "sf_account_latest" / "part-00000.parquet").exists()


def test_a_failed_bulk_job_is_read_again_in_windows_and_lands_whole(emulator, cx, tmp_path):
    """A Bulk query job that ends Failed ("Retried more than 15 times", reference §1) no longer
    fails the object: the read is cut into windows from the first record and each is read again;
    the lake equals a run that met no failure."""
    clean = cx("run", export_job(tmp_path, emulator.url, objects=("Account",), api="bulk",
                                 lake="file://lake-clean", file="clean.toml"))
    assert clean.code == 0, clean
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk")
    emulator.faults(fail_next_query_job="Retried more than 15 times")
    result = cx("run", job)
    assert result.code == 0, result
    assert "Retried more than 15 times" in result.stderr and "cutting it into windows" in result.stderr, result
    latest = tmp_path / "lake" / "sf_account_latest" / "part-00000.parquet"
    assert latest.read_bytes() == (tmp_path / "lake-clean" / "sf_account_latest" / "part-00000.parquet").read_bytes()
    assert "Account" in export_watermarks(tmp_path / "lake")


def test_a_failing_call_fails_the_object_and_writes_nothing(emulator, cx, tmp_path):
    job = export_job(tmp_path, emulator.url, objects=("Account",), api="bulk")
    emulator.faults(server_error_calls=1000, status=400)
    result = cx("run", job)
    assert result.code == 1, result
    assert "SERVER_UNAVAILABLE" in result.stderr, result
    lake = tmp_path / "lake"
    # Nothing of the object; the run's own record (cxlake_runs, cxlake_reconciliation) says it failed.
    assert not [p for p in lake.rglob("*.parquet") if not is_run_record(p.relative_to(lake).as_posix())], \
        list(lake.rglob("*"))
    assert not export_watermarks(lake)
    # The next run (no fault) exports everything.
    emulator.faults(server_error_calls=0)
    again = cx("run", job)
    assert again.code == 0, again
    assert list((lake / "sf_account_latest").glob("*.parquet"))


def test_validate_names_every_salesforce_setting_problem(cx, tmp_path):
    job = export_job(tmp_path, "ftp://nowhere", objects=("Account", "bad name"), auth="kerberos",
                     extra={"api_version": "40.0", "api": "soap"}, fields={"Contact": ["Id"]})
    result = cx("validate", job)
    assert result.code == 2, result
    for key in ("salesforce.login_url", "salesforce.auth", "salesforce.api_version", "salesforce.api",
                "export.objects", "export.fields.Contact"):
        assert key in result.stderr, (key, result)


def test_secrets_never_appear_in_logs_or_errors(cxlake_bin, cx, tmp_path):
    secret_values = {"ConsumerSecret": "cs-" + uuid.uuid4().hex, "Password": "pw-" + uuid.uuid4().hex,
                     "AccessToken": "tok-" + uuid.uuid4().hex}
    emu = start_emulator(tmp_path, "--client-secret", secret_values["ConsumerSecret"],
                         "--password", secret_values["Password"] + secret_values["AccessToken"])
    try:
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({**DEMO_CREDENTIALS, **secret_values}))
        job = export_job(tmp_path, emu.url, objects=("Account",), credentials=f"file:{creds}")
        outputs = []
        good = cx("run", job, env={"CXLAKE_LOG": "debug"})
        assert good.code == 0, good
        outputs.append(good.output)
        outputs.append(cx("validate", "--print", job).output)
        # A refused login: the error names the flow and Salesforce's error, never the values.
        bad_creds = tmp_path / "bad.json"
        bad_creds.write_text(json.dumps({**DEMO_CREDENTIALS, **secret_values, "Password": "wrong-" + secret_values["Password"]}))
        bad = cx("run", export_job(tmp_path, emu.url, credentials=f"file:{bad_creds}", file="bad.toml"),
                 env={"CXLAKE_LOG": "debug"})
        assert bad.code == 1 and "invalid_grant" in bad.stderr, bad
        outputs.append(bad.output)
        everything = "\n".join(outputs) + "".join(p.read_text(errors="replace") for p in (tmp_path / "lake").rglob("*.json"))
        for key, value in secret_values.items():
            assert value not in everything, f"{key} leaked"
    finally:
        emu.stop()


# --------------------------------------------------------------------------------------------
# AWS: credentials from Secrets Manager, lake in S3, tables in Glue (moto)


def test_export_to_s3_with_glue_tables_and_secrets_manager(emulator, cx, tmp_path, aws, buckets, glue_database):
    secrets = __import__("boto3").client("secretsmanager", endpoint_url=aws["endpoint"], region_name=REGION,
                                         aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = secrets.create_secret(Name=f"cxlake/sf-{uuid.uuid4().hex[:8]}",
                                SecretString=json.dumps(DEMO_CREDENTIALS))["ARN"]
    job = export_job(tmp_path, emulator.url, objects=("Account", CUSTOM), credentials=arn,
                     lake=f"s3://{buckets['lake']}/cxlake", catalog=glue_database)
    result = cx("run", job, env=aws["env"])
    assert result.code == 0, result

    glue = aws["glue"]
    history = glue.get_table(DatabaseName=glue_database, Name="sf_account")["Table"]
    assert [k["Name"] for k in history["PartitionKeys"]] == ["snapshot_date"]
    params = history["Parameters"]
    assert params["projection.snapshot_date.type"] == "date"
    assert params["storage.location.template"].endswith("/sf_account/snapshot_date=${snapshot_date}/")
    latest = glue.get_table(DatabaseName=glue_database, Name="sf_account_latest")["Table"]
    assert latest.get("PartitionKeys", []) == []
    types = {c["Name"]: c["Type"] for c in latest["StorageDescriptor"]["Columns"]}
    assert types["id"] == "string" and types["system_modstamp"] == "timestamp" and types["is_deleted"] == "boolean"
    custom = {c["Name"]: c["Type"] for c in glue.get_table(DatabaseName=glue_database, Name=CUSTOM_TABLE + "_latest")
              ["Table"]["StorageDescriptor"]["Columns"]}

    s3 = aws["s3"]
    key = "cxlake/sf_account_latest/part-00000.parquet"
    body = s3.get_object(Bucket=buckets["lake"], Key=key)["Body"].read()
    local = tmp_path / "latest.parquet"
    local.write_bytes(body)
    table = pq.read_table(local)
    live = [r for r in emulator.records("Account") if not r.get("IsDeleted")]
    assert table.num_rows == len(live)
    # Glue's columns are exactly the file's columns, in order, with matching types.
    assert list(types) == table.schema.names
    assert len(custom) > 20


def test_schema_without_a_reachable_org_shows_the_columns_the_lake_remembers(emulator, cx, tmp_path):
    """`cxlake schema` of an export job reads describe when it can, and otherwise the lake's
    table metadata: the same columns as the Parquet file pyarrow reads, with describe's decimals."""
    job = export_job(tmp_path, emulator.url, objects=("Account",), mode="snapshot")
    assert cx("run", job).code == 0
    revenue = next(f for f in describe(emulator, "Account")["fields"] if f["name"] == "AnnualRevenue")
    online = cx("schema", job)
    assert online.code == 0 and "from Salesforce describe" in online.stdout, online
    emulator.stop()

    offline = cx("schema", job)
    assert offline.code == 0, offline
    assert "showing the columns the lake remembers" in offline.stderr, offline
    assert "table sf_account (from the lake's table metadata" in offline.stdout, offline
    listed = [line.split()[0] for line in offline.stdout.splitlines() if line.startswith("  ")]
    (history,) = (tmp_path / "lake" / "sf_account").rglob("*.parquet")
    stored = [n for n in pq.read_schema(history).names if n != "snapshot_date"]
    assert listed == stored, (listed, stored)
    revenue_line = next(line for line in offline.stdout.splitlines() if line.split()[:1] == ["annual_revenue"])
    assert f"decimal({revenue['precision']},{revenue['scale']})" in revenue_line, revenue_line
