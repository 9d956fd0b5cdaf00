"""Seeded mutation suite: thousands of damaged queue and agent reports next to good ones.

Every case is one report file, mutated by one rule from MUTATIONS (byte flips, deletions,
duplications, truncations, header and cell edits, line-end damage). Cases are loaded in batches,
many files per cxlake run, with good files alongside, and every case is judged from the run's
rejects and the lake:

- the run exits 0 or 3 and nothing panics;
- every good file's rows are in the lake;
- each mutated file either loaded whole (the lake holds exactly the rows its CSV has, by
  (name, interval), read back with Python's csv module) or was rejected with a bounded reason
  naming it (`_etl/rejects/<job>/<file>.error.json` and the stdout line);
- the lake reads with DuckDB and pyarrow;
- a backfill rerun of the same days changes no byte of the tables or their column lists.

Adding a kind of damage is one function `f(rng, data: bytes) -> bytes` appended to MUTATIONS (or
a case builder in CASE_BUILDERS for damage that is not a byte edit of a good report).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import pathlib
import random
import time

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from conftest import is_run_record, write_job

SEED = 20261201
CASES = 2400  # split evenly over queue and agent reports
BATCHES = 2  # cxlake runs (each runs the queue and the agent job), plus one backfill rerun each
GOOD_PER_BATCH = 12  # good files per report kind per batch
MAX_REASON = 400  # characters of a reject reason, stdout line or error.json field
FIRST_END = dt.datetime(2024, 3, 1, 0, 30, tzinfo=dt.timezone.utc)

QUEUE_HEADER = ["Queue", "StartInterval", "EndInterval", "Contacts handled", "Average handle time",
                "Service level 20 seconds", "Contacts abandoned", "Lunch time"]
AGENT_HEADER = ["Agent", "Agent Name", "StartInterval", "EndInterval", "Contacts handled", "Occupancy",
                "Agent answer rate", "Lunch time"]
REPORTS = {
    "queue": {"header": QUEUE_HEADER, "schedule": "sfIntervalQueue", "table": "connect_queue_interval",
              "grouping": "queue"},
    "agent": {"header": AGENT_HEADER, "schedule": "sfIntervalAgent", "table": "connect_agent_interval",
              "grouping": "agent"},
}


# --------------------------------------------------------------------------------------------
# Good reports


def iso_ms(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def report_text(report: str, tag: str, end: dt.datetime, rng: random.Random, rows: int = 3) -> str:
    """A valid report; every name carries `tag` three times, so one byte of damage cannot turn
    it into another file's name."""
    start, stop = iso_ms(end - dt.timedelta(minutes=30)), iso_ms(end)
    lines = [",".join(REPORTS[report]["header"])]
    for r in range(rows):
        name = f"{tag}-{tag}-{tag}-{r}"
        handled, aht, pct, lunch = rng.randint(0, 50), f"{rng.uniform(0, 900):.1f}", f"{rng.uniform(0, 100):.2f}%", rng.choice(["-", "", "300", "00:05:00"])
        if report == "queue":
            cells = [name, start, stop, str(handled), aht, pct, str(rng.randint(0, 5)), lunch]
        else:
            cells = [name, f'"Agent, {tag} {r}"', start, stop, str(handled), pct, pct, lunch]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Mutations: f(rng, data) -> bytes. Hostile values are the ones found in issue 10 and their kin.

HOSTILE_CELLS = [b"", b"-", b"-1", b"-0.5", b"1e400", b"NaN", b"inf", b"1,5", b"12a", b"101%", b"-1%",
                 b"100.001%", b"5124095576030432:00:00", b"1:60:00", b"0000-01-01T00:00:00Z",
                 b"2024-03-10T16:10:00Z", b"2099-01-01T00:00:00Z", b"2024-02-30T00:00:00Z",
                 b"\xff\xfe", b'"', b'""', b"x" * 100_000, b"99999999999999999999", b"+7", b"7.00"]
HOSTILE_HEADERS = [b"Source key", b"Exported at", b"Instance", b"interval_start_local", b"dt", b"Intervals",
                   b"Contacts$agent hung up first", b"Contacts handled", b"Contacts$handled", b"StartInterval",
                   b"Queue", b"Agent", b"%%%", b"", b"()", b"Coffee break time", b"H" * 5000, b"\xff",
                   b"Average handle time!", b"End Interval", b"New metric %"]
SPECIAL_BYTES = b'",\n\r%-:.0123456789 \x00\xff'


def _pos(rng, data, end_inclusive=False):
    return rng.randrange(len(data) + (1 if end_inclusive else 0)) if data else 0


def byte_flip(rng, data):
    i = _pos(rng, data)
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def special_byte(rng, data):
    i = _pos(rng, data)
    return data[:i] + bytes([rng.choice(SPECIAL_BYTES)]) + data[i + 1:]


def bit_flip(rng, data):
    i = _pos(rng, data)
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def delete_span(rng, data):
    i = _pos(rng, data)
    return data[:i] + data[i + rng.randint(1, 24):]


def duplicate_span(rng, data):
    i = _pos(rng, data)
    j = min(len(data), i + rng.randint(1, 80))
    return data[:j] + data[i:j] + data[j:]


def insert_bytes(rng, data):
    i = _pos(rng, data, True)
    junk = bytes(rng.choice(SPECIAL_BYTES) for _ in range(rng.randint(1, 6)))
    return data[:i] + junk + data[i:]


def truncate(rng, data):
    return data[:_pos(rng, data)]


def truncate_in_header(rng, data):
    return data[:rng.randrange(1, data.index(b"\n"))]


def duplicate_line(rng, data):
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    return b"\n".join(lines[:i + 1] + lines[i:])


def swap_lines(rng, data):
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def _cells(data):
    head, _, rest = data.partition(b"\n")
    return head.split(b","), rest


def header_replace(rng, data):
    cells, rest = _cells(data)
    cells[rng.randrange(len(cells))] = rng.choice(HOSTILE_HEADERS)
    return b",".join(cells) + b"\n" + rest


def header_add(rng, data):
    cells, rest = _cells(data)
    cells.insert(rng.randrange(len(cells) + 1), rng.choice(HOSTILE_HEADERS))
    return b",".join(cells) + b"\n" + rest


def header_drop(rng, data):
    cells, rest = _cells(data)
    del cells[rng.randrange(len(cells))]
    return b",".join(cells) + b"\n" + rest


def header_typo(rng, data):
    cells, rest = _cells(data)
    i = rng.randrange(len(cells))
    cell = bytearray(cells[i])
    if cell:
        cell[rng.randrange(len(cell))] = rng.choice(b"$_- ()%!xyzQ")
    cells[i] = bytes(cell)
    return b",".join(cells) + b"\n" + rest


def cell_replace(rng, data):
    lines = data.split(b"\n")
    row = rng.randrange(1, max(2, len(lines) - 1))
    cells = lines[row].split(b",")
    cells[rng.randrange(len(cells))] = rng.choice(HOSTILE_CELLS)
    lines[row] = b",".join(cells)
    return b"\n".join(lines)


def crlf(rng, data):
    return data.replace(b"\n", b"\r\n")


def cr_only(rng, data):
    return data.replace(b"\n", b"\r")


def header_cr_only(rng, data):
    return data.replace(b"\n", b"\r", 1)


def no_final_newline(rng, data):
    return data.rstrip(b"\n")


def bom(rng, data):
    return b"\xef\xbb\xbf" + data


def twice(rng, data):
    """Two random byte-level mutations in a row."""
    for mutate in rng.sample(BYTE_MUTATIONS, 2):
        data = mutate(rng, data)
    return data


BYTE_MUTATIONS = [byte_flip, special_byte, bit_flip, delete_span, duplicate_span, insert_bytes, truncate]
MUTATIONS = BYTE_MUTATIONS + [truncate_in_header, duplicate_line, swap_lines, header_replace, header_add,
                              header_drop, header_typo, cell_replace, crlf, cr_only, header_cr_only,
                              no_final_newline, bom, twice]


class Case:
    def __init__(self, index: int, report: str, name: str, data: bytes, mutation: str):
        self.index, self.report, self.name, self.data, self.mutation = index, report, name, data, mutation


def build_cases(batch: int, count: int) -> tuple[list[Case], list[Case]]:
    """(good files, mutated cases) of one batch; deterministic for SEED."""
    good, cases = [], []
    slot = 0

    def next_end():
        nonlocal slot
        slot += 1
        return FIRST_END + dt.timedelta(minutes=30 * (slot + batch * 10_000))

    for report in REPORTS:
        for g in range(GOOD_PER_BATCH):
            rng = random.Random(f"{SEED}-good-{batch}-{report}-{g}")
            end = next_end()
            name = f"{REPORTS[report]['schedule']}-{end.strftime('%Y-%m-%dT%H:%M:%S')}Z.csv"
            text = report_text(report, f"G{batch}{g:04d}", end, rng)
            good.append(Case(-1, report, name, text.encode(), "none"))
    for i in range(count):
        index = batch * count + i
        report = "queue" if i % 2 == 0 else "agent"
        rng = random.Random(f"{SEED}-case-{index}")
        mutation = MUTATIONS[index % len(MUTATIONS)]
        end = next_end()
        name = f"{REPORTS[report]['schedule']}-{end.strftime('%Y-%m-%dT%H:%M:%S')}Z.csv"
        base = report_text(report, f"M{index:05d}", end, rng).encode()
        cases.append(Case(index, report, name, mutation(rng, base), mutation.__name__))
    return good, cases


# --------------------------------------------------------------------------------------------
# The oracle: what a loaded file must have put in the lake, read with Python's csv module


def normalize(header: str) -> str:
    """Header lookup key as the README defines it: lower case, BOM and parentheses removed,
    runs of whitespace, '-' and '_' collapsed to one space."""
    text = header.lstrip("\ufeff").replace("(", "").replace(")", "").lower()
    out, pending = [], False
    for c in text:
        if c.isspace() or c in "-_":
            pending = bool(out)
            continue
        if pending:
            out.append(" ")
            pending = False
        out.append(c)
    return "".join(out)


def expected_keys(case: Case) -> set[tuple[str, dt.datetime]] | None:
    """(name, interval_start) of every data row, or None when Python cannot read the file."""
    data = case.data[3:] if case.data.startswith(b"\xef\xbb\xbf") else case.data
    try:
        records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None
    if not records:
        return set()
    keys = [normalize(h) for h in records[0]]
    grouping = keys.index(REPORTS[case.report]["grouping"])
    start = next(i for i, k in enumerate(keys) if k in ("startinterval", "start interval", "interval start"))
    out = set()
    for row in records[1:]:
        if len(row) == 1 and not row[0].strip() or not row:
            continue
        try:
            moment = dt.datetime.fromisoformat(row[start].strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        out.add((row[grouping], moment.astimezone(dt.timezone.utc)))
    return out


# --------------------------------------------------------------------------------------------
# Running a batch


def lake_rows(lake: pathlib.Path, table: str) -> pa.Table | None:
    if not (lake / table).exists():
        return None
    partitioning = ds.partitioning(pa.schema([("dt", pa.string())]), flavor="hive")
    return ds.dataset(lake / table, format="parquet", partitioning=partitioning).to_table()


def table_snapshot(lake: pathlib.Path) -> dict[str, bytes]:
    """The data tables and their metadata (not the records each run adds of itself)."""
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted(lake.rglob("*"))
            if p.is_file() and (p.relative_to(lake).parts[0] != "_etl" or p.parts[-2] == "tables")
            and not is_run_record(p.relative_to(lake).as_posix())}


def run_batch(cx, root: pathlib.Path, batch: int, per_batch: int) -> dict:
    good, cases = build_cases(batch, per_batch)
    for report in REPORTS:
        (root / f"src-{report}").mkdir(parents=True)
        write_job(root, f"{report}.toml",
                  job={"name": f"mut-{report}", "kind": "connect-intervals", "timezone": "UTC"},
                  source={"url": f"file://src-{report}/", "report": report, "instance": "mut"},
                  lake={"url": "file://lake"})
    for case in good + cases:
        (root / f"src-{case.report}" / case.name).write_bytes(case.data)

    first = cx("run", "queue.toml", "agent.toml", cwd=root)
    assert first.code in (0, 3), first
    for stream in (first.stdout, first.stderr):
        assert "panicked" not in stream and "RUST_BACKTRACE" not in stream, first
    lake = root / "lake"

    rejected: dict[str, dict] = {}
    for report in REPORTS:
        for error in (lake / "_etl" / "rejects" / f"mut-{report}").glob("*.error.json"):
            reason = json.loads(error.read_text())
            name = error.name.removesuffix(".error.json")
            assert reason["source_key"] == f"file://src-{report}/{name}", reason
            assert reason["reason"] and len(reason["reason"]) <= MAX_REASON, reason
            assert len(reason.get("column") or "") <= MAX_REASON, reason
            rejected[f"{report}/{name}"] = reason
    for line in first.stdout.splitlines():
        if line.startswith("  rejected "):
            assert len(line) <= MAX_REASON + 200, line[:500]
    stdout_rejects = {line.split()[1].removeprefix("file://src-").rstrip(":")
                      for line in first.stdout.splitlines() if line.startswith("  rejected ")}
    assert stdout_rejects == set(rejected), (stdout_rejects ^ set(rejected))

    con = duckdb.connect()
    by_source: dict[str, set] = {}
    for report, spec in REPORTS.items():
        table = lake_rows(lake, spec["table"])  # pyarrow reads the whole table
        files = sorted((lake / spec["table"]).glob("dt=*/*.parquet"))
        if files:
            duck = con.execute(f"select count(*), count(distinct source_key) from read_parquet("
                           f"'{(lake / spec['table']).as_posix()}/*/*.parquet', hive_partitioning = true)").fetchone()
            assert duck[0] == table.num_rows, (duck, table.num_rows)
            con.execute(f"select * from read_parquet('{(lake / spec['table']).as_posix()}/*/*.parquet', "
                    f"hive_partitioning = true)").fetchall()
        for row in (table.select([spec["grouping"], "interval_start", "source_key"]).to_pylist() if table else []):
            key = f"{report}/{row['source_key'].rsplit('/', 1)[-1]}"
            by_source.setdefault(key, set()).add((row[spec["grouping"]], row["interval_start"]))

    outcomes = {"loaded": 0, "rejected": 0, "unverified": 0}
    for case in good:
        key = f"{case.report}/{case.name}"
        assert key not in rejected, (key, rejected.get(key))
        assert by_source.get(key) == expected_keys(case), key
    for case in cases:
        key = f"{case.report}/{case.name}"
        where = f"case {case.index} ({case.mutation}) {key}"
        if key in rejected:
            assert key not in by_source, f"{where}: rejected but has rows in the lake"
            outcomes["rejected"] += 1
            continue
        expected = expected_keys(case)
        got = by_source.get(key, set())
        if expected is None:
            outcomes["unverified"] += 1
            assert got, f"{where}: loaded, unreadable by Python, and no rows"
        else:
            assert got == expected, f"{where}: loaded but the lake differs: {sorted(got ^ expected)[:4]}"
        outcomes["loaded"] += 1

    before = table_snapshot(lake)
    again = cx("run", "queue.toml", "agent.toml", "--from", "2024-01-01", "--to", "2026-12-31", cwd=root)
    assert again.code == first.code, again
    assert table_snapshot(lake) == before, "a backfill rerun changed the lake"
    return {"cases": len(cases), **outcomes}


def test_mutated_reports_are_loaded_whole_or_rejected_and_never_cost_other_data(cx, tmp_path):
    started = time.monotonic()
    totals = {"cases": 0, "loaded": 0, "rejected": 0, "unverified": 0}
    for batch in range(BATCHES):
        outcome = run_batch(cx, tmp_path / f"batch{batch}", batch, CASES // BATCHES)
        for k, v in outcome.items():
            totals[k] += v
    seconds = time.monotonic() - started
    print(f"mutation suite: {totals} in {seconds:.1f}s")
    assert totals["cases"] >= 2000
    # the suite must exercise both outcomes, or it is not testing anything
    assert totals["rejected"] > totals["cases"] // 4 and totals["loaded"] > totals["cases"] // 10, totals
    assert totals["unverified"] <= totals["cases"] // 50, totals


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
def test_every_mutation_changes_a_report(mutation):
    rng = random.Random(SEED)
    base = report_text("queue", "M00000", FIRST_END, rng).encode()
    changed = sum(mutation(random.Random(i), base) != base for i in range(20))
    assert changed >= 10, mutation.__name__
