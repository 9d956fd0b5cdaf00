"""The Salesforce benchmark's competitors, each in its strongest idiomatic code: Bulk API 2.0 result
pages (CSV, every page with its header) → one typed ZSTD(3) Parquet file, as cxlake writes it: the
types come from the object's describe (saved next to the pages, as cxlake reads it from the org):
currency, percent and numbers with a precision are exact decimals (never through a double),
integer fields may be written `12.0`, E-notation numbers, `Z` datetimes as UTC milliseconds, an
empty cell is null (never "N/A" or "#N/A"). One multi-file read per tool over the pages' glob.

usage: competitors_sf.py <pyarrow|duckdb|polars> <pages-dir> <out-dir> [VARIANT]   (see VARIANTS)
"""

from __future__ import annotations

import json
import pathlib
import re
import sys


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def fields(folder: pathlib.Path) -> dict[str, tuple]:
    """API name → kind from describe, as cxlake maps it: ("bool",), ("int",), ("decimal", p, s),
    ("double",), ("date",), ("timestamp",), ("string",)."""
    describe = json.loads((folder.parent / folder.name.replace(".pages", ".describe.json")).read_text())
    kinds = {}
    for f in describe["fields"]:
        t = f["type"]
        if t == "boolean":
            kinds[f["name"]] = ("bool",)
        elif t in ("int", "long"):
            kinds[f["name"]] = ("int",)
        elif t in ("double", "currency", "percent"):
            kinds[f["name"]] = ("decimal", f["precision"], f["scale"]) if f["precision"] > 0 else ("double",)
        elif t in ("date", "datetime"):
            kinds[f["name"]] = ("date",) if t == "date" else ("timestamp",)
        else:
            kinds[f["name"]] = ("string",)
    return kinds


def with_pyarrow(folder: pathlib.Path, out: pathlib.Path, variant: str = "") -> None:
    """Each page read by `pyarrow.dataset` with the typed columns projected in the scan (the next
    pages on a thread pool while one is written), written through one `pq.ParquetWriter`.
    Measured against the alternatives (1M records, best of 5, quiet machine, two runs): this
    1.26-1.45 s; `variant="dataset"` (one dataset over all pages streamed by `ds.write_dataset`)
    1.46-1.50 s; `variant="read_csv"` (`pyarrow.csv.read_csv` per page, in turn) 1.55-1.60 s;
    `variant="pages"` (the dataset read per page, in turn) 1.71-1.73 s."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.dataset as ds

    # Integer fields arrive as `12.0`, which Arrow's CSV int64 parser refuses: read as double
    # (exact up to 2^53, far above an int field's 18 digits) and cast in the projection.
    read_as = {"bool": pa.bool_(), "int": pa.float64(), "double": pa.float64(), "date": pa.date32(),
               "timestamp": pa.timestamp("ms", tz="UTC"), "string": pa.string()}
    kinds = fields(folder)
    types = {h: pa.decimal128(k[1], k[2]) if k[0] == "decimal" else read_as[k[0]] for h, k in kinds.items()}
    csv_format = ds.CsvFileFormat(
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        # only "" is null: never "N/A" or "#N/A"
        convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                            quoted_strings_can_be_null=True))
    pages = sorted(map(str, folder.glob("page-*.csv")))
    columns = {snake(h): ds.field(h).cast(pa.int64()) if k[0] == "int" else ds.field(h) for h, k in kinds.items()}
    if variant != "dataset":  # one page at a time through a ParquetWriter
        import pyarrow.parquet as pq
        from concurrent.futures import ThreadPoolExecutor

        schema = pa.schema([(n, pa.int64() if kinds[h][0] == "int" else types[h]) for h, n in zip(kinds, columns)])

        def read(page: str) -> pa.Table:
            if variant == "read_csv":
                table = pcsv.read_csv(page, parse_options=csv_format.parse_options, convert_options=csv_format.default_fragment_scan_options.convert_options)
                return table.rename_columns([snake(h) for h in table.column_names]).cast(schema)
            return ds.dataset(page, format=csv_format, schema=pa.schema(types)).to_table(columns=columns)

        with pq.ParquetWriter(out / "part.parquet", schema, compression="zstd", compression_level=3) as writer:
            if variant not in ("pages", "read_csv"):  # the next pages are read while one is written
                with ThreadPoolExecutor(2) as pool:
                    for table in pool.map(read, pages):
                        writer.write_table(table)
            else:
                for page in pages:
                    writer.write_table(read(page))
        return
    dataset = ds.dataset(pages, format=csv_format, schema=pa.schema(types))
    ds.write_dataset(dataset.scanner(columns=columns), out, format="parquet", basename_template="part-{i}.parquet",
                     file_options=ds.ParquetFileFormat().make_write_options(compression="zstd", compression_level=3),
                     existing_data_behavior="overwrite_or_ignore", preserve_order=True)


def with_duckdb(folder: pathlib.Path, out: pathlib.Path, variant: str = "") -> None:
    """One `read_csv` over the glob with the describe types, one COPY.

    The records keep the order of the pages, as cxlake writes them (the same bytes for the same
    pages). `variant="unordered"` (SET preserve_insertion_order = false) writes the same rows
    in an order that changes from run to run: 1.04-1.11 s against 1.19-1.21 s (1M records, best
    of 5, quiet machine), and cxlake's 1.17-1.20 s."""
    import duckdb

    sql_types = {"bool": "BOOLEAN", "int": "BIGINT", "double": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMPTZ",
                 "string": "VARCHAR"}
    kinds = fields(folder)
    types = {h: f"DECIMAL({k[1]},{k[2]})" if k[0] == "decimal" else sql_types[k[0]] for h, k in kinds.items()}
    select = ", ".join(f'"{h}" AS {snake(h)}' for h in kinds)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if variant == "unordered":
        con.execute("SET preserve_insertion_order = false")
    con.execute(f"""COPY (SELECT {select} FROM read_csv($glob, header = true, quote = '"', escape = '"', columns = $types,
                                                     nullstr = '', timestampformat = '%Y-%m-%dT%H:%M:%S.%gZ'))
                   TO '{out}/part.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3)""",
                {"glob": f"{folder}/page-*.csv", "types": types})


def with_polars(folder: pathlib.Path, out: pathlib.Path, variant: str = "") -> None:
    """One lazy `scan_csv` over the glob with the describe types, one select, one Parquet sink.
    `variant="collect"` (collect, then write_parquet) takes the same time (1.36-1.39 s against
    1.38-1.51 s, 1M records, best of 5, quiet machine) with twice the memory."""
    import polars as pl

    read_as = {"bool": pl.Boolean, "int": pl.Float64, "double": pl.Float64, "date": pl.Date,
               "timestamp": pl.Datetime("ms", "UTC"), "string": pl.String}
    kinds = fields(folder)
    schema = {h: pl.Decimal(k[1], k[2]) if k[0] == "decimal" else read_as[k[0]] for h, k in kinds.items()}
    # `null_values=[""]`: a quoted empty cell ("") is null too, as in every Bulk page
    lf = pl.scan_csv(f"{folder}/page-*.csv", schema=schema, null_values=[""])
    lf = lf.select([(pl.col(h).cast(pl.Int64) if k[0] == "int" else pl.col(h)).alias(snake(h)) for h, k in kinds.items()])
    if variant == "collect":
        lf.collect().write_parquet(out / "part.parquet", compression="zstd", compression_level=3)
    else:
        lf.sink_parquet(out / "part.parquet", compression="zstd", compression_level=3)


# The other approaches measured (`run.py --alternatives`); each default above is the fastest.
VARIANTS = {"polars": ["collect"], "duckdb": ["unordered"], "pyarrow": ["dataset", "read_csv", "pages"]}


def main() -> None:
    tool, folder, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    {"pyarrow": with_pyarrow, "duckdb": with_duckdb, "polars": with_polars}[tool](folder, out, *sys.argv[4:5])


if __name__ == "__main__":
    main()
