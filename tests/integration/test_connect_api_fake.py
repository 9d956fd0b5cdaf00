"""The Connect API fake, proven with a client we did not write: boto3's connect client, unmodified.

The expected values are computed here from the synthetic contact center's individual contacts
(the world's truth), never from the fake's own metric code; the CSV report written from the same
world must agree with the API for the metrics both have.
"""

from __future__ import annotations

import csv
import datetime as dt

import pytest
from botocore.exceptions import ClientError

UTC = dt.timezone.utc
TODAY = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START, END = TODAY - dt.timedelta(days=1), TODAY
SL20 = {"Name": "SERVICE_LEVEL", "Threshold": [{"Comparison": "LT", "ThresholdValue": 20}]}
ANSWERED20 = {"Name": "SUM_CONTACTS_ANSWERED_IN_X", "Threshold": [{"Comparison": "LT", "ThresholdValue": 20}]}
ANSWERED20_LTE = {"Name": "SUM_CONTACTS_ANSWERED_IN_X", "Threshold": [{"Comparison": "LTE", "ThresholdValue": 20}]}


@pytest.fixture
def fake(connect_api):
    return connect_api(START, END, seed=21)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def metric_pages(client, **request) -> tuple[list[dict], int]:
    """Every MetricResult of a GetMetricDataV2 request, following NextToken (the SDK has no
    paginator for it); also the number of pages."""
    results, pages, token = [], 0, None
    while True:
        answer = client.get_metric_data_v2(**request, **({"NextToken": token} if token else {}))
        results += answer["MetricResults"]
        pages += 1
        token = answer.get("NextToken")
        if not token:
            return results, pages


def values(result: dict) -> dict:
    """{metric name (with threshold): value or None} of one MetricResult."""
    found = {}
    for datum in result["Collections"]:
        metric = datum["Metric"]
        key = metric["Name"]
        for threshold in metric.get("Threshold", []):
            key += f"/{threshold['Comparison']}{threshold['ThresholdValue']:g}"
        found[key] = datum.get("Value")
    return found


def truth(center, queue_id: str | None, agent_id: str | None, lo: int, hi: int) -> dict:
    """A few metrics straight from the contacts, by the admin guide's definitions."""
    ended = [c for c in center.contacts if lo <= c.disconnected < hi
             and (queue_id is None or c.queue_id == queue_id) and (agent_id is None or c.agent_id == agent_id)]
    handled = [c for c in ended if c.connected is not None]
    queued = [c for c in ended if c.enqueued is not None]
    waits = [c.connected - c.enqueued for c in queued if c.outcome == "ANSWERED"]
    return {
        "CONTACTS_HANDLED": len(handled),
        "CONTACTS_ABANDONED": sum(1 for c in queued if c.outcome == "ABANDONED"),
        "ANSWERED_LT20": sum(1 for w in waits if w < 20_000),
        "ANSWERED_LTE20": sum(1 for w in waits if w <= 20_000),
        "MAX_QUEUED_TIME": max((c.left_queue - c.enqueued for c in queued), default=None),
        "HANDLE_MS": sum(c.interaction_ms + c.hold_ms + c.acw_ms for c in handled),
    }


# --------------------------------------------------------------------------------------------
# Listing queues and users


def test_list_queues_and_users_with_the_sdk_paginators(fake):
    client = fake.client()
    pages = client.get_paginator("list_queues").paginate(
        InstanceId=fake.instance_id, QueueTypes=["STANDARD"], PaginationConfig={"PageSize": 4})
    queues = [q for page in pages for q in page["QueueSummaryList"]]
    assert [(q["Id"], q["Arn"], q["Name"]) for q in queues] == [(q["id"], q["arn"], q["name"]) for q in fake.center.queues]
    assert {q["QueueType"] for q in queues} == {"STANDARD"}
    assert any("," in q["Name"] for q in queues) and any('"' in q["Name"] for q in queues)
    both = [q for page in client.get_paginator("list_queues").paginate(InstanceId=fake.instance_id) for q in page["QueueSummaryList"]]
    assert len(both) == len(fake.center.queues) + len(fake.center.agents)  # standard + agent queues

    users = [u for page in client.get_paginator("list_users").paginate(
        InstanceId=fake.instance_arn, PaginationConfig={"PageSize": 3}) for u in page["UserSummaryList"]]
    assert [(u["Id"], u["Arn"], u["Username"]) for u in users] == [(a["id"], a["arn"], a["username"]) for a in fake.center.agents]

    calls = fake.requests("ListQueues")
    assert [c["nextToken"] is None for c in calls[:2]] == [True, False]  # the second page used a token
    assert calls[0]["maxResults"] == "4" and calls[0]["queueTypes"] == ["STANDARD"]
    assert len(fake.requests("ListUsers")) == 3  # 8 users, 3 a page


# --------------------------------------------------------------------------------------------
# GetMetricDataV2 answers


def test_queue_metrics_match_the_contacts(fake):
    center = fake.center
    results, pages = metric_pages(
        fake.client(), ResourceArn=fake.instance_arn, StartTime=START, EndTime=END,
        Interval={"IntervalPeriod": "THIRTY_MIN", "TimeZone": "UTC"},
        Filters=[{"FilterKey": "QUEUE", "FilterValues": [q["arn"] for q in center.queues]}],
        Groupings=["QUEUE"], MaxResults=25,
        Metrics=[{"Name": "CONTACTS_HANDLED"}, {"Name": "CONTACTS_ABANDONED"}, {"Name": "MAX_QUEUED_TIME"},
                 {"Name": "SUM_HANDLE_TIME"}, ANSWERED20, ANSWERED20_LTE, SL20])
    assert pages > 2 and len(results) > 100
    lt_differs_from_lte = False
    for result in results:
        interval = result["MetricInterval"]
        assert interval["Interval"] == "THIRTY_MIN"
        assert interval["EndTime"] - interval["StartTime"] == dt.timedelta(minutes=30)
        queue = next(q for q in center.queues if q["id"] == result["Dimensions"]["QUEUE"])
        assert result["Dimensions"] == {"QUEUE": queue["id"], "QUEUE_ARN": queue["arn"]}
        got = values(result)
        assert len(got) == 7  # every requested metric, with or without a value
        want = truth(center, queue["id"], None, ms(interval["StartTime"]), ms(interval["EndTime"]))
        assert got["CONTACTS_HANDLED"] == want["CONTACTS_HANDLED"]
        assert got["CONTACTS_ABANDONED"] == want["CONTACTS_ABANDONED"]
        assert got["SUM_CONTACTS_ANSWERED_IN_X/LT20"] == want["ANSWERED_LT20"]
        assert got["SUM_CONTACTS_ANSWERED_IN_X/LTE20"] == want["ANSWERED_LTE20"]
        assert got["SUM_HANDLE_TIME"] == want["HANDLE_MS"] / 1000
        if want["MAX_QUEUED_TIME"] is None:
            assert got["MAX_QUEUED_TIME"] is None and got["SERVICE_LEVEL/LT20"] is None
        else:
            assert got["MAX_QUEUED_TIME"] == want["MAX_QUEUED_TIME"] / 1000
            assert 0 <= got["SERVICE_LEVEL/LT20"] <= 100
        lt_differs_from_lte |= want["ANSWERED_LT20"] != want["ANSWERED_LTE20"]
    assert lt_differs_from_lte, "the world should have waits of exactly 20 s"
    # A result per (queue, interval) with activity, nothing else.
    assert len(results) == sum(len(center.active("QUEUE", lo, hi)) for lo, hi in center.intervals())


def test_agent_metrics_match_the_contacts(fake):
    center = fake.center
    results, _ = metric_pages(
        fake.client(), ResourceArn=fake.instance_arn, StartTime=START, EndTime=END,
        Interval={"IntervalPeriod": "THIRTY_MIN"},
        Filters=[{"FilterKey": "AGENT", "FilterValues": [a["id"] for a in center.agents]}],
        Groupings=["AGENT"],
        Metrics=[{"Name": "CONTACTS_HANDLED"}, {"Name": "SUM_ONLINE_TIME_AGENT"}, {"Name": "AGENT_OCCUPANCY"},
                 {"Name": "SUM_HANDLE_TIME"}])
    assert results
    handled_total = 0
    for result in results:
        agent = center.agent_by_id[result["Dimensions"]["AGENT"]]
        assert result["Dimensions"] == {"AGENT": agent["id"], "AGENT_ARN": agent["arn"]}
        interval = result["MetricInterval"]
        got = values(result)
        want = truth(center, None, agent["id"], ms(interval["StartTime"]), ms(interval["EndTime"]))
        assert got["CONTACTS_HANDLED"] == want["CONTACTS_HANDLED"]
        assert got["SUM_HANDLE_TIME"] == want["HANDLE_MS"] / 1000
        assert 0 <= got["SUM_ONLINE_TIME_AGENT"] <= 1800
        assert got["AGENT_OCCUPANCY"] is None or 0 <= got["AGENT_OCCUPANCY"] <= 100
        handled_total += got["CONTACTS_HANDLED"]
    assert handled_total == sum(1 for c in center.contacts if c.connected is not None and ms(START) <= c.disconnected < ms(END))


def test_intervals_follow_the_requested_time_zone(fake):
    client = fake.client()
    request = dict(ResourceArn=fake.instance_arn, StartTime=START, EndTime=END,
                   Filters=[{"FilterKey": "QUEUE", "FilterValues": [q["id"] for q in fake.center.queues]}],
                   Metrics=[{"Name": "CONTACTS_HANDLED"}])
    days = client.get_metric_data_v2(**request, Interval={"IntervalPeriod": "DAY", "TimeZone": "Asia/Tokyo"})["MetricResults"]
    starts = [r["MetricInterval"]["StartTime"].astimezone(UTC) for r in days]
    assert starts == [START - dt.timedelta(hours=9), START + dt.timedelta(hours=15)]  # Tokyo midnights
    total = client.get_metric_data_v2(**request)["MetricResults"]  # TOTAL by default, no grouping
    assert len(total) == 1 and total[0]["Dimensions"] == {}
    assert values(total[0])["CONTACTS_HANDLED"] == truth(fake.center, None, None, ms(START), ms(END))["CONTACTS_HANDLED"]


# --------------------------------------------------------------------------------------------
# The rules, each answered with the model's error


def good_request(fake, **changes) -> dict:
    request = dict(ResourceArn=fake.instance_arn, StartTime=START, EndTime=END,
                   Interval={"IntervalPeriod": "THIRTY_MIN", "TimeZone": "UTC"},
                   Filters=[{"FilterKey": "QUEUE", "FilterValues": [fake.center.queues[0]["id"]]}],
                   Groupings=["QUEUE"], Metrics=[{"Name": "CONTACTS_HANDLED"}])
    request.update(changes)
    return request


def three_months_ago() -> dt.datetime:
    now = dt.datetime.now(UTC)
    month = now.month - 3
    year = now.year + (month <= 0) * -1
    month = month + 12 if month <= 0 else month
    return now.replace(year=year, month=month, day=min(now.day, 28))


RULES = {
    "arn of another instance": (lambda f: {"ResourceArn": f.instance_arn[:-4] + "beef"}, "ResourceNotFoundException", 404),
    "start after end": (lambda f: {"StartTime": END, "EndTime": START}, "InvalidParameterException", 400),
    "end in the future": (lambda f: {"EndTime": dt.datetime.now(UTC) + dt.timedelta(hours=1),
                                     "StartTime": dt.datetime.now(UTC) - dt.timedelta(hours=1)}, "InvalidParameterException", 400),
    "3 days at 30 minutes": (lambda f: {"StartTime": END - dt.timedelta(days=3)}, "InvalidParameterException", 400),
    "35 days in total": (lambda f: {"StartTime": END - dt.timedelta(days=35), "Interval": {"IntervalPeriod": "TOTAL"}},
                         "InvalidParameterException", 400),
    "older than 3 months": (lambda f: {"StartTime": three_months_ago() - dt.timedelta(days=1),
                                       "EndTime": three_months_ago() + dt.timedelta(days=1)}, "InvalidParameterException", 400),
    "no resource filter": (lambda f: {"Filters": [{"FilterKey": "CHANNEL", "FilterValues": ["VOICE"]}]},
                           "InvalidParameterException", 400),
    "six filter keys": (lambda f: {"Filters": [{"FilterKey": k, "FilterValues": ["x"]} for k in
                                               ("QUEUE", "AGENT", "ROUTING_PROFILE", "CHANNEL", "AGENT_HIERARCHY_LEVEL_ONE",
                                                "AGENT_HIERARCHY_LEVEL_TWO")]}, "InvalidParameterException", 400),
    "101 filter values": (lambda f: {"Filters": [{"FilterKey": "QUEUE", "FilterValues": [f"q{i}" for i in range(60)]},
                                                 {"FilterKey": "AGENT", "FilterValues": [f"a{i}" for i in range(41)]}]},
                          "InvalidParameterException", 400),
    "five groupings": (lambda f: {"Groupings": ["QUEUE", "AGENT", "CHANNEL", "ROUTING_PROFILE", "AGENT_HIERARCHY_LEVEL_ONE"]},
                       "InvalidParameterException", 400),
    "21 service levels": (lambda f: {"Metrics": [{"Name": "SERVICE_LEVEL", "Threshold": [{"Comparison": "LT", "ThresholdValue": s}]}
                                                 for s in range(1, 22)]}, "InvalidParameterException", 400),
    "MaxResults 101": (lambda f: {"MaxResults": 101}, "InvalidParameterException", 400),
    "MaxResults 0": (lambda f: {"MaxResults": 0}, "InvalidParameterException", 400),
    "threshold 0": (lambda f: {"Metrics": [{"Name": "SERVICE_LEVEL", "Threshold": [{"Comparison": "LT", "ThresholdValue": 0}]}]},
                    "InvalidParameterException", 400),
    "threshold over a week": (lambda f: {"Metrics": [{**ANSWERED20, "Threshold": [{"Comparison": "LTE", "ThresholdValue": 604801}]}]},
                              "InvalidParameterException", 400),
    "comparison GT": (lambda f: {"Metrics": [{"Name": "SERVICE_LEVEL", "Threshold": [{"Comparison": "GT", "ThresholdValue": 20}]}]},
                      "InvalidParameterException", 400),
    "service level without threshold": (lambda f: {"Metrics": [{"Name": "SERVICE_LEVEL"}]}, "InvalidParameterException", 400),
    "unknown metric": (lambda f: {"Metrics": [{"Name": "CONTACTS_HANDLED_BY_MAGIC"}]}, "InvalidParameterException", 400),
    "agent metric by queue": (lambda f: {"Metrics": [{"Name": "SUM_ONLINE_TIME_AGENT"}]}, "InvalidParameterException", 400),
    "forged NextToken": (lambda f: {"NextToken": "bm90IGEgdG9rZW4="}, "InvalidParameterException", 400),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_broken_rules_get_the_models_errors(fake, rule):
    change, code, status = RULES[rule]
    client = fake.client(parameter_validation=False)  # let the fake, not botocore, judge
    with pytest.raises(ClientError) as caught:
        client.get_metric_data_v2(**good_request(fake, **change(fake)))
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["Error"]["Message"]


def test_limits_are_exclusive_where_the_docs_say_less_than(fake):
    client = fake.client()
    almost_three_days = END - dt.timedelta(days=3) + dt.timedelta(minutes=30)
    client.get_metric_data_v2(**good_request(fake, StartTime=almost_three_days))
    logged = fake.requests("GetMetricDataV2")[-1]
    assert logged["status"] == 200 and logged["EndTime"] - logged["StartTime"] < 3 * 86400


def test_listing_rules(fake):
    client = fake.client(parameter_validation=False)
    with pytest.raises(ClientError) as caught:
        client.list_queues(InstanceId="00000000-0000-4000-8000-000000000000")
    assert (caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == \
        ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as caught:
        client.list_users(InstanceId=fake.instance_id, MaxResults=1001)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"


def test_the_clock_can_be_set_for_the_reach_rule(fake):
    fake.faults(now=(END + dt.timedelta(days=200)).isoformat())
    with pytest.raises(ClientError) as caught:
        fake.client().get_metric_data_v2(**good_request(fake))
    assert "3 months" in caught.value.response["Error"]["Message"]
    fake.faults(now=None)
    assert fake.client().get_metric_data_v2(**good_request(fake))["MetricResults"]


# --------------------------------------------------------------------------------------------
# Throttling


def test_throttling_is_a_429_that_standard_retries_absorb(fake):
    fake.throttle(1)
    once = fake.client(retries={"mode": "standard", "total_max_attempts": 1})
    with pytest.raises(ClientError) as caught:
        once.get_metric_data_v2(**good_request(fake))
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    fake.throttle(2)
    answer = fake.client(retries={"mode": "standard"}).get_metric_data_v2(**good_request(fake))
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert [r["status"] for r in fake.requests("GetMetricDataV2")[-3:]] == [429, 429, 200]


# --------------------------------------------------------------------------------------------
# The report written from the same world agrees with the API


def test_queue_report_agrees_with_the_api(fake, tmp_path):
    center = fake.center
    paths = center.write_reports(tmp_path / "Queue", "queue")
    assert len(paths) == 48
    assert paths[0].name == f"sfIntervalQueue-{(START + dt.timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}.csv"
    rows = []
    for path in paths:
        with path.open(encoding="utf-8", newline="") as f:
            rows += list(csv.DictReader(f))
    # A busy row: contacts handled and some queued contacts answered, so every value is defined.
    row = max(rows, key=lambda r: (int(r["Contacts handled"]), int(r["Contacts queued"])))
    assert row["Service level 20 seconds"] and row["Average handle time"]
    queue = next(q for q in center.queues if q["name"] == row["Queue"])
    start = dt.datetime.strptime(row["StartInterval"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
    end = dt.datetime.strptime(row["EndInterval"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
    answer = fake.client().get_metric_data_v2(**good_request(
        fake, StartTime=start, EndTime=end,
        Filters=[{"FilterKey": "QUEUE", "FilterValues": [queue["id"]]}],
        Metrics=[{"Name": "CONTACTS_HANDLED"}, {"Name": "AVG_HANDLE_TIME"}, ANSWERED20, SL20]))
    (result,) = answer["MetricResults"]
    got = values(result)
    assert got["CONTACTS_HANDLED"] == int(row["Contacts handled"])
    assert got["AVG_HANDLE_TIME"] == pytest.approx(float(row["Average handle time"]), abs=0.0005)
    assert got["SUM_CONTACTS_ANSWERED_IN_X/LT20"] == int(row["Contacts answered in 20 seconds"])
    assert got["SERVICE_LEVEL/LT20"] == pytest.approx(float(row["Service level 20 seconds"].rstrip("%")), abs=0.005)
    # The same queues are in the file as in the API's answer for that interval.
    in_file = {r["Queue"] for r in rows if r["StartInterval"] == row["StartInterval"]}
    assert in_file == {center.queue_by_id[i]["name"] for i in center.active("QUEUE", ms(start), ms(end))}
