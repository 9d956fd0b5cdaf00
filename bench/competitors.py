"""The same conversion as cxlake's connect-intervals job, written with pyarrow, DuckDB and polars.

Each converter reads Connect queue reports (one big file, or a folder of many files whose column
order may differ), types them exactly as cxlake does (schemas/connect_metrics.toml: counts int64,
seconds and percentages float64 with '%' stripped, '-' and blank null, timestamps ms UTC), adds
the lineage columns, sorts by queue then interval and writes hive partitions dt=YYYY-MM-DD with
ZSTD(3). Usage: competitors.py TOOL SOURCE OUTDIR
"""

from __future__ import annotations

import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS = [m for m in tomllib.loads((ROOT / "schemas" / "connect_metrics.toml").read_text())["metric"] if "queue" in m["reports"]]
TABLE = "connect_queue_interval"


def report_files(source: pathlib.Path) -> list[pathlib.Path]:
    return sorted(source.glob("*.csv")) if source.is_dir() else [source]


def exported_at(path: pathlib.Path) -> str:
    """The UTC time in a report file name."""
    return path.name[-24:-4].replace("Z", "")


def with_pyarrow(source: pathlib.Path, out: pathlib.Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as csv
    import pyarrow.dataset as ds

    tables = []
    for path in report_files(source):
        raw = csv.read_csv(
            path,
            convert_options=csv.ConvertOptions(
                null_values=["-", ""],
                strings_can_be_null=True,
                column_types={"Queue": pa.string(), "StartInterval": pa.timestamp("ms", "UTC"), "EndInterval": pa.timestamp("ms", "UTC")},
            ),
        )
        names = {n.lstrip("\ufeff"): n for n in raw.column_names}
        n = raw.num_rows
        start = raw[names["StartInterval"]]
        end = raw[names["EndInterval"]]

        columns = {
            "instance": pa.array(["bench"] * n),
            "queue": raw[names["Queue"]].cast(pa.string()),
            "interval_start": start,
            "interval_end": end,
            "interval_start_local": pc.cast(start, pa.timestamp("ms")),
        }
        for m in METRICS:
            col = raw[names[m["header"]]] if m["header"] in names else pa.nulls(n, pa.string())
            if m["unit"] == "count":
                columns[m["column"]] = col.cast(pa.int64())
            elif m["unit"] == "percent":
                columns[m["column"]] = pc.replace_substring(col.cast(pa.string()), "%", "").cast(pa.float64())
            else:
                columns[m["column"]] = col.cast(pa.float64())
        columns["source_key"] = pa.array([str(path)] * n)
        columns["exported_at"] = pa.array([exported_at(path)] * n).cast(pa.timestamp("ms")).cast(pa.timestamp("ms", "UTC"))
        tables.append(pa.table(columns))
    table = pa.concat_tables(tables)
    table = table.append_column("dt", pc.strftime(table["interval_start"], "%Y-%m-%d"))
    table = table.sort_by([("queue", "ascending"), ("interval_start", "ascending")])
    ds.write_dataset(
        table, out / TABLE, format="parquet", partitioning=["dt"], partitioning_flavor="hive",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd", compression_level=3),
        existing_data_behavior="overwrite_or_ignore", max_partitions=100_000,
    )


def with_duckdb(source: pathlib.Path, out: pathlib.Path) -> None:
    import duckdb

    files = [str(p) for p in report_files(source)]
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    con.execute("create temp table raw as select * from read_csv($files, all_varchar = true, union_by_name = true, filename = true, header = true)", {"files": files})
    present = {r[0] for r in con.execute("describe raw").fetchall()}

    def text(header: str) -> str:
        return f"nullif(nullif(\"{header}\", '-'), '')" if header in present else "null"

    select = ["'bench' as instance", "Queue as queue",
              "strptime(StartInterval, '%Y-%m-%dT%H:%M:%S.%gZ')::timestamptz as interval_start",
              "strptime(EndInterval, '%Y-%m-%dT%H:%M:%S.%gZ')::timestamptz as interval_end",
              "strptime(StartInterval, '%Y-%m-%dT%H:%M:%S.%gZ') as interval_start_local"]
    for m in METRICS:
        value = text(m["header"])
        if m["unit"] == "count":
            select.append(f"{value}::bigint as {m['column']}")
        elif m["unit"] == "percent":
            select.append(f"replace({value}, '%', '')::double as {m['column']}")
        else:
            select.append(f"{value}::double as {m['column']}")
    select += ["filename as source_key",
               "strptime(regexp_extract(filename, '(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d)Z\\.csv$', 1), '%Y-%m-%dT%H:%M:%S')::timestamptz as exported_at",
               "strftime(strptime(StartInterval, '%Y-%m-%dT%H:%M:%S.%gZ'), '%Y-%m-%d') as dt"]
    con.execute("set timezone = 'UTC'")
    con.execute(
        f"copy (select {', '.join(select)} from raw order by queue, interval_start) to '{out / TABLE}' "
        "(format parquet, partition_by (dt), compression zstd, compression_level 3, overwrite_or_ignore true)"
    )


def with_polars(source: pathlib.Path, out: pathlib.Path) -> None:
    import polars as pl

    frames = []
    for path in report_files(source):
        raw = pl.read_csv(path, infer_schema=False, null_values=["-", ""])
        raw = raw.rename({c: c.lstrip("\ufeff") for c in raw.columns})
        ts = "%Y-%m-%dT%H:%M:%S%.3fZ"
        exprs = [
            pl.lit("bench").alias("instance"),
            pl.col("Queue").alias("queue"),
            pl.col("StartInterval").str.strptime(pl.Datetime("ms", "UTC"), ts).alias("interval_start"),
            pl.col("EndInterval").str.strptime(pl.Datetime("ms", "UTC"), ts).alias("interval_end"),
            pl.col("StartInterval").str.strptime(pl.Datetime("ms"), ts).alias("interval_start_local"),
        ]
        for m in METRICS:
            col = pl.col(m["header"]) if m["header"] in raw.columns else pl.lit(None, pl.String)
            if m["unit"] == "count":
                exprs.append(col.cast(pl.Int64).alias(m["column"]))
            elif m["unit"] == "percent":
                exprs.append(col.str.replace("%", "", literal=True).cast(pl.Float64).alias(m["column"]))
            else:
                exprs.append(col.cast(pl.Float64).alias(m["column"]))
        exprs += [pl.lit(str(path)).alias("source_key"),
                  pl.lit(exported_at(path)).str.strptime(pl.Datetime("ms", "UTC"), "%Y-%m-%dT%H:%M:%S").alias("exported_at")]
        frames.append(raw.select(exprs))
    df = pl.concat(frames, how="vertical")
    df = df.with_columns(pl.col("interval_start").dt.strftime("%Y-%m-%d").alias("dt")).sort(["queue", "interval_start"])
    df.write_parquet(out / TABLE, partition_by="dt", compression="zstd", compression_level=3)


TOOLS = {"pyarrow": with_pyarrow, "duckdb": with_duckdb, "polars": with_polars}

if __name__ == "__main__":
    tool, source, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    TOOLS[tool](source, out)
