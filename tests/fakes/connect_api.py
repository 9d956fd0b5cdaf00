"""The Amazon Connect API (restJson1, as botocore's service model `connect/2017-08-08` defines it),
answering from a `ContactCenter`: GetMetricDataV2, ListQueues and ListUsers.

It enforces GetMetricDataV2's documented rules and answers a broken one with the model's error
shapes (JSON body `{"Message": ...}`, header `x-amzn-ErrorType`, the shape's HTTP status):

* ResourceArn is not this instance's ARN: ResourceNotFoundException (404). ListQueues/ListUsers with
  another InstanceId: the same.
* Everything else about the request (times, span, reach, filters, groupings, metrics, thresholds,
  MaxResults, NextToken, TimeZone): InvalidParameterException (400), the model's error for "one or
  more of the specified parameters are not valid" (InvalidRequestException is "the request is not
  valid" and carries a Reason union for attached files only).
* Throttling (a fault set through the admin API): ThrottlingException (429).

Admin API (not Connect's): `POST /__fake/faults` with {"throttle_next": n} (the next n calls are
throttled), {"throttle_rate": r, "seed": s} (each call throttled with probability r),
{"now": epoch seconds | ISO text | null} (the clock for "EndTime not later than now" and the
3-month reach; null: real time); `GET /__fake/requests` (every Connect call, parsed);
`DELETE /__fake/requests` clears the log.

Run by hand: `python -m tests.fakes.connect_api --days 2` prints its URL and instance ARN.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import threading
import urllib.parse
import zoneinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .contact_center import API_METRICS, REGION, ContactCenter, to_ms

RESOURCE_FILTER_KEYS = {
    "QUEUE", "ROUTING_PROFILE", "AGENT", "AGENT_HIERARCHY_LEVEL_ONE", "AGENT_HIERARCHY_LEVEL_TWO",
    "AGENT_HIERARCHY_LEVEL_THREE", "AGENT_HIERARCHY_LEVEL_FOUR", "AGENT_HIERARCHY_LEVEL_FIVE", "CAMPAIGN",
    "EVALUATION_FORM", "EVALUATOR_ID",
}
CHANNELS = {"VOICE", "CHAT", "TASK", "EMAIL"}
# Filter/grouping keys the fake answers (others are valid in Connect but hold no data here).
SUPPORTED_KEYS = {"QUEUE", "AGENT", "CHANNEL"}
PERIOD_MINUTES = {"FIFTEEN_MIN": 15, "THIRTY_MIN": 30, "HOUR": 60}
SHORT_SPAN = dt.timedelta(days=3)  # FIFTEEN_MIN, THIRTY_MIN, HOUR: span < 3 days
LONG_SPAN = dt.timedelta(days=35)  # DAY, WEEK, TOTAL: span < 35 days
MAX_SERVICE_LEVELS = 20
MAX_FILTER_VALUES = 100


class ApiError(Exception):
    """An error answer: the model's shape name, its HTTP status and a message."""

    STATUS = {"InvalidParameterException": 400, "InvalidRequestException": 400,
              "ResourceNotFoundException": 404, "ThrottlingException": 429, "InternalServiceException": 500}

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, self.STATUS[code], message


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """The same wall time `months` calendar months earlier (day clamped to the month's length)."""
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    for day in range(moment.day, 0, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def epoch(value) -> dt.datetime:
    if not isinstance(value, (int, float)):
        raise invalid(f"timestamp {value!r} is not epoch seconds")
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


class FakeConnect:
    """The API state: the center, the clock, faults and the request log. `handle` answers one call."""

    def __init__(self, center: ContactCenter):
        self.center = center
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self.throttle_next = 0
        self.throttle_rate = 0.0
        self.throttle_rng = random.Random(0)
        self.fixed_now: dt.datetime | None = None
        self.answers: dict[str, list[dict]] = {}

    # -- admin ---------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.fixed_now or dt.datetime.now(dt.timezone.utc)

    def set_faults(self, body: dict) -> dict:
        with self.lock:
            if "throttle_next" in body:
                self.throttle_next = int(body["throttle_next"])
            if "throttle_rate" in body:
                self.throttle_rate = float(body["throttle_rate"])
                self.throttle_rng = random.Random(body.get("seed", 0))
            if "now" in body:
                value = body["now"]
                if value is None:
                    self.fixed_now = None
                elif isinstance(value, (int, float)):
                    self.fixed_now = dt.datetime.fromtimestamp(value, dt.timezone.utc)
                else:
                    self.fixed_now = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return {"throttle_next": self.throttle_next, "throttle_rate": self.throttle_rate,
                    "now": self.fixed_now.isoformat() if self.fixed_now else None}

    def _throttled(self) -> bool:
        with self.lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return True
            return self.throttle_rate > 0 and self.throttle_rng.random() < self.throttle_rate

    # -- dispatch ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: dict | None) -> tuple[int, dict]:
        """Answers one Connect call: (HTTP status, JSON body); an error raises ApiError."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat()}
        try:
            if method == "POST" and parts == ["metrics", "data"]:
                entry.update(self._describe_metric_request(body or {}))
                self._check_throttle()
                return 200, self.get_metric_data_v2(body or {})
            if method == "GET" and len(parts) == 2 and parts[0] in ("queues-summary", "users-summary"):
                operation = "ListQueues" if parts[0] == "queues-summary" else "ListUsers"
                entry.update({"operation": operation, "InstanceId": parts[1],
                              "nextToken": _one(query, "nextToken"), "maxResults": _one(query, "maxResults"),
                              "queueTypes": query.get("queueTypes")})
                self._check_throttle()
                return 200, self.list_resources(operation, parts[1], query)
            entry["operation"] = f"{method} {path}"
            raise ApiError("ResourceNotFoundException", f"no operation at {method} {path}")
        except ApiError as error:
            entry.update({"status": error.status, "error": error.code})
            raise
        finally:
            entry.setdefault("status", 200)
            with self.lock:
                self.log.append(entry)

    def _check_throttle(self) -> None:
        if self._throttled():
            raise ApiError("ThrottlingException", "Rate exceeded")

    @staticmethod
    def _describe_metric_request(body: dict) -> dict:
        metrics = body.get("Metrics") or []
        return {
            "operation": "GetMetricDataV2", "ResourceArn": body.get("ResourceArn"),
            "StartTime": body.get("StartTime"), "EndTime": body.get("EndTime"), "Interval": body.get("Interval"),
            "Filters": body.get("Filters"), "Groupings": body.get("Groupings"),
            "metric_count": len(metrics), "metrics": [m.get("Name") for m in metrics if isinstance(m, dict)],
            "NextToken": body.get("NextToken"), "MaxResults": body.get("MaxResults"),
        }

    # -- ListQueues / ListUsers ------------------------------------------------------------------

    def _check_instance(self, instance: str) -> None:
        if instance not in (self.center.instance_id, self.center.instance_arn):
            raise ApiError("ResourceNotFoundException", f"Instance {instance} not found")

    def list_resources(self, operation: str, instance: str, query: dict[str, list[str]]) -> dict:
        self._check_instance(instance)
        limit = _one(query, "maxResults")
        try:
            limit = 100 if limit is None else int(limit)
        except ValueError:
            raise invalid(f"maxResults {limit!r} is not an integer") from None
        if not 1 <= limit <= 1000:
            raise invalid(f"maxResults must be between 1 and 1000, not {limit}")
        stamp = self.center.start / 1000 - 86400 * 30
        if operation == "ListQueues":
            types = set(query.get("queueTypes") or ["STANDARD", "AGENT"])
            if len(query.get("queueTypes") or []) > 2 or not types <= {"STANDARD", "AGENT"}:
                raise invalid(f"queueTypes must be up to two of STANDARD, AGENT, not {sorted(types)}")
            items = [{"Id": q["id"], "Arn": q["arn"], "Name": q["name"], "QueueType": "STANDARD"}
                     for q in self.center.queues if "STANDARD" in types]
            items += [{"Id": q["id"], "Arn": q["arn"], "QueueType": "AGENT"}
                      for q in self.center.agent_queues if "AGENT" in types]
            key = "QueueSummaryList"
        else:
            items = [{"Id": a["id"], "Arn": a["arn"], "Username": a["username"]} for a in self.center.agents]
            key = "UserSummaryList"
        for item in items:
            item.update({"LastModifiedTime": stamp, "LastModifiedRegion": REGION})
        fingerprint = _fingerprint({"op": operation, "types": sorted(query.get("queueTypes") or [])})
        offset = self._offset(_one(query, "nextToken"), fingerprint)
        answer: dict = {key: items[offset:offset + limit]}
        if offset + limit < len(items):
            answer["NextToken"] = _token(offset + limit, fingerprint)
        return answer

    @staticmethod
    def _offset(token: str | None, fingerprint: str) -> int:
        if token is None:
            return 0
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if decoded["f"] != fingerprint:
                raise ValueError("token of another request")
            return int(decoded["o"])
        except (ValueError, KeyError, TypeError):
            raise invalid("The NextToken is not valid") from None

    # -- GetMetricDataV2 --------------------------------------------------------------------------

    def get_metric_data_v2(self, body: dict) -> dict:
        if body.get("ResourceArn") != self.center.instance_arn:
            raise ApiError("ResourceNotFoundException", f"Instance {body.get('ResourceArn')} not found")
        for required in ("StartTime", "EndTime", "Filters", "Metrics"):
            if required not in body:
                raise invalid(f"{required} is required")
        start, end = epoch(body["StartTime"]), epoch(body["EndTime"])
        period, zone = self._interval(body.get("Interval") or {})
        self._check_times(start, end, period)
        filters = self._filters(body["Filters"])
        groupings = self._groupings(body.get("Groupings") or [])
        metrics = self._metrics(body["Metrics"], groupings, filters)
        limit = body.get("MaxResults", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise invalid(f"MaxResults must be between 1 and 100, not {limit!r}")
        request = {k: body.get(k) for k in ("StartTime", "EndTime", "Interval", "Filters", "Groupings", "Metrics")}
        fingerprint = _fingerprint(request)
        offset = self._offset(body.get("NextToken"), fingerprint)
        # Pages of one request are cut from one computed answer (the world does not change).
        with self.lock:
            results = self.answers.get(fingerprint)
        if results is None:
            results = self._results(start, end, period, zone, filters, groupings, metrics)
            with self.lock:
                self.answers[fingerprint] = results
        answer: dict = {"MetricResults": results[offset:offset + limit]}
        if offset + limit < len(results):
            answer["NextToken"] = _token(offset + limit, fingerprint)
        return answer

    @staticmethod
    def _interval(interval: dict) -> tuple[str, zoneinfo.ZoneInfo]:
        period = interval.get("IntervalPeriod", "TOTAL")
        if period not in (*PERIOD_MINUTES, "DAY", "WEEK", "TOTAL"):
            raise invalid(f"IntervalPeriod {period!r} is not one of FIFTEEN_MIN, THIRTY_MIN, HOUR, DAY, WEEK, TOTAL")
        try:
            zone = zoneinfo.ZoneInfo(interval.get("TimeZone") or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise invalid(f"TimeZone {interval.get('TimeZone')!r} is not valid") from None
        return period, zone

    def _check_times(self, start: dt.datetime, end: dt.datetime, period: str) -> None:
        now = self.now()
        if start >= end:
            raise invalid("StartTime must be before EndTime")
        if end > now:
            raise invalid("EndTime cannot be later than the current timestamp")
        reach = months_before(now, 3)
        if start < reach:
            raise invalid(f"StartTime must be within the last 3 months (not before {reach.isoformat()})")
        limit = SHORT_SPAN if period in PERIOD_MINUTES else LONG_SPAN
        if end - start >= limit:
            raise invalid(f"The difference between StartTime and EndTime must be less than {limit.days} days "
                          f"for IntervalPeriod {period}")

    @staticmethod
    def _filters(filters) -> dict[str, set[str]]:
        if not isinstance(filters, list) or not 1 <= len(filters) <= 5:
            raise invalid("Filters must hold 1 to 5 filter keys")
        found: dict[str, set[str]] = {}
        counted = 0
        for item in filters:
            key, values = item.get("FilterKey"), item.get("FilterValues") or []
            if not values or len(values) > MAX_FILTER_VALUES:
                raise invalid(f"FilterValues of {key} must hold 1 to {MAX_FILTER_VALUES} values")
            if key in found:
                raise invalid(f"Filter key {key} is given twice")
            if key == "CHANNEL":
                if not set(values) <= CHANNELS:
                    raise invalid(f"CHANNEL filter values must be among {sorted(CHANNELS)}, not {values}")
            else:
                counted += len(values)
            found[key] = set(values)
        if counted > MAX_FILTER_VALUES:
            raise invalid(f"At most {MAX_FILTER_VALUES} filter values across all filter keys, not {counted}")
        if not found.keys() & RESOURCE_FILTER_KEYS:
            raise invalid("At least one filter on QUEUE, ROUTING_PROFILE, AGENT or AGENT_HIERARCHY_LEVEL_* "
                          f"(or CAMPAIGN, EVALUATION_FORM, EVALUATOR_ID) is required, not {sorted(found)}")
        return found

    @staticmethod
    def _groupings(groupings) -> list[str]:
        if not isinstance(groupings, list) or len(groupings) > 4:
            raise invalid("Groupings must hold at most 4 keys")
        unknown = [g for g in groupings if g not in SUPPORTED_KEYS]
        if unknown:
            raise invalid(f"Grouping {unknown} is not supported by this fake (QUEUE, AGENT, CHANNEL)")
        return list(dict.fromkeys(groupings))

    @staticmethod
    def _metrics(metrics, groupings: list[str], filters: dict[str, set[str]]) -> list[dict]:
        if not isinstance(metrics, list) or not metrics:
            raise invalid("Metrics must hold at least one metric")
        service_levels = sum(1 for m in metrics if m.get("Name") == "SERVICE_LEVEL")
        if service_levels > MAX_SERVICE_LEVELS:
            raise invalid(f"At most {MAX_SERVICE_LEVELS} SERVICE_LEVEL metrics per request, not {service_levels}")
        resource_keys = {k for k in filters if k in SUPPORTED_KEYS - {"CHANNEL"}}
        for metric in metrics:
            name = metric.get("Name")
            definition = API_METRICS.get(name)
            if definition is None:
                raise invalid(f"Metric name {name!r} is not valid (or not served by this fake)")
            for key in set(groupings) | resource_keys:
                if key not in definition.groupings:
                    raise invalid(f"Metric {name} cannot be grouped or filtered by {key}")
            thresholds = metric.get("Threshold") or []
            if definition.threshold:
                if len(thresholds) != 1:
                    raise invalid(f"Metric {name} needs exactly one Threshold")
                comparison, value = thresholds[0].get("Comparison"), thresholds[0].get("ThresholdValue")
                if comparison not in ("LT", "LTE"):
                    raise invalid(f"Threshold Comparison of {name} must be LT or LTE, not {comparison!r}")
                if not isinstance(value, (int, float)) or value != int(value) or not 1 <= value <= 604800:
                    raise invalid(f"ThresholdValue of {name} must be a whole number from 1 to 604800, not {value!r}")
            elif thresholds:
                raise invalid(f"Metric {name} does not take a Threshold")
            for metric_filter in metric.get("MetricFilters") or []:
                if metric_filter.get("MetricFilterKey") != "INITIATION_METHOD":
                    raise invalid(f"MetricFilterKey {metric_filter.get('MetricFilterKey')!r} is not served by this fake")
        return metrics

    def _intervals(self, start: dt.datetime, end: dt.datetime, period: str, zone) -> list[tuple[dt.datetime, dt.datetime]]:
        """The request's intervals in `zone`: periods aligned on the zone's wall clock, cut to
        [start, end) for counting (the answer names the whole period)."""
        if period == "TOTAL":
            return [(start, end)]
        local = start.astimezone(zone)
        if period in PERIOD_MINUTES:
            minutes = PERIOD_MINUTES[period]
            first = local.replace(minute=local.minute - local.minute % minutes, second=0, microsecond=0)
            step = dt.timedelta(minutes=minutes)
        else:
            first = local.replace(hour=0, minute=0, second=0, microsecond=0)
            if period == "WEEK":
                first -= dt.timedelta(days=first.weekday())
            step = dt.timedelta(days=1 if period == "DAY" else 7)
        intervals, begin = [], first
        while begin < end:
            if period in PERIOD_MINUTES:
                finish = begin + step  # absolute time
            else:
                finish = (begin.astimezone(zone) + step).replace(fold=0)  # wall clock: a DST day is 23 or 25 h
            intervals.append((begin.astimezone(dt.timezone.utc), finish.astimezone(dt.timezone.utc)))
            begin = finish.astimezone(dt.timezone.utc)
        return intervals

    def _results(self, start, end, period, zone, filters, groupings, metrics) -> list[dict]:
        center = self.center
        channels = filters.get("CHANNEL")
        if channels is not None and "VOICE" not in channels:
            return []
        queues = self._resolve(filters.get("QUEUE"), center.queues)
        agents = self._resolve(filters.get("AGENT"), center.agents)
        narrowed = {k: v for k, v in (("QUEUE", queues), ("AGENT", agents)) if v is not None}
        # Keys the fake cannot match (routing profiles, hierarchies, ...) select nothing here.
        if any(k not in SUPPORTED_KEYS for k in filters):
            return []
        results = []
        for begin, finish in self._intervals(start, end, period, zone):
            lo, hi = max(to_ms(begin), to_ms(start)), min(to_ms(finish), to_ms(end))
            for group in self._groups(groupings, lo, hi, narrowed):
                scope = {**narrowed, **{k: {v} for k, v in group.items() if k != "CHANNEL"}}
                collections = [self._datum(m, scope, lo, hi) for m in metrics]
                results.append({
                    "Dimensions": self._dimensions(group),
                    "MetricInterval": {"Interval": period, "StartTime": begin.timestamp(), "EndTime": finish.timestamp()},
                    "Collections": collections,
                })
        return results

    @staticmethod
    def _resolve(values: set[str] | None, resources: list[dict]) -> set[str] | None:
        """Filter values may be ids or ARNs; answers the matching ids (unknown values match nothing)."""
        if values is None:
            return None
        return {r["id"] for r in resources if r["id"] in values or r["arn"] in values}

    def _groups(self, groupings: list[str], lo: int, hi: int, narrowed: dict) -> list[dict]:
        """Each combination of grouping values that had activity in [lo, hi) within the filters."""
        center = self.center
        groups: list[dict] = [{}]
        for key in groupings:
            if key == "CHANNEL":
                groups = [{**g, "CHANNEL": "VOICE"} for g in groups]
                continue
            active = [i for i in center.active(key, lo, hi) if key not in narrowed or i in narrowed[key]]
            groups = [{**g, key: i} for g in groups for i in active]
        if not groupings and not (center.active("QUEUE", lo, hi) or center.active("AGENT", lo, hi)):
            return []
        return groups

    def _dimensions(self, group: dict) -> dict:
        """Each grouping's id, plus its ARN under `<KEY>_ARN` as Connect returns for resources."""
        dimensions = {}
        for key, ident in group.items():
            dimensions[key] = ident
            if key == "QUEUE":
                dimensions["QUEUE_ARN"] = self.center.queue_by_id[ident]["arn"]
            elif key == "AGENT":
                dimensions["AGENT_ARN"] = self.center.agent_by_id[ident]["arn"]
        return dimensions

    def _datum(self, metric: dict, scope: dict, lo: int, hi: int) -> dict:
        threshold = (metric.get("Threshold") or [None])[0]
        metric_filters = {
            f["MetricFilterKey"]: (set(f.get("MetricFilterValues") or []), bool(f.get("Negate")))
            for f in metric.get("MetricFilters") or []
        }
        value = self.center.metric(metric["Name"], threshold, None, None, lo, hi, filters=scope,
                                   metric_filters=metric_filters)
        datum: dict = {"Metric": metric}
        if value is not None:
            datum["Value"] = float(value)
        return datum


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _fingerprint(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode()


# --------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    """restJson1 over HTTP/1.1; `server.fake` is the FakeConnect answering."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall per call

    def log_message(self, format, *args):  # quiet: the request log is the record
        pass

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", hashlib.md5(payload).hexdigest())
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else None

    def _serve(self, method: str) -> None:
        fake: FakeConnect = self.server.fake
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            body = self._body()
        except json.JSONDecodeError as error:
            self._error(ApiError("InvalidRequestException", f"body is not JSON: {error}"))
            return
        if url.path.startswith("/__fake/"):
            self._admin(method, url.path, body)
            return
        try:
            status, answer = fake.handle(method, url.path, query, body)
        except ApiError as error:
            self._error(error)
            return
        self._send(status, answer)

    def _error(self, error: ApiError) -> None:
        self._send(error.status, {"Message": error.message},
                   {"x-amzn-ErrorType": f"{error.code}:http://internal.amazon.com/coral/com.amazonaws.connect/"})

    def _admin(self, method: str, path: str, body) -> None:
        fake: FakeConnect = self.server.fake
        if path == "/__fake/faults" and method == "POST":
            self._send(200, fake.set_faults(body or {}))
        elif path == "/__fake/requests" and method == "GET":
            with fake.lock:
                self._send(200, list(fake.log))
        elif path == "/__fake/requests" and method == "DELETE":
            with fake.lock:
                fake.log.clear()
            self._send(200, [])
        else:
            self._send(404, {"Message": f"no admin route {method} {path}"})

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")


class ConnectServer:
    """A FakeConnect served on 127.0.0.1 (port 0: a free one) in a daemon thread."""

    def __init__(self, center: ContactCenter, port: int = 0):
        self.fake = FakeConnect(center)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self.fake
        # A short poll interval: shutdown() waits for it, and tests stop a server each.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       name="connect-fake", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "ConnectServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


_SESSION = []


def _boto3_session():
    """One boto3 session for every client (loading the connect model once per session is slow)."""
    if not _SESSION:
        import boto3

        _SESSION.append(boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                              region_name=REGION))
    return _SESSION[0]


class ServedCenter:
    """What tests hold: a ContactCenter served by a running fake Connect API."""

    def __init__(self, server: ConnectServer):
        self.server = server
        self.center = server.fake.center
        self.url = server.url
        self.instance_id = self.center.instance_id
        self.instance_arn = self.center.instance_arn
        self._clients: dict[str, object] = {}

    def requests(self, operation: str | None = None) -> list[dict]:
        """The request log (every Connect call, parsed), optionally of one operation."""
        with self.server.fake.lock:
            log = list(self.server.fake.log)
        return [r for r in log if operation is None or r.get("operation") == operation]

    def throttle(self, n: int) -> None:
        """Answers the next `n` Connect calls with ThrottlingException (429)."""
        self.server.fake.set_faults({"throttle_next": n})

    def faults(self, **faults) -> dict:
        """Sets faults as `POST /__fake/faults` does (throttle_next, throttle_rate + seed, now)."""
        return self.server.fake.set_faults(faults)

    def client(self, **config):
        """boto3's connect client pointed at the fake (dummy credentials, us-east-1); `config`
        goes to botocore's Config (e.g. retries={"mode": "standard"})."""
        from botocore.config import Config

        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._clients:
            self._clients[key] = _boto3_session().client("connect", endpoint_url=self.url, config=Config(**config))
        return self._clients[key]

    def stop(self) -> None:
        self.server.stop()


def serve(start: dt.datetime, end: dt.datetime, seed: int = 21, **center_options) -> ServedCenter:
    """Builds a ContactCenter over [start, end) and serves it on a free port."""
    return ServedCenter(ConnectServer(ContactCenter(seed, start, end, **center_options)).start())


def main(argv: list[str] | None = None) -> None:
    """Serves a center of the last `--days` whole days (UTC) until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    center = ContactCenter(args.seed, today - dt.timedelta(days=args.days), today)
    server = ConnectServer(center, args.port).start()
    print(f"listening on {server.url} instance {center.instance_arn}", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
