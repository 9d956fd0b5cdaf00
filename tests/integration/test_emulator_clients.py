"""Third-party clients, unmodified, against the emulator: jsforce 3 (npm, run by Node), a replay
of the CTI Lambdas' exact HTTP calls, and wire details checked at the HTTP level. Expected values
come from Salesforce's documentation (reference/salesforce-api.md) and the CTI reference
(reference/connect-interval.md), never from the emulator's or cxlake's own code."""

from __future__ import annotations

import csv
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import DEMO_CREDENTIALS, REPO, start_emulator

CLIENTS = REPO / "tests" / "clients"
OBJECTS = REPO / "crates" / "sf-emulator" / "objects"
NS = "amazonconnect__"
QUEUE = NS + "AC_HistoricalQueueMetrics__c"
AGENT = NS + "AC_AgentPerformance__c"
USER_ID = "005cx0000000001AAA"
ORG_ID = "00Dcx0000000001AAA"


def node() -> str:
    path = shutil.which("node")
    if not path:
        pytest.fail("node (20 or later) is required for the jsforce conformance test", pytrace=False)
    if not (CLIENTS / "node_modules" / "jsforce").is_dir():
        pytest.fail("tests/clients/node_modules is missing: run `npm ci` in tests/clients (make test does)",
                    pytrace=False)
    return path


def login(url: str) -> str:
    """A password-flow token, sent as a form body."""
    response = requests.post(f"{url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
        "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
        "password": DEMO_CREDENTIALS["Password"]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# --------------------------------------------------------------------------------------------
# jsforce 3


def test_jsforce_common_calls(cxlake_bin, tmp_path):
    emu = start_emulator(tmp_path, "--bulk-page-size", "100")
    try:
        live = sorted(r["Id"] for r in emu.records("CX_Interaction__c") if not r["IsDeleted"])
        env = {**os.environ, "EMULATOR_URL": emu.url, "SF_CLIENT_ID": DEMO_CREDENTIALS["ConsumerKey"],
               "SF_CLIENT_SECRET": DEMO_CREDENTIALS["ConsumerSecret"],
               "SF_USERNAME": DEMO_CREDENTIALS["Username"], "SF_PASSWORD": DEMO_CREDENTIALS["Password"]}
        run = subprocess.run([node(), str(CLIENTS / "jsforce_calls.js")], cwd=CLIENTS, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        reader = subprocess.run([node(), str(CLIENTS / "jsforce_calls.js"), "--bulk-reader-only"], cwd=CLIENTS,
                                env=env, capture_output=True, text=True, timeout=300)
        records = {r["External_Key__c"]: r for r in emu.records("CX_Interaction__c") if r["External_Key__c"]}
    finally:
        emu.stop()

    def ok(step: str):
        outcome = report[step]
        assert outcome["ok"], f"jsforce {step}: {outcome}"
        return outcome["value"]

    assert ok("login") == {"userId": USER_ID, "organizationId": ORG_ID,
                           "url": f"{emu.url}/id/{ORG_ID}/{USER_ID}", "instanceUrl": emu.url}
    identity = ok("identity")
    assert identity["user_id"] == USER_ID and identity["organization_id"] == ORG_ID
    assert identity["username"] == DEMO_CREDENTIALS["Username"]
    assert identity["rest"] == f"{emu.url}/services/data/v{{version}}/"
    described = dict(map(tuple, ok("describe")["fields"]))
    assert described["AnnualRevenue"] == "currency" and described["BillingAddress"] == "address"
    # REST paging: batchSize=200 (the documented minimum) over 297 live rows → two pages.
    paged = ok("query_paging")
    assert paged["totalSize"] == 297 and sorted(paged["ids"]) == live

    created = ok("create")
    assert created["success"] is True and created["errors"] == [] and created["id"].startswith("001")
    assert ok("retrieve") == {"Id": created["id"], "Name": "jsforce Ltd", "NumberOfEmployees": 12,
                              "type": "Account"}
    assert ok("update") == {"id": created["id"], "success": True, "errors": []}
    # A numeric string for a currency field is taken as the number, as Salesforce does.
    assert ok("retrieve_updated") == {"Name": "jsforce Renamed", "AnnualRevenue": 1250.5}
    assert ok("delete") == {"id": created["id"], "success": True, "errors": []}
    gone = report["retrieve_deleted"]
    assert not gone["ok"] and gone["errorCode"] == "NOT_FOUND", gone

    upserted = ok("upsert_rest")
    assert upserted["first"]["created"] is True and upserted["first"]["success"] is True
    # Update by external ID from API 46.0: 200 with created=false (jsforce runs v62.0).
    assert upserted["second"] == {"id": upserted["first"]["id"], "success": True, "errors": [],
                                  "created": False}
    wrong = report["upsert_wrong_type"]
    assert not wrong["ok"] and wrong["errorCode"] == "JSON_PARSER_ERROR", wrong
    assert "Cannot deserialize instance of int from VALUE_STRING value many" in wrong["error"], wrong
    collections = ok("upsert_collections")
    assert [r["success"] for r in collections] == [True, True]
    assert [r["created"] for r in collections] == [False, True]
    assert collections[0]["id"] == upserted["first"]["id"]

    # Bulk 2.0 query, page by page with jsforce's job API: the 297 seeded rows plus the two
    # upserted ones, in three complete CSV pages of 100/100/99.
    pages = ok("bulk_query_pages")
    assert [p["rows"] for p in pages] == [100, 100, 99]
    assert pages[-1]["locator"] == "null"
    assert sorted(i for p in pages for i in p["ids"]) == sorted(live + [upserted["first"]["id"], collections[1]["id"]])
    jsforce_reader(reader)

    ingest = ok("bulk_ingest_upsert")
    ok_rows = {r["External_Key__c"]: r for r in ingest["successfulResults"]}
    assert set(ok_rows) == {"JS-BULK-1", "JS-1"}
    assert ok_rows["JS-BULK-1"]["sf__Created"] == "true" and ok_rows["JS-1"]["sf__Created"] == "false"
    [failed] = ingest["failedResults"]
    assert failed["External_Key__c"] == "JS-BULK-2"
    assert failed["sf__Error"].startswith("INVALID_TYPE_ON_FIELD_IN_RECORD:"), failed
    assert ingest["unprocessedRecords"] == []
    # Empty cell = leave unchanged (reference §3.4): JS-1 keeps Hold_Count__c 3 from the REST upsert.
    assert records["JS-1"]["Name"] == "bulk renamed" and records["JS-1"]["Hold_Count__c"] == 3
    assert records["JS-BULK-1"]["Hold_Count__c"] == 1 and "JS-BULK-2" not in records
    assert records["JS-3"]["Name"] == "new via collections"

    limits = ok("limits")["DailyApiRequests"]
    assert limits["Max"] > 0 and 0 <= limits["Remaining"] <= limits["Max"]


def jsforce_reader(run: subprocess.CompletedProcess) -> None:
    """jsforce 3.10's `bulk2.query` pipes every results page into one CSV parser stream, which the
    first page's end closes: the second page's data is written after end and the process dies
    with an unhandled ERR_STREAM_WRITE_AFTER_END (a jsforce bug: Salesforce serves every page as
    a complete CSV with its own header, and the page-by-page read above gets every row). This
    pins what jsforce does, so a jsforce fix shows up here."""
    assert run.returncode != 0, f"jsforce's multi-page reader now works: {run.stdout[:300]}"
    assert "ERR_STREAM_WRITE_AFTER_END" in run.stderr, run.stderr


# --------------------------------------------------------------------------------------------
# The CTI Lambdas (sfIntervalQueue / sfIntervalAgent), replayed call for call


def lambda_replay(url: str, report: str, body: str, *, region: str, event_time: str,
                  version: str = "v42.0") -> list[int]:
    """The HTTP calls of one Lambda run over one CSV (reference connect-interval.md §1.4, §3.3):
    a describe with the cached (here empty) token, a 401, a password grant with its parameters in
    the query string (body `null`, as `requests.post(data=json.dumps(None), params=...)` sends),
    the describe again, then one PATCH upsert by external ID per row with string values.
    Returns the status of each PATCH."""
    sobject = QUEUE if report == "queue" else AGENT
    grouping = "queue" if report == "queue" else "agent"
    conn_to_agent = ("contacts handled connected to agent timestamp" if report == "queue"
                     else "contacts handled on connected to agent timestamp")
    special = {grouping: "AC_Object_Name__c",
               "average agent interaction and customer hold time": "Avg_agent_interaction_and_cust_hold_time__c",
               "agent non-response without customer abandons": "Agent_non_response_without_cust_abandons__c",
               conn_to_agent: "Contacts_handled_conn_to_agent_timestamp__c",
               "non-productive time": "Nonproductive_time__c"}

    def label(key: str) -> str:
        key = re.sub(r"[()]+", "", key).replace("\ufeff", "")
        if key.lower() in special:
            return NS + special[key.lower()]
        return NS + re.sub(r"[-\s]+", "_", key) + "__c"

    headers = {"Authorization": "Bearer ", "Content-Type": "application/json"}
    describe_url = f"{url}/services/data/{version}/sobjects/{sobject}/describe"
    first = requests.get(describe_url, params={}, headers=headers, timeout=30)
    assert first.status_code == 401, first.text
    grant = {"grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
             "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
             "password": DEMO_CREDENTIALS["Password"] + DEMO_CREDENTIALS["AccessToken"]}
    token = requests.post(f"{url}/services/oauth2/token", data=json.dumps(None), params=grant,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert token.status_code == 200, token.text
    headers = {"Authorization": "Bearer %s" % token.json()["access_token"], "Content-Type": "application/json"}
    described = requests.get(describe_url, params={}, headers=headers, timeout=30)
    assert described.status_code == 200, described.text
    mapping = {f["name"].lower(): f["name"] for f in described.json()["fields"]}
    statuses = []
    for raw in csv.DictReader(body.split("\n")):
        record = {label(k): (v.replace("%", "") if len(v) > 0 else None) for k, v in raw.items()}
        record[NS + "Created_Date__c"] = event_time
        name = record[NS + "AC_Object_Name__c"]
        if report == "queue":
            name = re.sub(r"[-\s\W]+", "", name)
        record_id = f"{name}{record[NS + 'StartInterval__c']}"
        if (NS + "Region__c").lower() in mapping:
            record[NS + "Region__c"] = region
            record_id += region
        filtered = {mapping[k.lower()]: v for k, v in record.items() if k.lower() in mapping}
        patch = requests.patch(f"{url}/services/data/{version}/sobjects/{sobject}/{NS}AC_Record_Id__c/{record_id}",
                               data=json.dumps(filtered), headers=headers, timeout=30)
        assert patch.status_code // 100 == 2, f"{record_id}: {patch.status_code} {patch.text}"
        statuses.append(patch.status_code)
    return statuses


QUEUE_CSV = (
    "\ufeffQueue,StartInterval,EndInterval,After contact work time,Agent on contact time,Non-Productive Time,"
    "Average agent interaction and customer hold time,Contacts handled,Service level 20 seconds,"
    "Agent answer rate,Contacts abandoned,Lunch time,Adherence\r\n"
    "BasicQueue,2018-11-23T16:00:00.000Z,2018-11-23T16:30:00.000Z,461,991,18,531,12,100.00%,66.67%,0,120,\r\n"
    "Sales EU,2018-11-23T16:00:00.000Z,2018-11-23T16:30:00.000Z,30.3,,0,,3,0.00%,,1,,95.00%\r\n"
)
EVENT_TIME = "2018-11-23T16:45:27.123Z"


def expected_queue_row(name: str, values: dict, *, region: str | None) -> dict:
    """A queue row as the Lambda writes it: field names from reference §3.1–3.2."""
    row = {NS + "AC_Object_Name__c": name, NS + "StartInterval__c": "2018-11-23T16:00:00.000Z",
           NS + "EndInterval__c": "2018-11-23T16:30:00.000Z", NS + "Created_Date__c": EVENT_TIME}
    if region:
        row[NS + "Region__c"] = region
    row.update({NS + k: v for k, v in values.items()})
    return row


BASIC = {"After_contact_work_time__c": 461.0, "Agent_on_contact_time__c": 991.0, "Nonproductive_time__c": 18.0,
         "Avg_agent_interaction_and_cust_hold_time__c": 531.0, "Contacts_handled__c": 12.0,
         "Service_level_20_seconds__c": 100.0, "Agent_answer_rate__c": 66.67, "Contacts_abandoned__c": 0.0}
SALES_EU = {"After_contact_work_time__c": 30.3, "Agent_on_contact_time__c": None, "Nonproductive_time__c": 0.0,
            "Avg_agent_interaction_and_cust_hold_time__c": None, "Contacts_handled__c": 3.0,
            "Service_level_20_seconds__c": 0.0, "Agent_answer_rate__c": None, "Contacts_abandoned__c": 1.0}


def assert_rows(records: list[dict], expected: dict[str, dict]) -> None:
    by_key = {r[NS + "AC_Record_Id__c"]: r for r in records}
    assert set(by_key) == set(expected)
    for key, fields in expected.items():
        got = {k: by_key[key].get(k) for k in fields}
        assert got == fields, key


def test_lambda_replay_writes_what_the_queue_lambda_would(cxlake_bin, tmp_path):
    emu = start_emulator(tmp_path, "--no-seed")
    try:
        assert lambda_replay(emu.url, "queue", QUEUE_CSV, region="us-east-1", event_time=EVENT_TIME) == [201, 201]
        expected = {
            "BasicQueue2018-11-23T16:00:00.000Zus-east-1": expected_queue_row("BasicQueue", BASIC, region="us-east-1"),
            # Non-word characters leave the queue name in the key, not in AC_Object_Name__c.
            "SalesEU2018-11-23T16:00:00.000Zus-east-1": expected_queue_row("Sales EU", SALES_EU, region="us-east-1"),
        }
        records = emu.records(QUEUE)
        assert_rows(records, expected)
        # The default object has no Lunch_time__c or Adherence__c: both columns are dropped.
        assert all(NS + "Lunch_time__c" not in r and NS + "Adherence__c" not in r for r in records)
        # The same file again: updates by external ID, 204 at the Lambdas' default v42.0.
        assert lambda_replay(emu.url, "queue", QUEUE_CSV, region="us-east-1", event_time=EVENT_TIME) == [204, 204]
        assert_rows(emu.records(QUEUE), expected)
    finally:
        emu.stop()


def test_lambda_replay_follows_the_orgs_fields(cxlake_bin, tmp_path):
    """An org without Region__c (older package) and with a custom-status field: the key has no
    region and Lunch time is written."""
    objects = tmp_path / "objects"
    objects.mkdir()
    describe = json.loads((OBJECTS / f"{QUEUE}.json").read_text())
    describe["fields"] = [f for f in describe["fields"] if f["name"] != NS + "Region__c"]
    describe["fields"].append({"name": NS + "Lunch_time__c", "type": "double", "label": "Lunch time"})
    (objects / "queue.json").write_text(json.dumps(describe))
    emu = start_emulator(tmp_path, "--no-seed", "--objects", str(objects))
    try:
        assert lambda_replay(emu.url, "queue", QUEUE_CSV, region="us-east-1", event_time=EVENT_TIME) == [201, 201]
        assert_rows(emu.records(QUEUE), {
            "BasicQueue2018-11-23T16:00:00.000Z": expected_queue_row(
                "BasicQueue", {**BASIC, "Lunch_time__c": 120.0}, region=None),
            "SalesEU2018-11-23T16:00:00.000Z": expected_queue_row(
                "Sales EU", {**SALES_EU, "Lunch_time__c": None}, region=None),
        })
    finally:
        emu.stop()


def test_lambda_replay_agent_report(cxlake_bin, tmp_path):
    body = ("Agent,StartInterval,EndInterval,Agent First Name,Contacts handled,Occupancy,"
            "Contacts handled (on connected to agent timestamp)\n"
            "jane.doe@example.com,2018-11-23T16:00:00.000Z,2018-11-23T16:30:00.000Z,Jane,7,45.50%,6\n")
    emu = start_emulator(tmp_path, "--no-seed")
    try:
        assert lambda_replay(emu.url, "agent", body, region="eu-west-1", event_time=EVENT_TIME) == [201]
        [record] = emu.records(AGENT)
        # The agent login is not sanitised in the key (reference §3.3).
        assert record[NS + "AC_Record_Id__c"] == "jane.doe@example.com2018-11-23T16:00:00.000Zeu-west-1"
        assert record[NS + "AC_Object_Name__c"] == "jane.doe@example.com"
        assert record[NS + "Agent_First_Name__c"] == "Jane"
        assert record[NS + "Contacts_handled__c"] == 7.0 and record[NS + "Occupancy__c"] == 45.5
        assert record[NS + "Contacts_handled_conn_to_agent_timestamp__c"] == 6.0
        assert record[NS + "Region__c"] == "eu-west-1"
    finally:
        emu.stop()


# --------------------------------------------------------------------------------------------
# Wire details


def raw_get(url: str, path: str, token: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP/1.1 GET whose header names come back exactly as sent (http.client keeps case)."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheaders(), body


def test_header_names_have_salesforce_casing(emulator):
    token = login(emulator.url)
    job = requests.post(f"{emulator.url}/services/data/v62.0/jobs/query", headers={
        "Authorization": f"Bearer {token}"}, json={"operation": "query", "query": "SELECT Id FROM Account"},
        timeout=30).json()
    for _ in range(50):
        state = requests.get(f"{emulator.url}/services/data/v62.0/jobs/query/{job['id']}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["state"]
        if state == "JobComplete":
            break
        time.sleep(0.05)
    status, headers, _ = raw_get(emulator.url, f"/services/data/v62.0/jobs/query/{job['id']}/results?maxRecords=10",
                                 token)
    names = [name for name, _ in headers]
    assert status == 200
    for wanted in ("Sforce-Locator", "Sforce-NumberOfRecords", "Content-Type"):
        assert wanted in names, names
    status, headers, _ = raw_get(emulator.url, "/services/data/v62.0/limits", "expired")
    assert status == 401 and ("WWW-Authenticate", "Token") in headers, headers


def test_rest_resources_clients_rely_on(emulator):
    token = login(emulator.url)
    auth = {"Authorization": f"Bearer {token}"}
    base = emulator.url

    # Token parameters in the query string, empty body.
    grant = {"grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
             "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
             "password": DEMO_CREDENTIALS["Password"]}
    issued = requests.post(f"{base}/services/oauth2/token", params=grant, timeout=30)
    assert issued.status_code == 200, issued.text
    assert issued.json()["id"] == f"{base}/id/{ORG_ID}/{USER_ID}"
    refused = requests.post(f"{base}/services/oauth2/token", params={**grant, "password": "wrong"}, timeout=30)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "authentication failure"}

    info = requests.get(f"{base}/services/oauth2/userinfo", headers=auth, timeout=30)
    assert info.status_code == 200, info.text
    assert info.json()["user_id"] == USER_ID and info.json()["preferred_username"] == DEMO_CREDENTIALS["Username"]
    identity = requests.get(issued.json()["id"], headers=auth, timeout=30).json()
    assert identity["username"] == DEMO_CREDENTIALS["Username"] and identity["organization_id"] == ORG_ID

    # The integration user is a User record; the Organization is queryable.
    users = requests.get(f"{base}/services/data/v62.0/query", headers=auth, timeout=30, params={
        "q": f"SELECT Id, Username FROM User WHERE Id = '{USER_ID}'"}).json()
    assert [r["Username"] for r in users["records"]] == [DEMO_CREDENTIALS["Username"]]
    org = requests.get(f"{base}/services/data/v62.0/query", headers=auth, timeout=30, params={
        "q": "SELECT Id, IsSandbox, NamespacePrefix FROM Organization"}).json()
    assert [(r["Id"], r["IsSandbox"], r["NamespacePrefix"]) for r in org["records"]] == [(ORG_ID, False, None)]

    # One version's resources; paths with a doubled slash after the host.
    resources = requests.get(f"{base}//services/data/v62.0", headers=auth, timeout=30)
    assert resources.status_code == 200, resources.text
    assert resources.json()["sobjects"] == "/services/data/v62.0/sobjects"
    assert resources.json()["identity"] == f"{base}/id/{ORG_ID}/{USER_ID}"

    # query?columns=true: column metadata, no records.
    columns = requests.get(f"{base}/services/data/v62.0/query", headers=auth, timeout=30, params={
        "q": "SELECT Id, Name, Owner.Name FROM Account", "columns": "true"}).json()
    assert [c["columnName"] for c in columns["columnMetadata"]] == ["Id", "Name", "Owner"]
    assert [c["columnName"] for c in columns["columnMetadata"][2]["joinColumns"]] == ["Name"]
    assert columns["entityName"] == "Account"

    # Create → 201 {id, success, errors}; get/patch/delete by id.
    created = requests.post(f"{base}/services/data/v62.0/sobjects/Account", headers=auth, timeout=30,
                            json={"Name": "REST Ltd", "NumberOfEmployees": "40"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["success"] is True and body["errors"] == [] and set(body) == {"id", "success", "errors"}
    url = f"{base}/services/data/v62.0/sobjects/Account/{body['id']}"
    assert requests.get(url, headers=auth, timeout=30).json()["NumberOfEmployees"] == 40
    assert requests.patch(url, headers=auth, json={"Name": "REST Two"}, timeout=30).status_code == 204
    bad = requests.patch(url, headers=auth, json={"NumberOfEmployees": True}, timeout=30)
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "JSON_PARSER_ERROR", bad.text
    unknown = requests.patch(url, headers=auth, json={"Nope__c": 1}, timeout=30)
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_FIELD", unknown.text
    read_only = requests.patch(url, headers=auth, json={"CreatedDate": "2020-01-01T00:00:00Z"}, timeout=30)
    assert read_only.status_code == 400, read_only.text
    assert read_only.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert requests.delete(url, headers=auth, timeout=30).status_code == 204
    assert requests.get(url, headers=auth, timeout=30).status_code == 404
    assert requests.delete(url, headers=auth, timeout=30).json()[0]["errorCode"] == "ENTITY_IS_DELETED"

    # Upsert by a field that is not an external ID: 404 NOT_FOUND.
    not_external = requests.patch(f"{base}/services/data/v62.0/sobjects/Account/Name/x", headers=auth,
                                  json={}, timeout=30)
    assert not_external.status_code == 404 and not_external.json()[0]["errorCode"] == "NOT_FOUND"
