"""Other AWS engines read the demo lake right: Apache Spark through Hive's ParquetHiveSerDe.

Spark with `spark.sql.hive.convertMetastoreParquet=false` reads a Hive table with Hive's own
Parquet SerDe (what Hive, EMR and several Glue set-ups use) instead of Spark's native reader.
The tables are declared with exactly the columns and types cxlake wrote to (moto) Glue, over the
bytes cxlake wrote to (moto) S3; every column of every row is read, and counts and sums must
equal DuckDB's over the same files.

Runs in `make test-engines` (a JVM and a local Hive metastore take a while to start).
"""

from __future__ import annotations

import decimal
import math
import os
import pathlib
import uuid

import duckdb
import pytest

from conftest import REPO, run_cxlake, start_emulator

pytestmark = pytest.mark.engines

DEMO_JOBS = [
    ["jobs/demo/connect-queue.toml", "jobs/demo/connect-agent.toml"],
    ["jobs/demo/rollup-queue.toml", "jobs/demo/rollup-agent.toml"],
]
EXPORT_JOB = "jobs/demo/salesforce-export.toml"
PREFIX = "cxlake"


@pytest.fixture(scope="module")
def demo_lake(aws, tmp_path_factory):
    """`make demo`'s jobs against moto S3 + Glue; the lake copied to a local folder for Spark."""
    work = tmp_path_factory.mktemp("engines")
    bucket = f"cx-engines-{uuid.uuid4().hex[:10]}"
    database = f"engines_{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=bucket)
    env = {
        **aws["env"],
        "CXLAKE_LAKE_URL": f"s3://{bucket}/{PREFIX}/",
        "CXLAKE_CATALOG_DATABASE": database,
    }
    for jobs in DEMO_JOBS:
        result = run_cxlake(["run", *jobs], REPO, env)
        assert result.code == 0, result
    emulator = start_emulator(work)
    try:
        result = run_cxlake(["run", EXPORT_JOB], REPO, {**env, "CXLAKE_SALESFORCE_LOGIN_URL": emulator.url})
        assert result.code == 0, result
    finally:
        emulator.stop()

    lake = work / "lake"
    paginator = aws["s3"].get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{PREFIX}/"):
        for item in page.get("Contents", []):
            relative = item["Key"][len(PREFIX) + 1:]
            if relative.startswith("_etl/"):
                continue
            target = lake / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            aws["s3"].download_file(bucket, item["Key"], str(target))
    tables = []
    for page in aws["glue"].get_paginator("get_tables").paginate(DatabaseName=database):
        tables += page["TableList"]
    return {"work": work, "lake": lake, "bucket": bucket, "database": database, "tables": tables}


@pytest.fixture(scope="module")
def spark(demo_lake):
    """A local Spark with Hive support: an embedded Derby metastore in a temp folder, no network."""
    from pyspark.sql import SparkSession

    work = demo_lake["work"]
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("cxlake-hive-serde")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={work / 'metastore_db'};create=true")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={work}")
        .config("spark.sql.hive.convertMetastoreParquet", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .enableHiveSupport()
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


def local_location(demo_lake, location: str) -> str:
    prefix = f"s3://{demo_lake['bucket']}/{PREFIX}/"
    assert location.startswith(prefix), location
    return (demo_lake["lake"] / location[len(prefix):]).as_uri() + "/"


def hive_ddl(demo_lake, table: dict, name: str | None = None, timestamp_as: str = "timestamp") -> str:
    """CREATE EXTERNAL TABLE from the Glue definition: columns, types, SerDe and formats as stored
    (`timestamp_as` replaces the timestamp type, see the timestamp test)."""
    sd = table["StorageDescriptor"]
    columns = ",\n  ".join(
        f"`{c['Name']}` {timestamp_as if c['Type'] == 'timestamp' else c['Type']}" for c in sd["Columns"])
    partitions = table.get("PartitionKeys") or []
    partitioned = (
        "PARTITIONED BY (" + ", ".join(f"`{c['Name']}` {c['Type']}" for c in partitions) + ")\n"
        if partitions else ""
    )
    return (
        f"CREATE EXTERNAL TABLE `{name or table['Name']}` (\n  {columns}\n)\n{partitioned}"
        f"ROW FORMAT SERDE '{sd['SerdeInfo']['SerializationLibrary']}'\n"
        f"STORED AS INPUTFORMAT '{sd['InputFormat']}' OUTPUTFORMAT '{sd['OutputFormat']}'\n"
        f"LOCATION '{local_location(demo_lake, sd['Location'])}'"
    )


def aggregates(columns: list[dict], dialect: str, timestamps: str = "timestamp") -> list[tuple[str, str]]:
    """(label, SQL expression) per column: a non-null count, plus a sum over its values."""
    out = [("rows", "count(*)")]
    for c in columns:
        name, ty = c["Name"], c["Type"]
        q = f"`{name}`" if dialect == "spark" else f'"{name}"'
        out.append((f"{name}:count", f"count({q})"))
        if ty in ("bigint", "int", "double") or ty.startswith("decimal"):
            out.append((f"{name}:sum", f"sum({q})"))
        elif ty == "string":
            out.append((f"{name}:length", f"sum(length({q}))"))
        elif ty == "timestamp" and timestamps == "skip":
            continue
        elif ty == "timestamp":
            millis = (f"unix_millis({q})" if timestamps == "timestamp" else q) if dialect == "spark" \
                else f"epoch_ms({q})"
            out.append((f"{name}:millis", f"sum({millis})"))
        elif ty == "date":
            days = f"unix_date({q})" if dialect == "spark" else f"datediff('day', DATE '1970-01-01', {q})"
            out.append((f"{name}:days", f"sum({days})"))
        elif ty == "boolean":
            out.append((f"{name}:true", f"sum(CASE WHEN {q} THEN 1 ELSE 0 END)"))
        else:
            raise AssertionError(f"no aggregate for Glue type {ty} ({name})")
    return out


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        return decimal.Decimal(a) == decimal.Decimal(b)
    return a == b


def test_the_demo_lake_has_its_thirteen_tables_in_glue(demo_lake):
    names = sorted(t["Name"] for t in demo_lake["tables"])
    assert names == sorted([
        "connect_queue_interval", "connect_agent_interval",
        "connect_queue_hourly", "connect_queue_daily", "connect_agent_hourly", "connect_agent_daily",
        "sf_account", "sf_account_latest", "sf_cx_interaction__c", "sf_cx_interaction__c_latest",
        "cxlake_runs", "cxlake_reconciliation", "connect_interval_coverage",
    ]), names
    for table in demo_lake["tables"]:
        assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == \
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def compare_with_duckdb(demo_lake, spark, con, table: dict, hive_table: str, timestamps: str) -> int:
    """Counts and sums of every column through the Hive SerDe equal DuckDB's; returns the rows."""
    columns = table["StorageDescriptor"]["Columns"]
    spark_aggs = aggregates(columns, "spark", timestamps)
    hive_row = spark.sql(f"SELECT {', '.join(e for _, e in spark_aggs)} FROM `{hive_table}`").collect()[0]
    files = local_location(demo_lake, table["StorageDescriptor"]["Location"])[len("file://"):]
    pattern = f"{files}*/*.parquet" if table.get("PartitionKeys") else f"{files}*.parquet"
    duck_aggs = aggregates(columns, "duckdb", timestamps)
    duck_row = con.execute(
        f"SELECT {', '.join(e for _, e in duck_aggs)} FROM read_parquet('{pattern}', hive_partitioning = true)"
    ).fetchone()
    assert duck_row[0] > 0, f"{table['Name']}: no rows"
    mismatches = [(label, h, d) for (label, _), h, d in zip(spark_aggs, hive_row, duck_row) if not same(h, d)]
    assert not mismatches, f"{hive_table}: Spark (Hive SerDe) vs DuckDB differ: {mismatches}"
    return duck_row[0]


def create(spark, demo_lake, table: dict, name: str, timestamp_as: str = "timestamp") -> None:
    spark.sql(hive_ddl(demo_lake, table, name, timestamp_as))
    if table.get("PartitionKeys"):
        spark.sql(f"MSCK REPAIR TABLE `{name}`")
    # The Hive SerDe really is the reader (not Spark's native Parquet path).
    plan = spark.sql(f"SELECT * FROM `{name}`")._jdf.queryExecution().executedPlan().toString()
    assert "Scan hive" in plan and "ParquetHiveSerDe" in plan, plan


@pytest.fixture(scope="module")
def hive(demo_lake, spark):
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {demo_lake['database']}")
    spark.sql(f"USE {demo_lake['database']}")
    return spark


def test_every_table_opens_through_parquet_hive_serde_with_the_glue_types(demo_lake, hive):
    """Exactly the Glue DDL. Before the footer fix every table failed here, in Hive's
    HiveStructConverter.init: "Group type [message arrow_schema {…}] does not contain requested
    field: optional double …"."""
    con = duckdb.connect()
    for table in sorted(demo_lake["tables"], key=lambda t: t["Name"]):
        create(hive, demo_lake, table, table["Name"])
        hive_rows = hive.sql(f"SELECT count(*) FROM `{table['Name']}`").collect()[0][0]
        files = local_location(demo_lake, table["StorageDescriptor"]["Location"])[len("file://"):]
        pattern = f"{files}*/*.parquet" if table.get("PartitionKeys") else f"{files}*.parquet"
        duck_rows = con.execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchone()[0]
        assert hive_rows == duck_rows > 0, table["Name"]


def test_every_column_of_every_table_reads_through_the_serde_like_duckdb(demo_lake, hive):
    """Every column, counts and sums equal to DuckDB's. Hive 2.3's SerDe (the one Spark bundles)
    reads Parquet timestamps only from INT96, which current writers no longer produce
    (HIVE-21215 added INT64 timestamps in Hive 4): the lake writes INT64 TIMESTAMP(MILLIS, UTC),
    so here the timestamp columns are declared bigint and compared as epoch milliseconds; every
    other column has its Glue type."""
    con = duckdb.connect()
    checked = []
    for table in sorted(demo_lake["tables"], key=lambda t: t["Name"]):
        name = f"{table['Name']}_millis"
        create(hive, demo_lake, table, name, timestamp_as="bigint")
        rows = compare_with_duckdb(demo_lake, hive, con, table, name, "millis")
        # Every value converts (a count alone could skip the column converters).
        assert len(hive.sql(f"SELECT * FROM `{name}`").collect()) == rows
        checked.append(table["Name"])
    assert len(checked) == 13, checked


def test_decimal_columns_read_back_exactly(demo_lake, hive):
    """Currency and percent are decimal(p,s) in Glue; Spark, pyarrow and DuckDB give the same values."""
    import pyarrow.parquet as pq

    decimals = [
        (t, c) for t in demo_lake["tables"] if not t["Name"].endswith("_latest")
        for c in t["StorageDescriptor"]["Columns"] if c["Type"].startswith("decimal(")
    ]
    names = {(t["Name"], c["Name"]) for t, c in decimals}
    assert ("sf_account", "annual_revenue") in names and ("sf_cx_interaction__c", "cost__c") in names, names
    con = duckdb.connect()
    for table, column in decimals:
        files = local_location(demo_lake, table["StorageDescriptor"]["Location"])[len("file://"):]
        key = "id"
        hive_values = {r[0]: r[1] for r in hive.sql(
            f"SELECT `{key}`, `{column['Name']}` FROM `{table['Name']}_millis`").collect()}
        duck_values = {r[0]: r[1] for r in con.execute(
            f"SELECT {key}, \"{column['Name']}\" FROM read_parquet('{files}*/*.parquet')").fetchall()}
        arrow = pq.ParquetDataset(files).read(columns=[key, column["Name"]]).to_pylist()
        arrow_values = {r[key]: r[column["Name"]] for r in arrow}
        assert hive_values == duck_values == arrow_values, column
        assert any(isinstance(v, decimal.Decimal) and v != v.to_integral_value() for v in hive_values.values()) \
            or column["Type"].endswith(",0)"), (column, list(hive_values.values())[:5])
