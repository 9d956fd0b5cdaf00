"""`make bench`: cxlake against pyarrow, DuckDB and polars on the same generated data, same run.

Datasets (seeded, generated once into --work): `big`, one queue report of 1M rows; `year`, one
file per half hour of 2023 (17,520 files x 20 queues); `salesforce`, a 1M-record Bulk API 2.0
query result (~230 MB in 20 CSV pages) that cxlake downloads from `cxlake emulator --canned` while
the others read the same pages from disk. Every tool produces the same typed ZSTD Parquet; the
outputs are checked to be equivalent (row counts, column names and types, nulls and sums per
column) before any figure is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

HERE = pathlib.Path(__file__).resolve().parent
TABLE = "connect_queue_interval"
COMPETITORS = ["pyarrow", "duckdb", "polars"]
SF_OBJECT = "Bench_Record__c"
SF_TABLE = "sf_bench_record__c"


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time and peak RSS of one command, taken by bench/measure.py."""
    proc = subprocess.run([sys.executable, str(HERE / "measure.py"), *cmd], env={**os.environ, **(env or {})},
                          capture_output=True, text=True)
    *output, last = proc.stdout.rstrip("\n").split("\n")
    result = json.loads(last)
    if proc.returncode != 0 or result["code"] != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return {**result, "stdout": "\n".join(output)}



def generate(work: pathlib.Path, rows: int) -> dict[str, pathlib.Path]:
    data = {"big": work / "big", "year": work / "year"}
    if not data["big"].exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "big", data["big"] / "BenchQueue-2024-01-01T00:00:00Z.csv", "--rows", str(rows)], check=True)
    if not data["year"].exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "year", data["year"]], check=True)
    return data


def summary(path: pathlib.Path, table_name: str = TABLE) -> dict:
    """What must agree between tools: rows, column names/types, nulls and sums per column."""
    # The partition value is in the path; polars 2 also writes it into each file (as
    # large_string), so read the files' own columns and leave the partition key out.
    table = ds.dataset(path / table_name, format="parquet", partitioning=None).to_table()

    table = table.drop_columns([c for c in ("dt", "snapshot_date") if c in table.column_names])
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    return {
        "rows": table.num_rows,
        # large_string and string are the same column to Athena
        "schema": [(f.name, str(f.type).replace("large_string", "string")) for f in table.schema],

        "nulls": {c: table[c].null_count for c in table.column_names},
        "sums": {c: pc.sum(table[c]).as_py() for c in numeric},
        "files": len(list((path / table_name).rglob("*.parquet"))),
    }


def equivalent(ours: dict, theirs: dict) -> list[str]:
    problems = []
    if ours["rows"] != theirs["rows"]:
        problems.append(f"rows {ours['rows']} != {theirs['rows']}")
    theirs_types = dict(theirs["schema"])
    for name, ty in ours["schema"]:
        if name not in theirs_types:
            problems.append(f"column {name} missing")
        elif ty != theirs_types[name] and not (ty.startswith("timestamp") and theirs_types[name].startswith("timestamp")):
            problems.append(f"column {name}: {ty} != {theirs_types[name]}")
        elif ours["nulls"][name] != theirs["nulls"].get(name):
            problems.append(f"column {name}: {ours['nulls'][name]} nulls != {theirs['nulls'].get(name)}")
    for name, total in ours["sums"].items():
        other = theirs["sums"].get(name)
        if total is not None and other is not None and abs(total - other) > 1e-9 * max(1.0, abs(total)):
            problems.append(f"column {name}: sum {total} != {other}")
    return problems


def salesforce_row(cxlake: str, work: pathlib.Path, rows: int) -> tuple[dict, bool]:
    """The Bulk export benchmark: cxlake against the emulator, the others on the same pages."""
    pages = work / "salesforce"
    if not pages.exists():
        subprocess.run([sys.executable, HERE / "gen_salesforce.py", pages, "--rows", str(rows)], check=True)
    page_dir = pages / f"{SF_OBJECT}.pages"
    size_mb = sum(p.stat().st_size for p in page_dir.glob("*.csv")) / 1e6
    out = work / "out" / "salesforce"
    shutil.rmtree(out, ignore_errors=True)
    emulator = subprocess.Popen([cxlake, "emulator", "--port", "0", "--no-seed", "--canned", str(pages)],
                                stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        env = {"CXLAKE_SALESFORCE_LOGIN_URL": url, "CXLAKE_LAKE_URL": f"file://{out / 'cxlake'}", "CXLAKE_LOG": "warn"}
        ours = measure([cxlake, "run", str(HERE / "jobs" / "salesforce-bench.toml")], env)
    finally:
        emulator.terminate()
        emulator.wait()
    reference = summary(out / "cxlake", SF_TABLE)
    row = {"dataset": "salesforce", "input_mb": size_mb, "rows": reference["rows"], "cxlake": ours}
    failed = False
    for tool in COMPETITORS:
        result = measure([sys.executable, str(HERE / "competitors_sf.py"), tool, str(page_dir), str(out / tool / SF_TABLE)])
        problems = equivalent(reference, summary(out / tool, SF_TABLE))
        if problems:
            failed = True
            print(f"salesforce/{tool}: output differs from cxlake: {problems[:5]}")
        row[tool] = result
    shutil.rmtree(out, ignore_errors=True)
    return row, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("bench-data"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["big", "year", "salesforce"])
    args = parser.parse_args()
    work = args.work.resolve()
    data = generate(work, args.rows) if args.only != "salesforce" else {}
    results = []
    failed = False
    if args.only in (None, "salesforce"):
        row, sf_failed = salesforce_row(args.cxlake, work, args.rows)
        results.append(row)
        failed |= sf_failed
    for name, source in data.items():
        if args.only and name != args.only:
            continue
        size_mb = sum(p.stat().st_size for p in source.glob("*.csv")) / 1e6
        out = work / "out" / name
        shutil.rmtree(out, ignore_errors=True)
        env = {"CXLAKE_SOURCE_URL": f"file://{source}/", "CXLAKE_LAKE_URL": f"file://{out / 'cxlake'}", "CXLAKE_LOG": "warn"}
        ours = measure([args.cxlake, "run", str(HERE / "jobs" / "connect-bench.toml")], env)
        reference = summary(out / "cxlake")
        row = {"dataset": name, "input_mb": size_mb, "rows": reference["rows"], "cxlake": ours}
        for tool in COMPETITORS:
            result = measure([sys.executable, str(HERE / "competitors.py"), tool, str(source), str(out / tool)])
            problems = equivalent(reference, summary(out / tool))
            if problems:
                failed = True
                print(f"{name}/{tool}: output differs from cxlake: {problems[:5]}")
            row[tool] = result
        results.append(row)
        shutil.rmtree(out, ignore_errors=True)

    print(f"\n{'dataset':<8} {'tool':<8} {'seconds':>8} {'rows/s':>12} {'MB/s':>8} {'peak RSS MB':>12} {'cxlake speedup':>15}")
    for row in results:
        for tool in ["cxlake", *COMPETITORS]:
            r = row[tool]
            speedup = r["seconds"] / row["cxlake"]["seconds"]
            print(f"{row['dataset']:<8} {tool:<8} {r['seconds']:>8.2f} {row['rows'] / r['seconds']:>12,.0f} "
                  f"{row['input_mb'] / r['seconds']:>8.1f} {r['max_rss_mb']:>12.0f} {speedup:>14.2f}x")
        fastest = min(COMPETITORS, key=lambda t: row[t]["seconds"])
        print(f"{row['dataset']}: {row['input_mb']:.0f} MB, {row['rows']:,} rows; cxlake vs fastest ({fastest}): "
              f"{row[fastest]['seconds'] / row['cxlake']['seconds']:.2f}x\n")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if failed:
        sys.exit("equivalence check failed")


if __name__ == "__main__":
    main()
