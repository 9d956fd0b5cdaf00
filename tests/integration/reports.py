"""Hand-written Connect interval reports, each quirk explicit."""

from __future__ import annotations

import pathlib

BOM = "\ufeff"
HEADER = "Queue,StartInterval,EndInterval,Contacts handled,Average handle time,Service level 20 seconds,Contacts abandoned"


def row(queue: str, start: str, end: str, handled="10", aht="120.5", sl="87.50%", abandoned="1") -> str:
    return ",".join([queue, start, end, handled, aht, sl, abandoned])


def write(folder: pathlib.Path, name: str, text: str, newline: str = "\n", bom: bool = False) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = newline.join(text.strip("\n").split("\n")) + newline
    path.write_bytes(((BOM if bom else "") + body).encode("utf-8"))
    return path


def interval(start_hhmm: str, day: str = "2024-03-10") -> tuple[str, str]:
    """ISO start and end of a half hour given as HH:MM on `day`."""
    hour, minute = map(int, start_hhmm.split(":"))
    end_minutes = hour * 60 + minute + 30
    end_day = day if end_minutes < 24 * 60 else None
    if end_day is None:
        import datetime as dt

        end_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
        end_minutes -= 24 * 60
    return (f"{day}T{hour:02d}:{minute:02d}:00.000Z", f"{end_day}T{end_minutes // 60:02d}:{end_minutes % 60:02d}:00.000Z")


def file_name(end_iso: str, schedule: str = "sfIntervalQueue") -> str:
    """Report file name for a file whose interval ends at `end_iso`."""
    return f"{schedule}-{end_iso[:19]}Z.csv"


def quirky_day(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Three files on 2024-03-10 with every parsing quirk; returns them by role."""
    files = {}
    s, e = interval("16:00")
    files["bom_crlf"] = write(
        folder,
        file_name(e),
        HEADER + "\n" + row('"Sales, EU"', s, e) + "\n" + row('"Support ""Tier 2"""', s, e, handled="-", aht="", sl="-", abandoned=""),
        newline="\r\n",
        bom=True,
    )
    s, e = interval("16:30")
    # Reordered columns, a quoted newline and non-ASCII names, an unknown metric, no millis.
    files["reordered"] = write(
        folder,
        file_name(e),
        "Contacts handled,Coffee break time,EndInterval,Queue,StartInterval,Frobnication ratio\n"
        f'7,60,{e.replace(".000", "")},"Köln\nÜberlauf",{s.replace(".000", "")},0.5\n'
        f"3,-,{e},Sales\\, EU,{s},\n".replace("Sales\\, EU", '"Sales, EU"'),
    )
    s, e = interval("17:00")
    files["percent"] = write(folder, file_name(e), HEADER + "\n" + row("Billing", s, e, sl="100.00%", aht="01:02:03"))
    return files
