"""Seeded generator of Amazon Connect 30-minute interval reports (queue and agent).

Subcommands:
  sample OUTDIR   a few days of queue and agent files, one per interval (the bundled demo data)
  extend OUTDIR   more intervals after a time (the demo's last evening in New York: 2024-03-12T00:00Z+)
  big OUTFILE     one large queue report (about 230 bytes per row)
  year OUTDIR     one file per half hour for a whole year (or its first --days)

Quirks are injected on purpose, as Connect (or a hand edit) produces them: UTF-8 BOM, CRLF line
endings, shuffled column order, quoted names with commas, quotes, newlines and non-ASCII
characters, `-` and blank cells for "no data", percentages with `%`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import random
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS = tomllib.loads((ROOT / "schemas" / "connect_metrics.toml").read_text())
QUEUE_NAMES = ["BasicQueue", "Sales, EU", 'Support "Tier 2"', "Köln Überlauf", "Billing", "VIP-Callback"]
AGENTS = [("jdoe", "Jane Doe"), ("mrossi", "Mario Rossi"), ("akim", "Ahn Kim"), ("lmüller", "Lena Müller"), ("pnovak", "Petr Novák")]
STAMP = "%Y-%m-%dT%H:%M:%S.000Z"


def metric_headers(report: str, newer: bool = True) -> list[dict]:
    """Metric definitions of a report, optionally without the newer ones."""
    metrics = [m for m in METRICS["metric"] if report in m["reports"] and m["unit"] != "text"]
    return metrics if newer else metrics[: len(metrics) * 3 // 4]


def value(rng: random.Random, unit: str, blank_rate: float = 0.45) -> str:

    """One metric cell: small counts, whole or decimal seconds, percentages, and (often, as in a
    quiet half hour) the no-data markers."""
    roll = rng.random()
    if roll < blank_rate * 0.8:
        return "-"
    if roll < blank_rate:
        return ""
    if unit == "count":
        return str(int(rng.expovariate(0.3)))
    if unit == "percent":
        return f"{rng.uniform(0, 100):.2f}%"
    return str(int(rng.expovariate(0.01))) if rng.random() < 0.7 else f"{rng.expovariate(0.01):.1f}"



def quote(cell: str) -> str:
    """CSV-quote a cell when it needs it (comma, quote, newline)."""
    if any(c in cell for c in ',"\n\r'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_report(path: pathlib.Path, header: list[str], rows: list[list[str]], rng: random.Random, quirks: bool) -> None:
    """Write one report, with BOM/CRLF/column shuffling when `quirks`."""
    order = list(range(len(header)))
    bom = crlf = False
    if quirks:
        bom = rng.random() < 0.3
        crlf = rng.random() < 0.5
        if rng.random() < 0.3:
            rng.shuffle(order)
    newline = "\r\n" if crlf else "\n"
    lines = [",".join(quote(header[i]) for i in order)]
    lines += [",".join(quote(row[i]) for i in order) for row in rows]
    text = ("\ufeff" if bom else "") + newline.join(lines) + newline
    path.write_bytes(text.encode("utf-8"))


def interval_rows(report: str, start: dt.datetime, names: list, metrics: list[dict], rng: random.Random) -> list[list[str]]:
    """Rows of one interval; inactive queues/agents are sometimes absent."""
    end = start + dt.timedelta(minutes=30)
    rows = []
    for name in names:
        if rng.random() < 0.1:
            continue
        if report == "agent":
            login, full = name
            display = full if rng.random() > 0.05 else full + "\n(trainee)"
            first, last = full.split(" ", 1)
            row = [login, start.strftime(STAMP), end.strftime(STAMP), display, first, last]
        else:
            row = [name, start.strftime(STAMP), end.strftime(STAMP)]
        row += [value(rng, m["unit"]) for m in metrics]
        rows.append(row)
    return rows


def report_header(report: str, metrics: list[dict]) -> list[str]:
    """Header row: grouping, interval, (agent names), metrics."""
    head = ["Queue" if report == "queue" else "Agent", "StartInterval", "EndInterval"]
    if report == "agent":
        head += ["Agent Name", "Agent First Name", "Agent Last Name"]
    return head + [m["header"] for m in metrics]


def sample(out: pathlib.Path, start: dt.date, days: int, queues: int, agents: int, seed: int) -> None:
    """One file per interval and report, like the CTI adapter's schedules."""
    rng = random.Random(seed)
    for report, folder, schedule, names in (
        ("queue", "Queue", "sfIntervalQueue", QUEUE_NAMES[:queues]),
        ("agent", "Agent", "sfIntervalAgent", AGENTS[:agents]),
    ):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        metrics = metric_headers(report)
        if report == "agent":
            # A custom agent status shows up as a metric cxlake does not know.
            metrics = metrics + [{"header": "Lunch time", "unit": "seconds"}]
        first = dt.datetime.combine(start, dt.time(), dt.timezone.utc)
        for i in range(days * 48):
            begin = first + dt.timedelta(minutes=30 * i)
            key_time = begin + dt.timedelta(minutes=30)
            name = f"{schedule}-{key_time.strftime('%Y-%m-%dT%H:%M:%SZ')}.csv"
            rows = interval_rows(report, begin, names, metrics, rng)
            write_report(target / name, report_header(report, metrics), rows, rng, quirks=True)


def extend(out: pathlib.Path, after: dt.datetime, intervals: int, queues: int, agents: int, seed: int) -> None:
    """`intervals` more files per report after `after` (UTC), like `sample`'s: the bundled demo
    data ends at midnight UTC, and these complete its last day in the demo's time zone."""
    rng = random.Random(seed)
    for report, folder, schedule, names in (
        ("queue", "Queue", "sfIntervalQueue", QUEUE_NAMES[:queues]),
        ("agent", "Agent", "sfIntervalAgent", AGENTS[:agents]),
    ):
        metrics = metric_headers(report)
        if report == "agent":
            metrics = metrics + [{"header": "Lunch time", "unit": "seconds"}]
        for i in range(intervals):
            begin = after + dt.timedelta(minutes=30 * i)
            name = f"{schedule}-{(begin + dt.timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}.csv"
            rows = interval_rows(report, begin, names, metrics, rng)
            write_report(out / folder / name, report_header(report, metrics), rows, rng, quirks=True)


def big(out: pathlib.Path, rows: int, queues: int, seed: int) -> None:
    """One large queue report ordered by interval, then queue."""
    rng = random.Random(seed)
    metrics = metric_headers("queue")
    header = report_header("queue", metrics)
    names = [f"Queue {q:03d}" if q % 9 else f"Queue {q:03d}, EU" for q in range(queues)]
    first = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        f.write("\ufeff" + ",".join(header) + "\r\n")
        for i in range(rows):
            begin = first + dt.timedelta(minutes=30 * (i // queues))
            end = begin + dt.timedelta(minutes=30)
            cells = [quote(names[i % queues]), begin.strftime(STAMP), end.strftime(STAMP)]
            cells += [value(rng, m["unit"]) for m in metrics]
            f.write(",".join(cells) + "\r\n")


def year(out: pathlib.Path, queues: int, year_: int, seed: int, days: int | None = None) -> None:
    """Every half hour of a year (or of its first `days`: the same files), `queues` rows per file."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    metrics = metric_headers("queue")
    names = [f"Queue {q:02d}" if q % 5 else f"Queue {q:02d}, EU" for q in range(queues)]
    begin = dt.datetime(year_, 1, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year_ + 1, 1, 1, tzinfo=dt.timezone.utc)
    if days is not None:
        end = min(end, begin + dt.timedelta(days=days))
    while begin < end:
        key_time = begin + dt.timedelta(minutes=30)
        rows = []
        for name in names:
            rows.append([name, begin.strftime(STAMP), key_time.strftime(STAMP)] + [value(rng, m["unit"]) for m in metrics])
        name = f"BenchQueue-{key_time.strftime('%Y-%m-%dT%H:%M:%SZ')}.csv"
        write_report(out / name, report_header("queue", metrics), rows, rng, quirks=True)
        begin = key_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 3, 9))
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--queues", type=int, default=4)
    p.add_argument("--agents", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("extend")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--after", type=lambda t: dt.datetime.fromisoformat(t).replace(tzinfo=dt.timezone.utc),
                   default=dt.datetime(2024, 3, 12, tzinfo=dt.timezone.utc))
    p.add_argument("--intervals", type=int, default=8)
    p.add_argument("--queues", type=int, default=4)
    p.add_argument("--agents", type=int, default=5)
    p.add_argument("--seed", type=int, default=71)
    p = sub.add_parser("big")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queues", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("year")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--queues", type=int, default=20)
    p.add_argument("--year", type=int, default=2023)
    p.add_argument("--days", type=int, help="only the first DAYS days (default: the whole year)")
    p.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    if args.command == "sample":
        sample(args.out, args.start, args.days, args.queues, args.agents, args.seed)
    elif args.command == "extend":
        extend(args.out, args.after, args.intervals, args.queues, args.agents, args.seed)
    elif args.command == "big":
        big(args.out, args.rows, args.queues, args.seed)
    else:
        year(args.out, args.queues, args.year, args.seed, args.days)


if __name__ == "__main__":
    main()
