"""`make bench`: cxlake against polars, DuckDB and pyarrow on the same generated data, same run.

Datasets (seeded, generated once into --work, one folder per size): `big`, one queue report of
--rows rows (1M); `year`, one file per half hour of 2023 (17,520 files x 20 queues; --days keeps
the first days only); `salesforce`, a Bulk API 2.0 query result of --sf-rows records (1M, ~230 MB
in 20 CSV pages) that cxlake downloads from `cxlake emulator --canned` while the others read the
same pages from disk. Each competitor runs its strongest idiomatic code (bench/competitors.py,
bench/competitors_sf.py: one multi-file query per tool); --alternatives also measures the other
approaches tried for each tool. Every tool produces the same typed ZSTD Parquet; every output is
checked against cxlake's (rows, partitions and their rows, column names and types, nulls, sums,
min/max of dates and times, rows sorted within each file) before any figure is printed. The
ratio is the fastest competitor's wall time over cxlake's (above 1: cxlake is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from competitors import VARIANTS  # noqa: E402
from competitors_sf import VARIANTS as SF_VARIANTS  # noqa: E402

TABLE = "connect_queue_interval"
COMPETITORS = ["polars", "duckdb", "pyarrow"]
SF_OBJECT = "Bench_Record__c"
SF_TABLE = "sf_bench_record__c"
SORT_KEY = ["queue", "interval_start"]
ONLY_TOOLS: set[str] = set()  # --tools


def measure(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Wall time, CPU time and peak RSS of one command, taken by bench/measure.py; a command that
    fails or outlives `timeout` gives {"failed": why} (its whole process group is killed)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "measure.py"), *cmd], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"failed": f"did not finish in {timeout:.0f} s"}
    *output, last = stdout.rstrip("\n").split("\n")
    result = json.loads(last)
    if proc.returncode != 0 or result["code"] != 0:
        return {"failed": f"exit code {result['code']}: {(stderr.strip().splitlines() or [''])[-1][:200]}"}
    return {**result, "stdout": "\n".join(output)}


def ours_or_exit(result: dict, what: str) -> dict:
    if "failed" in result:
        sys.exit(f"cxlake ({what}) failed: {result['failed']}")
    return result


def best_of(repeat: int, run) -> dict:
    """The run with the lowest wall time of `repeat` (each run starts from an empty output),
    with the 1-minute load average just before it (the machine may be shared)."""
    def once() -> dict:
        load = os.getloadavg()[0]
        return {**run(), "load": load}

    runs = []
    for _ in range(repeat):
        runs.append(once())
        if "failed" in runs[-1]:
            return runs[-1]
    return min(runs, key=lambda r: r["seconds"])


def generate(work: pathlib.Path, rows: int, days: int) -> dict[str, pathlib.Path]:
    """The Connect datasets, one folder per size (a smaller run never reuses a bigger one's data)."""
    data = {"big": work / f"big-{rows}", "year": work / ("year" if days >= 365 else f"year-{days}d")}
    if not data["big"].exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "big", data["big"] / "BenchQueue-2024-01-01T00:00:00Z.csv", "--rows", str(rows)], check=True)
    if not data["year"].exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "year", data["year"], *(["--days", str(days)] if days < 365 else [])], check=True)
    return data


def summary(path: pathlib.Path, table_name: str = TABLE, sort_key: list[str] | None = None) -> dict:
    """What must agree between tools: rows, rows per partition, column names/types, nulls, sums,
    min/max of temporal columns, and (with `sort_key`) rows sorted by it within every file."""
    root = path / table_name
    files = sorted(root.rglob("*.parquet"))
    partitions: dict[str, int] = {}
    unsorted = []
    for f in files:
        part = "/".join(p for p in f.relative_to(root).parent.parts if "=" in p)
        partitions[part] = partitions.get(part, 0) + pq.ParquetFile(f).metadata.num_rows
        if sort_key:
            keys = pq.read_table(f, columns=sort_key)
            order = pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in sort_key])
            if not pc.all(pc.equal(order, pa.array(range(keys.num_rows), pa.uint64()))).as_py() and keys.num_rows:
                unsorted.append(str(f.relative_to(root)))
    # The partition value is in the path; polars 2 also writes it into each file (as
    # large_string), so read the files' own columns and leave the partition key out.
    table = ds.dataset(root, format="parquet", partitioning=None).to_table()
    table = table.drop_columns([c for c in ("dt", "snapshot_date") if c in table.column_names])
    summed = [f.name for f in table.schema
              if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) or pa.types.is_boolean(f.type)]
    temporal = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
    return {
        "rows": table.num_rows,
        "partitions": partitions,
        # large_string and string are the same column to Athena
        "schema": [(f.name, str(f.type).replace("large_string", "string")) for f in table.schema],
        "nulls": {c: table[c].null_count for c in table.column_names},
        "sums": {c: pc.sum(table[c]).as_py() for c in summed},
        "range": {c: tuple(pc.min_max(table[c]).as_py().values()) for c in temporal},
        "unsorted": unsorted,
    }


def equivalent(ours: dict, theirs: dict) -> list[str]:
    """Every way `theirs` differs from cxlake's output `ours`."""
    problems = []
    if ours["rows"] != theirs["rows"]:
        problems.append(f"rows {ours['rows']} != {theirs['rows']}")
    if ours["partitions"] != theirs["partitions"]:
        differ = sorted(set(ours["partitions"].items()) ^ set(theirs["partitions"].items()))
        problems.append(f"partitions or their rows differ: {differ[:4]}")
    if theirs["unsorted"]:
        problems.append(f"rows not sorted by {SORT_KEY} in {theirs['unsorted'][:3]}")
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
        if isinstance(total, float) and isinstance(other, float):
            if abs(total - other) > 1e-9 * max(1.0, abs(total)):
                problems.append(f"column {name}: sum {total} != {other}")
        elif total != other:  # integers, decimals and counts of true: exact
            problems.append(f"column {name}: sum {total} != {other}")
    for name, span in ours["range"].items():
        if span != theirs["range"].get(name):
            problems.append(f"column {name}: min/max {span} != {theirs['range'].get(name)}")
    return problems


def check(label: str, result: dict, compare, alternative: bool) -> list[str]:
    """Problems of one competitor run: its output's differences from cxlake's, or its failure
    (an alternative approach that fails or hangs is reported in the table, not a problem)."""
    if "failed" in result:
        return [] if alternative else [f"{label}: {result['failed']}"]
    return [f"{label}: {p}" for p in compare()]


def tools(alternatives: bool, variants: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """(label, extra arguments) of every competitor run: the default code of each tool, then
    (with --alternatives) the other approaches tried."""
    runs = [(tool, []) for tool in COMPETITORS]
    if alternatives:
        runs += [(f"{tool}/{v}", [v]) for tool in COMPETITORS for v in variants.get(tool, [])]
    return [(label, extra) for label, extra in runs if not ONLY_TOOLS or label in ONLY_TOOLS]


def connect_row(cxlake: str, name: str, source: pathlib.Path, work: pathlib.Path, args) -> tuple[dict, list[str]]:
    """One Connect dataset: cxlake, then every competitor, each checked against cxlake's output."""
    files = list(source.glob("*.csv"))
    out = work / "out" / name
    lake = out / "cxlake"

    def ours() -> dict:
        shutil.rmtree(lake, ignore_errors=True)
        env = {"CXLAKE_SOURCE_URL": f"file://{source}/", "CXLAKE_LAKE_URL": f"file://{lake}", "CXLAKE_LOG": "warn"}
        return ours_or_exit(measure([cxlake, "run", str(HERE / "jobs" / "connect-bench.toml")], env), name)

    row = {"dataset": name, "files": len(files), "input_mb": sum(p.stat().st_size for p in files) / 1e6,
           "cxlake": best_of(args.repeat, ours)}
    reference = summary(lake, sort_key=SORT_KEY)
    if reference["unsorted"]:
        sys.exit(f"{name}: cxlake's output is not sorted by {SORT_KEY}: {reference['unsorted'][:3]}")
    row |= {"rows": reference["rows"], "partitions": len(reference["partitions"]), "columns": len(reference["schema"])}
    problems = []
    for label, extra in tools(args.alternatives, VARIANTS):
        target = out / label.replace("/", "-")

        def theirs() -> dict:
            shutil.rmtree(target, ignore_errors=True)
            return measure([sys.executable, str(HERE / "competitors.py"), label.split("/")[0], str(source), str(target), *extra],
                           timeout=args.timeout)

        row[label] = best_of(args.repeat, theirs)
        problems += check(f"{name}/{label}", row[label], lambda: equivalent(reference, summary(target, sort_key=SORT_KEY)), bool(extra))
        shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return row, problems


def salesforce_row(cxlake: str, work: pathlib.Path, args) -> tuple[dict, list[str]]:
    """The Bulk export benchmark: cxlake against the emulator, the others on the same pages."""
    pages = work / f"salesforce-{args.sf_rows}"
    if not pages.exists():
        subprocess.run([sys.executable, HERE / "gen_salesforce.py", pages, "--rows", str(args.sf_rows)], check=True)
    page_dir = pages / f"{SF_OBJECT}.pages"
    page_files = list(page_dir.glob("*.csv"))
    out = work / "out" / "salesforce"
    shutil.rmtree(out, ignore_errors=True)
    emulator = subprocess.Popen([cxlake, "emulator", "--port", "0", "--no-seed", "--canned", str(pages)],
                                stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]

        def ours() -> dict:
            shutil.rmtree(out / "cxlake", ignore_errors=True)
            env = {"CXLAKE_SALESFORCE_LOGIN_URL": url, "CXLAKE_LAKE_URL": f"file://{out / 'cxlake'}", "CXLAKE_LOG": "warn"}
            return ours_or_exit(measure([cxlake, "run", str(HERE / "jobs" / "salesforce-bench.toml")], env), "salesforce")

        cx = best_of(args.repeat, ours)
    finally:
        emulator.terminate()
        emulator.wait()
    reference = summary(out / "cxlake", SF_TABLE)
    row = {"dataset": "salesforce", "files": len(page_files), "input_mb": sum(p.stat().st_size for p in page_files) / 1e6,
           "rows": reference["rows"], "columns": len(reference["schema"]), "cxlake": cx}
    problems = []
    for label, extra in tools(args.alternatives, SF_VARIANTS):
        target = out / label.replace("/", "-")

        def theirs() -> dict:
            shutil.rmtree(target, ignore_errors=True)
            return measure([sys.executable, str(HERE / "competitors_sf.py"), label.split("/")[0], str(page_dir), str(target / SF_TABLE), *extra],
                           timeout=args.timeout)

        row[label] = best_of(args.repeat, theirs)
        # cxlake writes one snapshot_date partition, the others one file: compare the contents
        problems += check(f"salesforce/{label}", row[label],
                          lambda: equivalent({**reference, "partitions": {}}, {**summary(target, SF_TABLE), "partitions": {}}), bool(extra))
    shutil.rmtree(out, ignore_errors=True)
    return row, problems


def workload(row: dict) -> str:
    if row["dataset"] == "salesforce":
        return f"Salesforce Bulk result, {row['rows']:,} records, {row['input_mb']:.0f} MB, {row['files']} pages → one Parquet file"
    if row["files"] == 1:
        return (f"one queue report, {row['rows']:,} rows, {row['columns']} columns, {row['input_mb']:.0f} MB → sorted Parquet "
                f"partitioned by dt ({row['partitions']} days)")
    return (f"{row['files']:,} report files × {row['rows'] // row['files']} rows, {row['input_mb']:.0f} MB → "
            f"{row['partitions']} partitions")


def cell(r: dict) -> str:
    if "failed" in r:
        return r["failed"]
    return f"{r['seconds']:.2f} s, {r['cpu_seconds']:.1f} CPU-s, {r['max_rss_mb']:.0f} MB"


def table(results: list[dict]) -> str:
    """The issue's table: cxlake, each competitor, and cxlake against the fastest of them."""
    labels = [t for t in dict.fromkeys(k for row in results for k in row if k.split("/")[0] in COMPETITORS)]
    lines = ["| workload | cxlake | " + " | ".join(labels) + " | ratio (fastest competitor / cxlake) |",
             "|---" * (len(labels) + 3) + "|"]
    for row in results:
        present = [t for t in labels if t in row and "failed" not in row[t]]
        fastest = min(present, key=lambda t: row[t]["seconds"])
        ratio = row[fastest]["seconds"] / row["cxlake"]["seconds"]
        cells = [cell(row[t]) if t in row else "–" for t in labels]
        lines.append(f"| {workload(row)} | {cell(row['cxlake'])} | " + " | ".join(cells) + f" | {ratio:.2f}× ({fastest}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("bench-data"))
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big report (default 1M)")
    parser.add_argument("--days", type=int, default=365, help="days of the year dataset (default 365: 17,520 files)")
    parser.add_argument("--sf-rows", type=int, default=1_000_000, help="Salesforce records (default 1M)")
    parser.add_argument("--only", choices=["big", "year", "salesforce"])
    parser.add_argument("--repeat", type=int, default=1, help="run each tool N times, keep the fastest (default 1)")
    parser.add_argument("--tools", help="only these competitor runs, e.g. polars,duckdb/union_by_name (development)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a competitor run may take (default 900)")
    parser.add_argument("--alternatives", action="store_true",
                        help="also measure the other approaches tried for each tool (competitors.py VARIANTS)")
    args = parser.parse_args()
    ONLY_TOOLS.update(filter(None, (args.tools or "").split(",")))
    work = args.work.resolve()
    cxlake = str(pathlib.Path(args.cxlake).resolve())
    results, problems = [], []
    if args.only in (None, "big", "year"):
        for name, source in generate(work, args.rows, args.days).items():
            if args.only in (None, name):
                row, found = connect_row(cxlake, name, source, work, args)
                results.append(row)
                problems += found
                (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if args.only in (None, "salesforce"):
        row, found = salesforce_row(cxlake, work, args)
        results.append(row)
        problems += found
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if problems:
        print("\n".join(problems))
        sys.exit("equivalence check failed: an output differs from cxlake's, no figures printed")
    loads = [r["load"] for row in results for r in row.values() if isinstance(r, dict) and "load" in r]
    print(f"\nevery output checked equal to cxlake's; 1-minute load average before each run: "
          f"{min(loads):.2f}–{max(loads):.2f} on {os.cpu_count()} cores\n")
    print(table(results))


if __name__ == "__main__":
    main()
