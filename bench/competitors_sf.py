"""The Salesforce benchmark's competitors: Bulk API 2.0 result pages (CSV) → one typed ZSTD
Parquet file, as cxlake writes it (same column names and types, empty cell = null, `12.0` in an
integer field = 12, E-notation doubles, `Z` datetimes as UTC milliseconds).

usage: competitors_sf.py <pyarrow|duckdb|polars> <pages-dir> <out-dir>
"""

from __future__ import annotations

import pathlib
import re
import sys

TYPES = {  # lake column -> type; the CSV header is the API name
    "id": "string", "is_deleted": "bool", "name": "string", "status__c": "string", "email__c": "string",
    "phone__c": "string", "region__c": "string", "description__c": "string", "amount__c": "double",
    "quantity__c": "double", "seats__c": "int", "rate__c": "double", "active__c": "bool",
    "start_date__c": "date", "created_date": "timestamp", "system_modstamp": "timestamp",
}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def pages(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("page-*.csv"))


def with_pyarrow(folder: pathlib.Path, out: pathlib.Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    read_types = {"bool": pa.bool_(), "double": pa.float64(), "int": pa.float64(), "date": pa.date32(),
                  "timestamp": pa.timestamp("ms", tz="UTC"), "string": pa.string()}
    first = pages(folder)[0].open(encoding="utf-8").readline()
    headers = [h.strip('"') for h in first.strip().split(",")]
    column_types = {h: read_types[TYPES[snake(h)]] for h in headers}
    schema = None
    writer = None
    for page in pages(folder):
        table = pcsv.read_csv(page, parse_options=pcsv.ParseOptions(newlines_in_values=True),
                              convert_options=pcsv.ConvertOptions(column_types=column_types, strings_can_be_null=True,
                                                                  quoted_strings_can_be_null=True,
                                                                  # only "" is null: never "N/A" or "#N/A"
                                                                  null_values=[""]))
        table = table.rename_columns([snake(h) for h in table.column_names])
        seats = table.column("seats__c").cast(pa.int64())
        table = table.set_column(table.schema.get_field_index("seats__c"), "seats__c", seats)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(out / "part.parquet", schema, compression="zstd", compression_level=3)
        writer.write_table(table.cast(schema))
    writer.close()


def with_duckdb(folder: pathlib.Path, out: pathlib.Path) -> None:
    import duckdb

    con = duckdb.connect()
    first = pages(folder)[0].open(encoding="utf-8").readline()
    headers = [h.strip('"') for h in first.strip().split(",")]
    sql_types = {"bool": "BOOLEAN", "double": "DOUBLE", "int": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMPTZ",
                 "string": "VARCHAR"}
    columns = ", ".join(f"'{h}': '{sql_types[TYPES[snake(h)]]}'" for h in headers)
    select = ", ".join(
        f'CAST("{h}" AS BIGINT) AS {snake(h)}' if TYPES[snake(h)] == "int" else f'"{h}" AS {snake(h)}'
        for h in headers)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""COPY (SELECT {select} FROM read_csv('{folder}/page-*.csv', header = true, quote = '"',
                   escape = '"', columns = {{{columns}}}, nullstr = '', timestampformat = '%Y-%m-%dT%H:%M:%S.%gZ'))
                   TO '{out}/part.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3)""")


def with_polars(folder: pathlib.Path, out: pathlib.Path) -> None:
    import polars as pl

    frames = []
    for page in pages(folder):
        frame = pl.scan_csv(page, infer_schema=False)
        exprs = []
        for h in frame.collect_schema().names():
            name, kind = snake(h), TYPES[snake(h)]
            col = pl.when(pl.col(h) == "").then(None).otherwise(pl.col(h))
            if kind == "bool":
                col = col.str.to_lowercase() == "true"
            elif kind == "double":
                col = col.cast(pl.Float64)
            elif kind == "int":
                col = col.cast(pl.Float64).cast(pl.Int64)
            elif kind == "date":
                col = col.str.to_date("%Y-%m-%d")
            elif kind == "timestamp":
                col = col.str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_unit="ms", time_zone="UTC")
            exprs.append(col.alias(name))
        frames.append(frame.select(exprs))
    pl.concat(frames).sink_parquet(out / "part.parquet", compression="zstd", compression_level=3)


def main() -> None:
    tool, folder, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    {"pyarrow": with_pyarrow, "duckdb": with_duckdb, "polars": with_polars}[tool](folder, out)


if __name__ == "__main__":
    main()
