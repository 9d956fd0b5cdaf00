"""Seeded Bulk API 2.0 result pages for the Salesforce export benchmark.

Writes `<dir>/Bench_Record__c.describe.json` and `<dir>/Bench_Record__c.pages/page-NNNNN.csv`
(+ `counts.json`), the layout `cxlake emulator --canned <dir>` serves as a Bulk query result.
Every page is a complete CSV with its own header, as Salesforce writes them (reference §2.5, §2.8):
every cell quoted, null as "", doubles in Java style (`1234567.0`, E-notation from 1e7), integer
fields written as `12.0`, datetimes with `Z`, multiline text with doubled quotes.
"""

from __future__ import annotations

import argparse
import decimal
import json
import pathlib
import random

OBJECT = "Bench_Record__c"
FIELDS = [
    ("Id", "id"), ("IsDeleted", "boolean"), ("Name", "string"), ("Status__c", "picklist"),
    ("Email__c", "email"), ("Phone__c", "phone"), ("Region__c", "picklist"), ("Description__c", "textarea"), ("Amount__c", "currency"),
    ("Quantity__c", "double"), ("Seats__c", "int"), ("Rate__c", "percent"), ("Active__c", "boolean"),
    ("Start_Date__c", "date"), ("CreatedDate", "datetime"), ("SystemModstamp", "datetime"),
]
SOAP = {"id": "tns:ID", "boolean": "xsd:boolean", "string": "xsd:string", "picklist": "xsd:string",
        "email": "xsd:string", "phone": "xsd:string", "textarea": "xsd:string", "currency": "xsd:double", "double": "xsd:double",
        "int": "xsd:int", "percent": "xsd:double", "date": "xsd:date", "datetime": "xsd:dateTime"}


def java_double(value: float) -> str:
    """Java's Double.toString: plain from 1e-3 up to 1e7, E-notation outside."""
    if value == 0:
        return "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if "." in text or "e" in text else text + ".0"
    # the shortest digits that read back as the same double (as Java does since JDK 19), not a
    # fixed 16 digits: `7.296032921E7`, never `7.296032920999999E7` for 72960329.21
    sign, digits, exp = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{len(digits) - 1 + exp}"


def describe() -> dict:
    return {
        "name": OBJECT, "label": "Bench Record", "custom": True, "queryable": True, "keyPrefix": "a0B",
        "fields": [{"name": n, "label": n, "type": t, "soapType": SOAP[t], "nillable": n != "Id",
                    "custom": n.endswith("__c"), "calculated": False, "externalId": False,
                    "compoundFieldName": None, "referenceTo": [], "relationshipName": None,
                    "length": 255 if t in ("string", "email", "picklist") else 0, "precision": 18 if t in
                    ("currency", "double", "percent") else 0, "scale": 2 if t in ("currency", "percent") else 0}
                   for n, t in FIELDS],
    }


def record(i: int, rng: random.Random) -> list[str]:
    day = 1 + i % 28
    seconds = i % 86_400
    stamp = f"2024-03-{day:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{i % 1000:03d}Z"
    description = rng.choice([
        "", "Called about billing", "Line one\nLine two, with a comma", 'Said "urgent", twice',
        "Zoë from Zürich; café order", "N/A", "#N/A",
    ])
    amount = rng.choice([rng.uniform(0, 9_999_999), rng.uniform(1e7, 5e9), None])
    return [
        f"a0B{i:015d}",
        "false",
        f"Record {i}",
        rng.choice(["New", "Open", "Closed", ""]),
        f"user{i % 5000}@example.com" if i % 7 else "",
        f"+1 555 {i % 10_000:04d} {i % 997:03d}",
        rng.choice(["North America", "EMEA", "APAC", "LATAM"]),
        description,
        "" if amount is None else java_double(round(amount, 2)),
        # describe gives Quantity__c scale 0: Salesforce stores (and sends) whole numbers only
        java_double(float(round(rng.uniform(0, 1e9)))),
        "" if i % 11 == 0 else f"{rng.randint(0, 500)}.0",
        java_double(round(rng.uniform(0, 100), 2)),
        rng.choice(["true", "false"]),
        f"2024-{1 + i % 12:02d}-{day:02d}",
        stamp,
        stamp,
    ]


def quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{OBJECT}.describe.json").write_text(json.dumps(describe(), indent=1))
    pages = args.out / f"{OBJECT}.pages"
    pages.mkdir(exist_ok=True)
    header = ",".join(quote(n) for n, _ in FIELDS) + "\n"
    counts = {}
    for page_no, start in enumerate(range(0, args.rows, args.page), start=1):
        name = f"page-{page_no:05d}.csv"
        rows = range(start, min(start + args.page, args.rows))
        with open(pages / name, "w", encoding="utf-8", newline="") as f:
            f.write(header)
            for i in rows:
                f.write(",".join(quote(c) for c in record(i, rng)) + "\n")
        counts[name] = len(rows)
    (pages / "counts.json").write_text(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
