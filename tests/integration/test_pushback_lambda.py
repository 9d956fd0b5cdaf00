"""cxlake as a drop-in replacement for the CTI adapter's sfIntervalQueue/sfIntervalAgent Lambdas:
the same external IDs (Python 3 `re` sanitising of queue names, agent logins verbatim, the
StartInterval text, the AWS region when the object has Region__c), only new or changed records
sent on later runs, failed records retried, and an org full of Lambda-written records updated,
never duplicated. Expected keys are computed here with Python's `re`, as the Lambdas do."""

from __future__ import annotations

import csv
import io
import re
import unicodedata

from conftest import connect_job
from fixtures import file_name, interval, queue_report, write
from test_pushback import NS, OBJECT, calls, org_records, pushback_job

AGENT_OBJECT = "amazonconnect__AC_AgentPerformance__c"
REGION = "eu-west-1"


def lambda_queue_key(name: str, start: str, region: str | None) -> str:
    """sfIntervalQueue.py: re.sub(r'[-\\s\\W]+', '', queue) + StartInterval (+ region)."""
    return re.sub(r"[-\s\W]+", "", name) + start + (region or "")


# Names a Connect admin can give a queue; none collide after sanitising.
QUEUE_NAMES = [
    "Sales-EU West",
    "Café Olé",
    unicodedata.normalize("NFD", "Café Olé Nord"),  # decomposed accents: the marks are \W
    "हिन्दी सहायता",  # Devanagari vowel signs and virama are marks: \W in Python
    "客服 一线",
    "دعم العملاء",
    "support_tier_2",
    "Sales, EU (Tier 1)!",
    'Support "Tier 2"',
    "a\u00a0b\u3000c\u2003d\te\u1680f\u202fg",  # NBSP, ideographic space, em space, tab, …
    "Ⅻ ½ ²",  # letter and other numbers are \w
    "zero\u200bwidth",  # a format character (Cf)
    "emoji 😀 desk",
]


def csv_report(folder, name: str, header: list[str], rows: list[list[str]]):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write(folder, name, text.getvalue())


def queue_names_report(folder, start: str, names=QUEUE_NAMES):
    s, e = interval(start)
    return csv_report(folder, file_name(e), ["Queue", "StartInterval", "EndInterval", "Contacts handled"],
                      [[n, s, e, str(i + 1)] for i, n in enumerate(names)])


def test_queue_keys_equal_python_re_with_the_environment_region(emulator, cx, tmp_path):
    queue_names_report(tmp_path / "reports", "2024-03-10T16:00Z")
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    result = cx("run", pushback_job(tmp_path, emulator.url), env={"AWS_REGION": REGION})
    assert result.code == 0, result
    start = "2024-03-10T16:00:00.000Z"
    expected = {lambda_queue_key(n, start, REGION): n for n in QUEUE_NAMES}
    assert len(expected) == len(QUEUE_NAMES)
    records = org_records(emulator)
    assert set(records) == set(expected), sorted(set(records) ^ set(expected))
    for key, name in expected.items():
        assert records[key][NS + "AC_Object_Name__c"] == name
        assert records[key][NS + "Region__c"] == REGION
    assert f"region: {REGION}" in result.stdout, result


def test_agent_logins_are_not_sanitised(emulator, cx, tmp_path):
    s, e = interval("2024-03-10T16:00Z")
    logins = ["jane.doe@example.com", "o'brien-smith", "lena müller", "客服_01"]
    csv_report(tmp_path / "reports" / "agent", file_name(e, "sfIntervalAgent"),
               ["Agent", "StartInterval", "EndInterval", "Contacts handled"],
               [[login, s, e, "3"] for login in logins])
    agent = connect_job(tmp_path, file="connect-agent.toml", source="file://reports/agent/", report="agent")
    assert cx("run", agent).code == 0
    job = pushback_job(tmp_path, emulator.url, file="pushback-agent.toml")
    job.write_text(job.read_text().replace('report = "queue"', 'report = "agent"')
                   .replace('name = "pushback-queue"', 'name = "pushback-agent"'))
    result = cx("run", job, env={"AWS_DEFAULT_REGION": "ap-south-1"})
    assert result.code == 0, result
    keys = {r[NS + "AC_Record_Id__c"] for r in emulator.records(AGENT_OBJECT)}
    # sfIntervalAgent.py: "%s%s" % (agent, StartInterval), then the region.
    assert keys == {login + s + "ap-south-1" for login in logins}


def test_region_off_or_missing_leaves_keys_bare_and_says_why(emulator, cx, tmp_path):
    queue_names_report(tmp_path / "reports", "2024-03-10T16:00Z", ["Sales EU"])
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    off = cx("run", pushback_job(tmp_path, emulator.url, region=""), env={"AWS_REGION": REGION})
    assert off.code == 0, off
    assert 'region = "" in the job' in off.stdout, off
    record = org_records(emulator)["SalesEU2024-03-10T16:00:00.000Z"]
    assert record.get(NS + "Region__c") is None
    # No region anywhere (the test environment has no AWS_REGION, profile or instance metadata).
    none = cx("run", pushback_job(tmp_path, emulator.url, file="none.toml"), "--full")
    assert none.code == 0, none
    assert "no AWS region in the environment" in none.stdout, none
    assert set(org_records(emulator)) == {"SalesEU2024-03-10T16:00:00.000Z"}


def upserts(emulator) -> int:
    stats = emulator.stats()
    return stats.get("collections", 0) + stats.get("ingest_create", 0)


def test_unchanged_rerun_sends_nothing_and_one_changed_interval_sends_one(emulator, cx, tmp_path):
    reports = tmp_path / "reports"
    queue_report(reports, "2024-03-10T16:00Z", [("Sales", "10"), ("Support", "4")])
    queue_report(reports, "2024-03-10T16:30Z", [("Sales", "12"), ("Support", "5")])
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    job = pushback_job(tmp_path, emulator.url)
    window = ("--from", "2024-03-10", "--to", "2024-03-10")
    first = cx("run", job, *window)
    assert first.code == 0 and "(4 created, 0 updated, 0 rejected)" in first.stdout, first
    before = upserts(emulator)
    assert before == 1

    # The same day again: read, compared, nothing sent.
    again = cx("run", job, *window)
    assert again.code == 0, again
    assert "0 records from 1 days" in again.stdout, again
    assert "unchanged since the last push: 4 records not sent (about 1 upsert calls saved)" in again.stdout, again
    assert upserts(emulator) == before
    assert calls(again) == 1  # the describe

    # A re-export restates one queue's interval with a new value: that record alone is sent.
    queue_report(reports, "2024-03-10T16:30Z", [("Sales", "13")], exported="2024-03-10T18:00Z")
    assert cx("run", tmp_path / "connect.toml").code == 0
    changed = cx("run", job)
    assert changed.code == 0, changed
    assert "1 records from 1 days" in changed.stdout and "(0 created, 1 updated, 0 rejected)" in changed.stdout, changed
    assert upserts(emulator) == before + 1
    assert org_records(emulator)["Sales2024-03-10T16:30:00.000Z"][NS + "Contacts_handled__c"] == 13

    # --full re-sends the window.
    full = cx("run", job, *window, "--full")
    assert full.code == 0 and "(0 created, 4 updated, 0 rejected)" in full.stdout, full


def test_failed_records_stay_pending_and_are_sent_next_run(emulator, cx, tmp_path):
    queue_report(tmp_path / "reports", "2024-03-10T16:00Z", [("Sales", "10"), ("Bad Queue", "1")])
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    emulator.faults(fail_ingest_rows_matching={"field": NS + "AC_Object_Name__c", "value": "Bad Queue",
                                               "error": "UNABLE_TO_LOCK_ROW:busy"})
    job = pushback_job(tmp_path, emulator.url)
    first = cx("run", job)
    assert first.code == 3 and "(1 created, 0 updated, 1 rejected)" in first.stdout, first
    emulator.admin("DELETE", "faults")
    # No new lake data: the run reads the pending day and sends only the record that failed.
    second = cx("run", job)
    assert second.code == 0, second
    assert "1 records from 1 days" in second.stdout and "(1 created, 0 updated, 0 rejected)" in second.stdout, second
    assert set(org_records(emulator)) == {"Sales2024-03-10T16:00:00.000Z", "BadQueue2024-03-10T16:00:00.000Z"}
    third = cx("run", job)
    assert third.code == 0 and "0 records from 0 days" in third.stdout, third


def test_migration_updates_every_lambda_record_and_creates_none(emulator, cx, tmp_path):
    reports = tmp_path / "reports"
    names = ["Sales-EU West", "हिन्दी सहायता", "Support \"Tier 2\""]
    for start in ("2024-03-10T16:00Z", "2024-03-10T16:30Z"):
        queue_names_report(reports, start, names)
    assert cx("run", connect_job(tmp_path, file="connect.toml")).code == 0
    # The org as the Lambdas left it: keys with the region, Region__c set.
    lambda_records = []
    for start in ("2024-03-10T16:00Z", "2024-03-10T16:30Z"):
        s, e = interval(start)
        for n in names:
            lambda_records.append({NS + "AC_Record_Id__c": lambda_queue_key(n, s, REGION), NS + "AC_Object_Name__c": n,
                                   NS + "StartInterval__c": s, NS + "Region__c": REGION, NS + "Contacts_handled__c": 0})
    emulator.admin("POST", f"objects/{OBJECT}/records", lambda_records)
    job = pushback_job(tmp_path, emulator.url)
    env = {"AWS_REGION": REGION}

    dry = cx("run", job, "--dry-run", env=env)
    assert dry.code == 0, dry
    assert "would send 6 records" in dry.stdout, dry
    assert "would update 6, would create 0" in dry.stdout, dry
    assert upserts(emulator) == 0 and len(emulator.records(OBJECT)) == 6

    result = cx("run", job, env=env)
    assert result.code == 0, result
    assert "(0 created, 6 updated, 0 rejected)" in result.stdout, result
    records = org_records(emulator)
    assert set(records) == {r[NS + "AC_Record_Id__c"] for r in lambda_records}
    assert {r[NS + "Contacts_handled__c"] for r in records.values()} == {1, 2, 3}

    # Without the region the keys would not match: the dry run says every record is new.
    bare = cx("run", pushback_job(tmp_path, emulator.url, region="", file="bare.toml"), "--dry-run", "--full", env=env)
    assert bare.code == 0 and "would update 0, would create 6" in bare.stdout, bare


def lambda_keys_of_reports(folder, grouping: str, region: str) -> set[str]:
    """The external IDs the Lambdas would write for every report file in `folder`, read the way
    they read it: the whole body decoded, split on '\\n', csv.DictReader, BOM stripped from headers."""
    keys = set()
    for path in sorted(folder.glob("*.csv")):
        rows = csv.DictReader(path.read_bytes().decode().split("\n"))
        for raw in rows:
            record = {k.replace("\ufeff", ""): v for k, v in raw.items()}
            name = record[grouping]
            if grouping == "Queue":
                name = re.sub(r"[-\s\W]+", "", name)
            keys.add("%s%s%s" % (name, record["StartInterval"], region))
    return keys


def test_demo_jobs_write_the_lambdas_keys(emulator, cx, tmp_path):
    """Acceptance: the demo jobs with AWS_REGION set write exactly the Lambdas' keys, and an
    unchanged rerun sends nothing."""
    import shutil

    from conftest import REPO

    shutil.copytree(REPO / "jobs" / "demo", tmp_path / "demo")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {"AWS_REGION": REGION, "CXLAKE_SALESFORCE_LOGIN_URL": emulator.url}
    for job in ("connect-queue", "connect-agent"):
        result = cx("run", f"demo/{job}.toml")
        assert result.code == 0, result
    reports = tmp_path / "examples" / "connect" / "Reports" / "SFDC"
    first = {}
    for job, sobject, folder, grouping in (("pushback-queue", OBJECT, "Queue", "Queue"),
                                           ("pushback-agent", AGENT_OBJECT, "Agent", "Agent")):
        result = cx("run", f"demo/{job}.toml", env=env)
        assert result.code == 0, result
        first[job] = calls(result)
        keys = [r[NS + "AC_Record_Id__c"] for r in emulator.records(sobject)]
        assert len(keys) == len(set(keys))
        assert set(keys) == lambda_keys_of_reports(reports / folder, grouping, REGION), job
    window = ("--from", "2024-03-08", "--to", "2024-03-12")
    for job in ("pushback-queue", "pushback-agent"):
        before = upserts(emulator)
        full = cx("run", f"demo/{job}.toml", "--full", *window, env=env)
        assert full.code == 0 and "(0 created, " in full.stdout, full
        assert upserts(emulator) > before
        before = upserts(emulator)
        unchanged = cx("run", f"demo/{job}.toml", *window, env=env)
        assert unchanged.code == 0 and " 0 records from " in unchanged.stdout, unchanged
        print(f"{job}: first run {first[job]} API calls, unchanged rerun {calls(unchanged)}")
        assert calls(unchanged) == 1  # the describe; no upsert
        assert upserts(emulator) == before


# --------------------------------------------------------------------------------------------
# Org shapes: objects loaded from describe JSON (`cxlake emulator --objects DIR`)

def org_with(tmp_path, sobject: str, *, add: list[dict] = (), drop: tuple[str, ...] = ()):
    """Starts an emulator whose `sobject` is the default definition plus `add`, minus `drop`."""
    import json

    from conftest import REPO, start_emulator

    definition = json.loads((REPO / "crates" / "sf-emulator" / "objects" / f"{sobject}.json").read_text())
    definition["fields"] = [f for f in definition["fields"] if f["name"] not in drop] + list(add)
    folder = tmp_path / "objects"
    folder.mkdir(exist_ok=True)
    (folder / f"{sobject}.json").write_text(json.dumps(definition))
    return start_emulator(tmp_path, "--objects", str(folder))


def lunch_report(tmp_path):
    s, e = interval("2024-03-10T16:00Z")
    csv_report(tmp_path / "reports" / "agent", file_name(e, "sfIntervalAgent"),
               ["Agent", "StartInterval", "EndInterval", "Contacts handled", "Lunch time"],
               [["jdoe", s, e, "3", "1200"], ["akim", s, e, "5", ""]])
    agent = connect_job(tmp_path, file="connect-agent.toml", source="file://reports/agent/", report="agent")
    assert cx_run(tmp_path, "run", agent).code == 0
    job = pushback_job(tmp_path, "http://unused", file="pushback-agent.toml")
    return s, job


def cx_run(tmp_path, *args, env=None):
    from conftest import run_cxlake

    return run_cxlake(args, tmp_path, env)


def agent_job(job, url):
    text = job.read_text().replace('report = "queue"', 'report = "agent"').replace(
        'name = "pushback-queue"', 'name = "pushback-agent"')
    job.write_text(re.sub(r'login_url = "[^"]*"', f'login_url = "{url}"', text))
    return job


def test_custom_status_column_goes_to_the_orgs_lambda_field(cxlake_bin, tmp_path):
    s, job = lunch_report(tmp_path)
    # The admin created the field as the Lambda names it; describe matching ignores case.
    emulator = org_with(tmp_path, AGENT_OBJECT, add=[{"name": NS + "Lunch_time__c", "label": "Lunch time",
                                                     "type": "double", "precision": 18, "scale": 2}])
    try:
        result = cx_run(tmp_path, "run", agent_job(job, emulator.url))
        assert result.code == 0, result
        assert "lunch_time_seconds ->" not in result.stdout, result
        records = {r[NS + "AC_Record_Id__c"]: r for r in emulator.records(AGENT_OBJECT)}
        assert records["jdoe" + s][NS + "Lunch_time__c"] == 1200
        assert records["akim" + s][NS + "Lunch_time__c"] is None
        assert records["jdoe" + s][NS + "Contacts_handled__c"] == 3
    finally:
        emulator.stop()


def test_custom_status_without_a_field_is_listed_as_not_pushed(emulator, tmp_path):
    # The default org's agent object has no Lunch_time__c.
    s, job = lunch_report(tmp_path)
    result = cx_run(tmp_path, "run", agent_job(job, emulator.url), env={"AWS_REGION": REGION})
    assert result.code == 0, result
    assert f"lunch_time_seconds -> {NS}lunch_time__c: no such field on {AGENT_OBJECT}" in result.stdout, result
    records = {r[NS + "AC_Record_Id__c"]: r for r in emulator.records(AGENT_OBJECT)}
    assert set(records) == {"jdoe" + s + REGION, "akim" + s + REGION}
    assert records["jdoe" + s + REGION][NS + "Contacts_handled__c"] == 3
    assert not any("lunch" in f.lower() for r in records.values() for f in r)
