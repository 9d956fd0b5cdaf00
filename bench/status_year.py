"""`cxlake status` on a lake with a year of run records: how long it takes, against the same lake
with only the newest runs.

usage: status_year.py --cxlake <binary> --work <dir> [--repeat N]

Builds the demo lake (every demo job run once by the real binary, the Salesforce jobs against
`cxlake emulator`), then adds a year of older run records for the seven demo jobs as the binary
writes them: a manifest under `_etl/runs/` and a file of `cxlake_runs` per run (Connect jobs every
30 minutes, the others daily: 36,865 runs, 73,730 objects; the run-table files are hard links of
a real one). The newest runs stay the real ones. Times `cxlake status jobs/demo/*.toml` on both
lakes (best and median of --repeat runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
JOBS = ["connect-queue", "connect-agent", "rollup-queue", "rollup-agent", "salesforce-export", "pushback-queue",
        "pushback-agent"]


def run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")


def demo_lake(cxlake: str, lake: pathlib.Path) -> dict[str, str]:
    env = {**os.environ, "CXLAKE_LAKE_URL": lake.as_uri() + "/", "CXLAKE_LOG": "warn", "CXLAKE_EMF": "0"}
    run([cxlake, "run", *(f"jobs/demo/{j}.toml" for j in JOBS[:4])], env)
    emulator = subprocess.Popen([cxlake, "emulator", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        run([cxlake, "run", *(f"jobs/demo/{j}.toml" for j in JOBS[4:])], {**env, "CXLAKE_SALESFORCE_LOGIN_URL": url})
    finally:
        emulator.terminate()
        emulator.wait()
    return env


def add_a_year(lake: pathlib.Path) -> int:
    """A year of runs before the real ones, per job at its schedule's pace."""
    runs = lake / "_etl" / "runs"
    manifests = {json.loads(p.read_text())["job"]: json.loads(p.read_text()) for p in runs.glob("*.json")}
    table_file = next((lake / "cxlake_runs").rglob("*.parquet"))
    end = min(dt.datetime.fromisoformat(m["started_at"].replace("Z", "+00:00")) for m in manifests.values())
    start = end - dt.timedelta(days=365)
    written = 0
    for job, manifest in manifests.items():
        step = dt.timedelta(minutes=30) if manifest["kind"] == "connect-intervals" else dt.timedelta(days=1)
        moment = start
        while moment < end:
            run_id = f"{moment.strftime('%Y%m%dT%H%M%S')}000Z-{job}-{written % 90000 + 10000}"
            record = {**manifest, "run_id": run_id, "started_at": moment.isoformat().replace("+00:00", "Z")}
            (runs / f"{run_id}.json").write_text(json.dumps(record))
            day = lake / "cxlake_runs" / f"dt={moment.strftime('%Y-%m-%d')}"
            day.mkdir(parents=True, exist_ok=True)
            os.link(table_file, day / f"{run_id}.parquet")
            written += 1
            moment += step
    return written


def time_status(cxlake: str, env: dict[str, str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = subprocess.run([cxlake, "status", *(f"jobs/demo/{j}.toml" for j in JOBS)], cwd=REPO, env=env,
                                capture_output=True, text=True)
        seconds.append(time.perf_counter() - began)
        # 3: the demo's Connect jobs are partial (its reports stop at 2024-03-11 20:00).
        if result.returncode not in (0, 3):
            sys.exit(f"status: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cxlake = str(pathlib.Path(args.cxlake).resolve())
    work = args.work.resolve() / "status-year"
    shutil.rmtree(work, ignore_errors=True)
    fresh, year = work / "fresh", work / "year"
    fresh_env = demo_lake(cxlake, fresh)
    year_env = demo_lake(cxlake, year)
    began = time.perf_counter()
    runs = add_a_year(year)
    objects = sum(1 for _ in year.rglob("*") if _.is_file())
    print(f"a year of run records: {runs} runs added ({objects} objects in the lake) in {time.perf_counter() - began:.1f}s")
    for name, env in (("demo lake (one run per job)", fresh_env), (f"demo lake + a year ({runs} runs)", year_env)):
        seconds = time_status(cxlake, env, args.repeat)
        print(f"cxlake status, 7 jobs, {name}: best {min(seconds) * 1000:.0f} ms, "
              f"median {statistics.median(seconds) * 1000:.0f} ms over {len(seconds)} runs")


if __name__ == "__main__":
    main()
