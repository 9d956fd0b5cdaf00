"""The same conversion as cxlake's connect-intervals job, in each tool's strongest idiomatic code.

Each converter reads Connect queue reports (SOURCE is a folder: one big file, or many files whose
column order differs and which may start with a UTF-8 BOM), types them exactly as cxlake does
(schemas/connect_metrics.toml: counts int64, seconds and percentages float64 with '%' stripped,
'-' and blank null, timestamps ms UTC), adds the lineage columns, sorts by queue then interval and
writes hive partitions dt=YYYY-MM-DD with ZSTD(3). One query per tool over the whole folder, no
per-file loop in Python: the tools' own multi-file readers match columns by header name.

Usage: competitors.py TOOL SOURCE OUTDIR [VARIANT]   (VARIANT: an alternative measured once, see
VARIANTS; the default is the fastest correct one)
"""

from __future__ import annotations

import os
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS = [m for m in tomllib.loads((ROOT / "schemas" / "connect_metrics.toml").read_text())["metric"] if "queue" in m["reports"]]
TABLE = "connect_queue_interval"
INSTANCE = "bench"
# The UTC time in a report file name (`BenchQueue-2023-01-01T00:30:00Z.csv`) is its export time.
EXPORTED_AT = r"(?P<t>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z\.csv$"


def with_polars(source: pathlib.Path, out: pathlib.Path, variant: str = "scan") -> None:
    """One lazy query: scan_csv over the glob → one select → sort → partitioned Parquet sink.

    The year's files do not share a column order, which a plain glob scan refuses ("schema names
    differ"). `missing_columns="insert", extra_columns="ignore"` with the full `schema` makes
    polars match every file's columns by header name (the BOM is skipped), so the whole folder
    stays one scan. The alternatives, measured on the 17,520-file year (2 cores shared with
    builds, load 5-8; `run.py --alternatives`): this scan 19.9 s; `variant="collect"` (collect,
    then DataFrame.write_parquet(partition_by=)) 27.5 s; `variant="files"` (read_csv per file on
    a thread pool, then concat) 52.6 s; `variant="groups"` (one scan per distinct header, 5,258
    of them, then one vertical concat) deadlocks ("POLARS_MAX_BLOCKING_THREAD_COUNT reached
    (512)", no progress in 10 min) and takes 33.7 s and 3.4 GB with that limit raised to 8192.
    """
    if variant == "groups":  # see above: read when polars starts its blocking thread pool
        os.environ.setdefault("POLARS_MAX_BLOCKING_THREAD_COUNT", "8192")
    import polars as pl

    utc = pl.Datetime("ms", "UTC")
    read_as = {"count": pl.Int64, "seconds": pl.Float64, "percent": pl.String}
    schema = {"Queue": pl.String, "StartInterval": utc, "EndInterval": utc}
    schema |= {m["header"]: read_as[m["unit"]] for m in METRICS}
    options = dict(null_values=["-", ""], missing_columns="insert", extra_columns="ignore")

    exprs = [
        pl.lit(INSTANCE).alias("instance"),
        pl.col("Queue").alias("queue"),
        pl.col("StartInterval").alias("interval_start"),
        pl.col("EndInterval").alias("interval_end"),
        pl.col("StartInterval").dt.replace_time_zone(None).alias("interval_start_local"),
    ]
    for m in METRICS:
        col = pl.col(m["header"])
        if m["unit"] == "percent":
            col = col.str.strip_suffix("%").cast(pl.Float64)
        exprs.append(col.alias(m["column"]))
    exprs += [
        pl.col("source_key"),
        pl.col("source_key").str.extract(EXPORTED_AT).str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="ms", time_zone="UTC").alias("exported_at"),
        pl.col("StartInterval").dt.date().alias("dt"),
    ]

    files = sorted(source.glob("*.csv"))
    if variant == "groups":
        by_header: dict[bytes, list[str]] = {}
        for path in files:
            with path.open("rb") as f:
                by_header.setdefault(f.readline().removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n"), []).append(str(path))
        names = list(schema)
        lf = pl.concat([pl.scan_csv(group, schema_overrides=schema, include_file_paths="source_key", null_values=["-", ""]).select(*names, "source_key")
                        for group in by_header.values()], how="vertical")
    elif variant == "files":
        from concurrent.futures import ThreadPoolExecutor

        def read(path: pathlib.Path) -> pl.DataFrame:
            return pl.read_csv(path, schema_overrides=schema, null_values=["-", ""]).select(list(schema)).with_columns(source_key=pl.lit(str(path)))

        with ThreadPoolExecutor() as pool:
            lf = pl.concat(list(pool.map(read, files)), how="vertical", rechunk=False).lazy()
    else:
        lf = pl.scan_csv(f"{source}/*.csv", schema=schema, include_file_paths="source_key", **options)

    # dt first gives every partition the same order as sort(["queue", "interval_start"]) and the
    # sink contiguous partitions: measured 12% faster on the big file (`variant="queue_first"`)
    query = lf.select(exprs).sort(["queue", "interval_start"] if variant == "queue_first" else ["dt", "queue", "interval_start"])
    if variant == "collect":
        query.collect().write_parquet(out / TABLE, partition_by="dt", compression="zstd", compression_level=3)
    else:
        query.sink_parquet(pl.PartitionBy(out / TABLE, key="dt", include_key=False), compression="zstd", compression_level=3, mkdir=True)


def with_duckdb(source: pathlib.Path, out: pathlib.Path, variant: str = "") -> None:
    """One `read_csv` over the glob, one COPY.

    The files' columns are bound by header name in both ways measured. By default, without
    union_by_name: DuckDB binds every file to the first file's header by name (a file with another
    column set is an error that suggests union_by_name, never a silent misread; the year's files
    all have the same columns). Its `types` are then ignored for a multi-file glob (DuckDB 2.0.1:
    the columns come out VARCHAR or sniffed per file, which the equivalence check caught), so it
    reads all_varchar and casts in the SELECT. `variant="union_by_name"` (typed read with
    union_by_name = true) gives the same output but sniffs every file's schema first: 542 s
    against 109 s on the year, and 24.6 s against 19.3 s on the big file (2 cores shared with
    builds, load 4-8).

    The sort is COPY's ORDER_BY option: an ORDER BY in the query is not kept by PARTITION_BY
    (rows of a partition arrive from several threads interleaved; duckdb/duckdb#14349)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    by_name = variant == "union_by_name"
    read_as = {"count": "BIGINT", "seconds": "DOUBLE", "percent": "VARCHAR", "time": "TIMESTAMPTZ"}

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def typed(header: str, unit: str) -> str:
        if unit == "percent":
            return f"rtrim({q(header)}, '%')::DOUBLE"
        return q(header) if by_name else f"{q(header)}::{read_as[unit]}"

    select = [f"'{INSTANCE}' AS instance", "Queue AS queue", f"{typed('StartInterval', 'time')} AS interval_start",
              f"{typed('EndInterval', 'time')} AS interval_end", f"{typed('StartInterval', 'time')}::TIMESTAMP AS interval_start_local"]
    select += [f"{typed(m['header'], m['unit'])} AS {m['column']}" for m in METRICS]
    select += ["filename AS source_key",
               f"strptime(regexp_extract(filename, '{EXPORTED_AT}', 1), '%Y-%m-%dT%H:%M:%S')::TIMESTAMPTZ AS exported_at",
               f"{typed('StartInterval', 'time')}::DATE AS dt"]
    types = {"Queue": "VARCHAR", "StartInterval": "TIMESTAMPTZ", "EndInterval": "TIMESTAMPTZ"} | {m["header"]: read_as[m["unit"]] for m in METRICS}
    reading = "union_by_name = true, types = $types" if by_name else "all_varchar = true"
    con.execute(
        f"""COPY (SELECT {', '.join(select)}
                  FROM read_csv($glob, header = true, filename = true, nullstr = ['-', ''], {reading}))
            TO '{out / TABLE}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3, PARTITION_BY (dt),
                                ORDER_BY (queue, interval_start), OVERWRITE_OR_IGNORE)""",
        {"glob": f"{source}/*.csv", **({"types": types} if by_name else {})},
    )


def with_pyarrow(source: pathlib.Path, out: pathlib.Path, variant: str = "") -> None:
    """`pyarrow.dataset` over the folder (the dataset schema matches each file's columns by name,
    the BOM is skipped), the typed columns projected in the scan, one sort, `ds.write_dataset`
    partitioned by dt. `variant="files"` (`pyarrow.csv.read_csv` per file on a thread pool, then
    the same plan from the concatenated table) was slower: 133 s against 112 s on the year, 56 s
    against 34 s on the big file (both before the dt-first sort; load 5-13)."""
    import pyarrow as pa
    import pyarrow.acero as ac
    import pyarrow.compute as pc
    import pyarrow.csv as csv
    import pyarrow.dataset as ds

    utc = pa.timestamp("ms", "UTC")
    read_as = {"count": pa.int64(), "seconds": pa.float64(), "percent": pa.string()}
    types = {"Queue": pa.string(), "StartInterval": utc, "EndInterval": utc} | {m["header"]: read_as[m["unit"]] for m in METRICS}
    csv_format = ds.CsvFileFormat(convert_options=csv.ConvertOptions(column_types=types, null_values=["-", ""], strings_can_be_null=True))
    dataset = ds.dataset(source, format=csv_format, schema=pa.schema(types))

    start = pc.field("StartInterval")
    columns = {
        "instance": pc.scalar(INSTANCE),
        "queue": pc.field("Queue"),
        "interval_start": start,
        "interval_end": pc.field("EndInterval"),
        "interval_start_local": start.cast(pa.timestamp("ms")),
    }
    for m in METRICS:
        col = pc.field(m["header"])
        columns[m["column"]] = pc.utf8_rtrim(col, characters="%").cast(pa.float64()) if m["unit"] == "percent" else col
    stamp = pc.struct_field(pc.extract_regex(pc.field("__filename"), EXPORTED_AT), [0])
    columns["source_key"] = pc.field("__filename")
    columns["exported_at"] = pc.strptime(stamp, format="%Y-%m-%dT%H:%M:%S", unit="ms").cast(utc)
    columns["dt"] = start.cast(pa.date32())

    if variant == "files":
        from concurrent.futures import ThreadPoolExecutor

        options = csv.ConvertOptions(column_types=types, null_values=["-", ""], strings_can_be_null=True)

        def read(path: pathlib.Path) -> pa.Table:
            table = csv.read_csv(path, convert_options=options, read_options=csv.ReadOptions(use_threads=False)).select(list(types))
            return table.append_column("__filename", pa.array([str(path)] * table.num_rows))

        with ThreadPoolExecutor() as pool:
            source_node = ac.Declaration("table_source", ac.TableSourceNodeOptions(pa.concat_tables(pool.map(read, sorted(source.glob("*.csv"))))))
    else:
        source_node = ac.Declaration("scan", ac.ScanNodeOptions(dataset))
    # An Acero plan rather than dataset.to_table(columns=…): only the scan node offers __filename.
    plan = ac.Declaration.from_sequence([
        source_node,
        ac.Declaration("project", ac.ProjectNodeOptions(list(columns.values()), list(columns))),
        # dt first: the same order within every partition, and write_dataset then gets each
        # partition's rows contiguous (5 s instead of 26 s for the big file's 105 partitions)
        ac.Declaration("order_by", ac.OrderByNodeOptions([("dt", "ascending"), ("queue", "ascending"), ("interval_start", "ascending")])),
    ])
    table = plan.to_table()
    ds.write_dataset(
        table, out / TABLE, format="parquet", partitioning=ds.partitioning(pa.schema([("dt", pa.date32())]), flavor="hive"),
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd", compression_level=3),
        existing_data_behavior="overwrite_or_ignore", max_partitions=100_000, preserve_order=True,
    )


TOOLS = {"pyarrow": with_pyarrow, "duckdb": with_duckdb, "polars": with_polars}
# The other approaches measured for each tool (`run.py --alternatives`); each tool's default
# above is the fastest of its correct ones.
VARIANTS = {"polars": ["queue_first", "collect", "files", "groups"], "duckdb": ["union_by_name"], "pyarrow": ["files"]}

if __name__ == "__main__":
    tool, source, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    TOOLS[tool](source, out, *sys.argv[4:5])
