"""`make bench`: one Salesforce object of --rows records (10M) exported incrementally, its
`_latest` merged: peak RSS, wall time and CPU seconds per million records.

The records are bench/gen_salesforce.py's seeded Bulk API 2.0 result pages, served by
`cxlake emulator --canned` (every query of the object gets every page). Run 1 is the initial
load (history file, `_latest` copied from it); run 2 is an incremental run in which every record
comes back as changed, the worst case of the `_latest` merge: the previous 10M-row file is read
back, every changed Id is held (packed, about 20 bytes each) and both files are streamed into the
new one. The bound checked is peak RSS under 512 MB, whatever the record count.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

HERE = pathlib.Path(__file__).resolve().parent
OBJECT = "Bench_Record__c"
TABLE = "sf_bench_record__c"
RSS_BOUND_MB = 512


def measure(cmd: list[str], env: dict) -> dict:
    import os

    result = subprocess.run([sys.executable, str(HERE / "measure.py"), *cmd], capture_output=True, text=True,
                            env={**os.environ, **env})
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["code"] != 0:
        sys.exit(f"cxlake failed ({figures['code']}): {result.stderr[-2000:]}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", type=pathlib.Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    work = args.work.resolve()
    pages = work / f"salesforce-{args.rows}"
    if not (pages / f"{OBJECT}.pages" / "counts.json").exists():
        print(f"generating {args.rows:,} records (once) ...", flush=True)
        subprocess.run([sys.executable, HERE / "gen_salesforce.py", pages, "--rows", str(args.rows)], check=True)
    out = work / "out" / "salesforce-scale"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    job = out / "job.toml"
    job.write_text((HERE / "jobs" / "salesforce-bench.toml").read_text()
                   .replace('mode = "snapshot"', 'mode = "incremental"')
                   .replace('name = "salesforce-bench"', 'name = "salesforce-scale"'))
    emulator = subprocess.Popen([args.cxlake, "emulator", "--port", "0", "--no-seed", "--canned", str(pages)],
                                stdout=subprocess.PIPE, text=True)
    try:
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        env = {"CXLAKE_SALESFORCE_LOGIN_URL": url, "CXLAKE_LAKE_URL": f"file://{out / 'lake'}", "CXLAKE_LOG": "warn"}
        runs = [("initial load", measure([args.cxlake, "run", str(job)], env)),
                ("incremental, every record changed", measure([args.cxlake, "run", str(job)], env))]
    finally:
        emulator.terminate()
        emulator.wait()
    latest = pq.ParquetFile(next((out / "lake" / f"{TABLE}_latest").glob("*.parquet"))).metadata.num_rows
    if latest != args.rows:
        sys.exit(f"{TABLE}_latest holds {latest:,} rows, expected {args.rows:,}")
    millions = args.rows / 1e6
    print(f"\nSalesforce export at scale: one object, {args.rows:,} records ({TABLE}_latest checked: {latest:,} rows)")
    print("| run | wall s | wall s / M records | CPU s / M records | peak RSS MB |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for name, r in runs:
        worst = max(worst, r["max_rss_mb"])
        print(f"| {name} | {r['seconds']:.1f} | {r['seconds'] / millions:.2f} | {r['cpu_seconds'] / millions:.2f} "
              f"| {r['max_rss_mb']:.0f} |")
    verdict = "held" if worst < RSS_BOUND_MB else "EXCEEDED"
    print(f"peak RSS bound ({RSS_BOUND_MB} MB): {verdict}")
    shutil.rmtree(out, ignore_errors=True)
    if worst >= RSS_BOUND_MB:
        sys.exit(1)


if __name__ == "__main__":
    main()
