"""connect-intervals from S3 to an S3 lake with a Glue table, against moto (a real AWS API server)."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from conftest import connect_job
from reports import HEADER, file_name, interval, quirky_day, row, write

TABLE = "connect_queue_interval"
PREFIX = "connect/demo/Reports/SFDC/Queue/"


@pytest.fixture
def buckets(moto, request):
    """Fresh report and lake buckets per test."""
    suffix = request.node.name.replace("_", "-")[-30:].strip("-").lower()
    names = {"reports": f"reports-{suffix}", "lake": f"lake-{suffix}"}
    for name in names.values():
        moto["s3"].create_bucket(Bucket=name)
    return names


def upload_folder(s3, bucket, folder):
    for path in sorted(folder.iterdir()):
        s3.put_object(Bucket=bucket, Key=PREFIX + path.name, Body=path.read_bytes())


def objects(s3, bucket):
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed}


def s3_job(tmp_path, buckets, database):
    return connect_job(
        tmp_path,
        source=f"s3://{buckets['reports']}/{PREFIX}",
        lake=f"s3://{buckets['lake']}/cxlake",
        catalog={"database": database},
    )


def test_s3_lake_objects_and_glue_table(run, tmp_path, moto, buckets):
    s3, glue = moto["s3"], moto["glue"]
    quirky_day(tmp_path / "local")
    upload_folder(s3, buckets["reports"], tmp_path / "local")
    s3_job(tmp_path, buckets, "contact_center")
    result = run("run", "job.toml", env=moto["env"])
    assert result.returncode == 0, result.stderr
    # request budget: one GET per report file, one listing page; one PUT per partition + state + table meta
    assert "requests: source 3 GET, 1 LIST pages; lake 2 GET, 3 PUT, 1 LIST pages" in result.stdout, result.stdout

    keys = objects(s3, buckets["lake"])
    data_key = f"cxlake/{TABLE}/dt=2024-03-10/{TABLE}-2024-03-10.parquet"
    assert data_key in keys
    assert "cxlake/_etl/state/connect-queue.json" in keys
    # nothing but partition files under the table prefix (Athena reads everything there)
    assert [k for k in keys if k.startswith(f"cxlake/{TABLE}/")] == [data_key]

    body = s3.get_object(Bucket=buckets["lake"], Key=data_key)["Body"].read()
    parquet_schema = pq.read_schema(io.BytesIO(body))
    assert pq.read_table(io.BytesIO(body)).num_rows == 5

    table = glue.get_table(DatabaseName="contact_center", Name=TABLE)["Table"]
    sd = table["StorageDescriptor"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert sd["Location"] == f"s3://{buckets['lake']}/cxlake/{TABLE}/"
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
    params = table["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.type"] == "date"
    assert params["projection.dt.format"] == "yyyy-MM-dd"
    assert params["projection.dt.interval"] == "1"
    assert params["projection.dt.interval.unit"] == "DAYS"
    assert params["projection.dt.range"] == "2017-01-01,NOW+1DAYS"
    assert params["storage.location.template"] == f"s3://{buckets['lake']}/cxlake/{TABLE}/dt=${{dt}}/"
    assert params["classification"] == "parquet"
    # Glue columns are exactly the Parquet columns, with matching types
    glue_types = {"string": "string", "int64": "bigint", "double": "double", "timestamp[ms, tz=UTC]": "timestamp", "timestamp[ms]": "timestamp"}
    assert [c["Name"] for c in sd["Columns"]] == parquet_schema.names
    for column, field in zip(sd["Columns"], parquet_schema):
        assert column["Type"] == glue_types[str(field.type)], (column, field)


def test_rerun_changes_no_object_and_new_header_extends_glue(run, tmp_path, moto, buckets):
    s3, glue = moto["s3"], moto["glue"]
    reports = tmp_path / "local"
    for hhmm in ("09:00", "09:30"):
        s, e = interval(hhmm)
        write(reports, file_name(e), HEADER + "\n" + row("Sales", s, e))
    upload_folder(s3, buckets["reports"], reports)
    s3_job(tmp_path, buckets, "cc_rerun")
    assert run("run", "job.toml", env=moto["env"]).returncode == 0
    before = objects(s3, buckets["lake"])
    columns_before = [c["Name"] for c in glue.get_table(DatabaseName="cc_rerun", Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]]

    again = run("run", "job.toml", "--from", "2024-03-10", "--to", "2024-03-10", env=moto["env"])
    assert again.returncode == 0, again.stderr
    assert objects(s3, buckets["lake"]) == before
    assert "0 PUT" in again.stdout, again.stdout


    # A later export carries a metric cxlake does not know: a column is appended in Glue.
    s, e = interval("10:00")
    s3.put_object(Bucket=buckets["reports"], Key=PREFIX + file_name(e),
                  Body=f"Queue,StartInterval,Contacts handled,Coffee break time\nSales,{s},5,30\n".encode())
    third = run("run", "job.toml", env=moto["env"])
    assert third.returncode == 0, third.stderr
    columns_after = [c["Name"] for c in glue.get_table(DatabaseName="cc_rerun", Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]]
    assert columns_after == columns_before + ["coffee_break_time_seconds"]
    meta = json.loads(s3.get_object(Bucket=buckets["lake"], Key=f"cxlake/_etl/tables/{TABLE}.json")["Body"].read())
    assert meta["extra_columns"] == ["coffee_break_time_seconds"]


def test_s3_reject_lands_in_etl_rejects(run, tmp_path, moto, buckets):
    s3 = moto["s3"]
    s, e = interval("09:00")
    s3.put_object(Bucket=buckets["reports"], Key=PREFIX + file_name(e), Body=(HEADER + "\n" + row("Sales", s, e) + "\n").encode())
    bad = file_name(interval("09:30")[1])
    s3.put_object(Bucket=buckets["reports"], Key=PREFIX + bad, Body=b"Queue,Contacts handled\nSales,1\n")
    s3_job(tmp_path, buckets, "cc_rejects")
    result = run("run", "job.toml", env=moto["env"])
    assert result.returncode == 3, result.stdout + result.stderr
    keys = objects(s3, buckets["lake"])
    assert f"cxlake/_etl/rejects/connect-queue/{bad}" in keys
    reason = json.loads(s3.get_object(Bucket=buckets["lake"], Key=f"cxlake/_etl/rejects/connect-queue/{bad}.error.json")["Body"].read())
    assert "StartInterval" in reason["reason"]
    assert reason["source_key"] == f"s3://{buckets['reports']}/{PREFIX}{bad}"
    assert f"cxlake/{TABLE}/dt=2024-03-10/{TABLE}-2024-03-10.parquet" in keys
