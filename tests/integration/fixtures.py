"""Hand-written Connect interval reports for the integration tests, each quirk explicit.

A scheduled Connect report is one CSV per 30-minute interval, named
`<ScheduleName>-YYYY-MM-DDThh:mm:ssZ.csv` with the UTC end of the interval it covers.
The texts below are kept literal so that a reader sees exactly what cxlake is given.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import tomllib

import pyarrow as pa

METRICS_TOML = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "connect_metrics.toml"
UTC_MS = pa.timestamp("ms", tz="UTC")
LOCAL_MS = pa.timestamp("ms")
GLUE_TYPES = {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double", UTC_MS: "timestamp", LOCAL_MS: "timestamp"}

BOM = "\ufeff"

QUEUE_HEADER = "Queue,StartInterval,EndInterval,Contacts handled,Average handle time,Service level 20 seconds,Contacts abandoned"


# --------------------------------------------------------------------------------------------
# Building blocks


def write(folder: pathlib.Path, name: str, text: str, *, crlf: bool = False, bom: bool = False) -> pathlib.Path:
    """Writes `text` (LF line ends in the source) as UTF-8, optionally with CRLF and a BOM."""
    folder.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    path = folder / name
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    return path


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso_ms(moment: dt.datetime) -> str:
    """Connect's interval format: 2024-03-10T16:00:00.000Z."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def interval(start: str) -> tuple[str, str]:
    """(StartInterval, EndInterval) for the half hour starting at `start` (e.g. "2024-03-10T16:00Z")."""
    begin = utc(start)
    return iso_ms(begin), iso_ms(begin + dt.timedelta(minutes=30))


def file_name(end: str, schedule: str = "sfIntervalQueue") -> str:
    """Report file name for a report whose interval ends at `end` (any ISO form, UTC)."""
    return f"{schedule}-{utc(end).strftime('%Y-%m-%dT%H:%M:%S')}Z.csv"


def queue_row(queue: str, start: str, end: str, handled="10", aht="120.5", sl="87.50%", abandoned="1") -> str:
    return ",".join([queue, start, end, handled, aht, sl, abandoned])


def queue_report(folder: pathlib.Path, start: str, rows: list[tuple], *, exported: str | None = None, **kw) -> pathlib.Path:
    """One standard queue report for the half hour starting at `start`.

    rows: (queue, handled[, aht[, sl[, abandoned]]]); `exported` overrides the file-name time
    (a re-export); by default it is the end of the interval.
    """
    s, e = interval(start)
    lines = [QUEUE_HEADER] + [queue_row(r[0], s, e, *r[1:]) for r in rows]
    return write(folder, file_name(exported or e), "\n".join(lines) + "\n", **kw)


def half_hours(first_start: str, last_start: str):
    """Every half-hour start from first to last, inclusive, as ISO strings."""
    moment, last = utc(first_start), utc(last_start)
    while moment <= last:
        yield iso_ms(moment)
        moment += dt.timedelta(minutes=30)


def expected_columns(report: str, unknown: tuple[str, ...] = ()) -> list[tuple[str, pa.DataType]]:
    """The contract's column order and Arrow types: key columns, the report's metrics in the order of
    schemas/connect_metrics.toml, lineage, then columns for unknown headers."""
    spec = tomllib.loads(METRICS_TOML.read_text(encoding="utf-8"))
    arrow = {"count": pa.int64(), "seconds": pa.float64(), "percent": pa.float64(), "text": pa.string()}
    columns = [("instance", pa.string()), (spec["report"][report]["grouping_column"], pa.string()),
               ("interval_start", UTC_MS), ("interval_end", UTC_MS), ("interval_start_local", LOCAL_MS)]
    columns += [(m["column"], arrow[m["unit"]]) for m in spec["metric"] if report in m["reports"]]
    # `origin`: `report` for rows read from a report, `api` for rows filled from the Connect API.
    columns += [("source_key", pa.string()), ("exported_at", UTC_MS), ("origin", pa.string())]
    columns += [(name, pa.float64()) for name in unknown]
    return columns


# --------------------------------------------------------------------------------------------
# The quirky day: three files on 2024-03-10 (UTC) carrying every parsing quirk

QUIRKY_BOM_CRLF = "sfIntervalQueue-2024-03-10T16:30:00Z.csv"
QUIRKY_REORDERED = "sfIntervalQueue-2024-03-10T17:00:00Z.csv"
QUIRKY_PERCENT = "sfIntervalQueue-2024-03-10T17:30:00Z.csv"


def quirky_day(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {}
    # UTF-8 BOM + CRLF; a queue name with a comma, one with doubled quotes; `-` and blank cells.
    files["bom_crlf"] = write(
        folder,
        QUIRKY_BOM_CRLF,
        QUEUE_HEADER + "\n"
        + '"Sales, EU",2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,10,120.5,87.50%,1\n'
        + '"Support ""Tier 2""",2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,-,,-,\n',
        crlf=True,
        bom=True,
    )
    # Columns in another order, two metrics cxlake does not know, a queue name with a newline
    # and non-ASCII letters, timestamps without millis and with a +01:00 offset.
    files["reordered"] = write(
        folder,
        QUIRKY_REORDERED,
        "Contacts handled,Coffee break time,EndInterval,Queue,StartInterval,Frobnication ratio\n"
        + '7,60,2024-03-10T17:00:00Z,"Köln\nÜberlauf",2024-03-10T16:30:00Z,0.5\n'
        + '3,-,2024-03-10T18:00:00+01:00,"Sales, EU",2024-03-10T17:30:00+01:00,\n',
    )
    # Percent at both ends of its range, zeros that must stay zeros (not nulls).
    files["percent"] = write(
        folder,
        QUIRKY_PERCENT,
        QUEUE_HEADER + "\n"
        + "Billing,2024-03-10T17:00:00.000Z,2024-03-10T17:30:00.000Z,0,0,0.00%,0\n"
        + "Ops,2024-03-10T17:00:00.000Z,2024-03-10T17:30:00.000Z,12,95,100.00%,2\n",
    )
    return files


# Expected rows of the quirky day, in the table's sort order (name, then interval_start).
# (queue, interval_start HH:MM UTC, contacts_handled, average_handle_time_seconds,
#  service_level_20_seconds_pct, contacts_abandoned, coffee_break_time_seconds, frobnication_ratio, file)
QUIRKY_ROWS = [
    ("Billing", "17:00", 0, 0.0, 0.0, 0, None, None, QUIRKY_PERCENT),
    ("Köln\nÜberlauf", "16:30", 7, None, None, None, 60.0, 0.5, QUIRKY_REORDERED),
    ("Ops", "17:00", 12, 95.0, 100.0, 2, None, None, QUIRKY_PERCENT),
    ("Sales, EU", "16:00", 10, 120.5, 87.5, 1, None, None, QUIRKY_BOM_CRLF),
    ("Sales, EU", "16:30", 3, None, None, None, None, None, QUIRKY_REORDERED),
    ('Support "Tier 2"', "16:00", None, None, None, None, None, None, QUIRKY_BOM_CRLF),
]


# --------------------------------------------------------------------------------------------
# Agent report

AGENT_FILE = "sfIntervalAgent-2024-03-10T16:30:00Z.csv"


def agent_report(folder: pathlib.Path) -> pathlib.Path:
    return write(
        folder,
        AGENT_FILE,
        "Agent,Agent Name,Agent First Name,Agent Last Name,StartInterval,EndInterval,Contacts handled,Occupancy,Agent answer rate,Lunch time\n"
        + 'jdoe,"Doe, Jane",Jane,Doe,2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,4,75.25%,100.00%,300\n'
        + "asmith,Al Smith,Al,Smith,2024-03-10T16:00:00.000Z,2024-03-10T16:30:00.000Z,-,-,-,\n",
    )


# --------------------------------------------------------------------------------------------
# Header spellings that must map to known columns (schemas/connect_metrics.toml: normalised key + aliases)

ALIASES_FILE = "sfIntervalQueue-2024-03-10T12:30:00Z.csv"


def alias_headers_report(folder: pathlib.Path) -> pathlib.Path:
    return write(
        folder,
        ALIASES_FILE,
        "QUEUE,Start Interval,End Interval,CONTACTS HANDLED,Contact abandoned,Non_Productive  Time,"
        "Contacts handled (connected to the agent timestamp),Contacts transferred out queue\n"
        + "Sales,2024-03-10T12:00:00.000Z,2024-03-10T12:30:00.000Z,5,2,30,4,1\n",
    )


# --------------------------------------------------------------------------------------------
# Files that must be rejected, each for one reason, next to one good file

GOOD_FILE = "sfIntervalQueue-2024-03-10T10:30:00Z.csv"
_S, _E = "2024-03-10T10:00:00.000Z", "2024-03-10T10:30:00.000Z"

# name -> (text, crlf+bom?, expected line, expected column, words expected in the reason)
BAD_FILES = {
    "sfIntervalQueue-2024-03-10T11:00:00Z.csv": (
        f"Name,StartInterval,EndInterval,Contacts handled\nX,{_S},{_E},1\n", False, None, None, "queue"),
    "sfIntervalQueue-2024-03-10T11:30:00Z.csv": (
        f"Queue,EndInterval,Contacts handled\nX,{_E},1\n", False, None, None, "startinterval"),
    "sfIntervalQueue-2024-03-10T12:00:00Z.csv": (
        QUEUE_HEADER + "\n" + queue_row("A", _S, _E) + f"\nB,{_S}\n", False, 3, None, ""),
    "sfIntervalQueue-2024-03-10T12:30:00Z.csv": (
        QUEUE_HEADER + "\n" + queue_row("A", _S, _E) + "\n" + queue_row("B", _S, _E, handled="abc") + "\n",
        False, 3, "Contacts handled", "abc"),
    # the same kind of fault in a BOM + CRLF file, further down: line numbers count CRLF lines
    "sfIntervalQueue-2024-03-10T13:00:00Z.csv": (
        QUEUE_HEADER + "\n" + queue_row("A", _S, _E) + "\n" + queue_row("B", _S, _E) + "\n"
        + queue_row("C", _S, _E, abandoned="1.5x") + "\n", True, 4, "Contacts abandoned", "1.5x"),
}


def bad_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    write(folder, GOOD_FILE, QUEUE_HEADER + "\n" + queue_row("Good", _S, _E) + "\n")
    return {name: write(folder, name, text, crlf=crlf, bom=crlf) for name, (text, crlf, *_x) in BAD_FILES.items()}


# --------------------------------------------------------------------------------------------
# Two quiet days, two intervals each, two queues per interval

TWO_DAYS = ("2024-03-10", "2024-03-11")


def two_days(folder: pathlib.Path) -> None:
    for day in TWO_DAYS:
        for hhmm in ("09:00", "09:30"):
            queue_report(folder, f"{day}T{hhmm}Z", [("Sales", "10"), ("Billing", "4")])
