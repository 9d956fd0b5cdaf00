"""A seeded synthetic Amazon Connect contact center: individual contacts and agent states.

One world, two views of it, coded separately so that one can check the other:

* `ContactCenter.write_reports` writes the scheduled 30-minute interval reports (queue or agent) as
  Connect exports them; each column is computed by the report column's own definition.
* `ContactCenter.metric` computes GetMetricDataV2 metrics (the API's names, thresholds and units)
  from the same contacts, by the API metric's definition.

A report column that has an API metric therefore holds the API's value (up to the CSV's decimals).

The simulation (all times are whole milliseconds since the epoch, so sums are exact):
contacts arrive per queue (INBOUND, CALLBACK, API; OUTBOUND ones are dialled by a free agent), spend
a few seconds in a flow, wait in the queue for the first free agent on shift (agents ring, sometimes
miss, and the contact is routed again), and are either answered, abandoned when the caller's
patience runs out, or transferred by the flow to another queue (overflow). An answered contact has
interaction time, holds, after-contact work, maybe a transfer by the agent (internal: a new TRANSFER
contact in another queue; external) and maybe a disconnect while on hold. Agents work shifts, take
non-productive breaks and have error states; idle time is what is left of their online time.

Attribution, as the Connect Administrator Guide describes it: contact-record metrics count in the
interval in which the contact disconnected (for an answered contact, the customer's disconnect;
its ACW counts there too); "Contacts created" counts at initiation, "Contacts queued (enqueue
timestamp)" at enqueue, "Contacts handled (connected to agent timestamp)" when connected to the
agent; agent-activity metrics (states, routing attempts and misses) are split by the wall clock.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import heapq
import math
import pathlib
import random
import uuid
from typing import Callable, Iterable, Sequence

ACCOUNT = "123456789012"
REGION = "us-east-1"
MS = 1000
THRESHOLDS = (15, 20, 25, 30, 45, 60, 90, 120, 180, 240, 300, 600)
DEFAULT_QUEUES = ("BasicQueue", "Sales, EU", 'Support "Tier 2"', "Köln Überlauf", "Billing", "VIP-Callback")
DEFAULT_AGENTS = (
    ("jdoe", "Jane", "Doe"), ("mrossi", "Mario", "Rossi"), ("akim", "Ahn", "Kim"),
    ("lmüller", "Lena", "Müller"), ("pnovak", "Petr", "Novák"), ("s.sato", "Sora", "Satō"),
    ("obrien", "Aoife", "O'Brien"), ("ldubois", "Léa", "Dubois, Jr."),
)
STAMP = "%Y-%m-%dT%H:%M:%S.000Z"
SCHEDULES = {"queue": "sfIntervalQueue", "agent": "sfIntervalAgent"}
# The scheduled report's "Contacts answered/abandoned in X seconds" and "Service level X" use
# "less than" X (the fake's choice; the docs do not say which comparison the report uses).
REPORT_COMPARISON = "LT"

# --------------------------------------------------------------------------------------------
# The world's records


@dataclasses.dataclass
class Contact:
    """One contact record (one queue leg; a transfer creates a new contact)."""

    id: str
    queue_id: str
    method: str  # INBOUND | OUTBOUND | CALLBACK | API | TRANSFER
    initiated: int
    flow_ms: int = 0
    enqueued: int | None = None  # None: never queued (OUTBOUND)
    outcome: str = ""  # ANSWERED | ABANDONED | QUEUE_TRANSFER
    left_queue: int | None = None  # answered, abandoned or moved by the flow
    agent_id: str | None = None
    ring_started: int | None = None  # the routing attempt that was answered
    connected: int | None = None
    interaction_ms: int = 0
    hold_count: int = 0
    hold_ms: int = 0
    acw_ms: int = 0
    disconnected: int = 0
    agent_transfer: str | None = None  # INTERNAL | EXTERNAL
    hold_disconnect: str | None = None  # AGENT | CUSTOMER
    agent_hung_up_first: bool = False
    consulted: bool = False
    callback_retries: int = 0
    transferred_in: str | None = None  # FROM_QUEUE | BY_AGENT (for TRANSFER contacts)

    @property
    def queued(self) -> bool:
        return self.enqueued is not None

    @property
    def handled(self) -> bool:
        return self.connected is not None

    @property
    def queue_wait_ms(self) -> int | None:
        return None if self.enqueued is None else self.left_queue - self.enqueued


@dataclasses.dataclass(frozen=True)
class Miss:
    """A routing attempt the agent did not answer (agent non-response)."""

    agent_id: str
    contact: Contact
    at: int
    customer_abandoned: bool


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of an agent's time: on contact, connecting (ringing), non-productive, error."""

    agent_id: str
    kind: str  # CONTACT | CONNECTING | NPT | ERROR
    start: int
    end: int


def overlap(start: int, end: int, lo: int, hi: int) -> int:
    """Milliseconds [start, end) and [lo, hi) have in common."""
    return max(0, min(end, hi) - max(start, lo))


def to_ms(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} must be timezone-aware")
    return int(round(moment.timestamp() * MS))


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / MS, dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# The simulation


class _Simulation:
    """Generates contacts, misses and agent segments for [start, end) from one random stream."""

    RING_TIMEOUT_MS = 15 * MS

    def __init__(self, rng: random.Random, start: int, end: int, queues: list[dict], agents: list[dict]):
        self.rng, self.start, self.end = rng, start, end
        self.queues, self.agents = queues, agents
        self.contacts: list[Contact] = []
        self.misses: list[Miss] = []
        self.segments: list[Segment] = []
        self.shifts = self._shifts()
        self.free_at = {a["id"]: start for a in agents}
        self.pending: list[tuple[int, int, Contact]] = []
        self.created: list[tuple[int, int, Contact]] = []  # TRANSFER contacts made while routing
        self.sequence = 0

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _shifts(self) -> dict[str, list[tuple[int, int]]]:
        """8.5-hour shifts, staggered two hours apart, every day of the window (and the day before)."""
        day = 24 * 3600 * MS
        first_day = self.start - self.start % day - day
        shifts: dict[str, list[tuple[int, int]]] = {}
        for index, agent in enumerate(self.agents):
            begin = ((5 + 2 * index) % 24) * 3600 * MS
            shifts[agent["id"]] = [
                (d + begin, d + begin + 510 * 60 * MS) for d in range(first_day, self.end + day, day)
            ]
        return shifts

    def run(self) -> None:
        """Routes every contact in the order it reaches its queue (or is dialled)."""
        for queue in self.queues:
            self._arrivals(queue)
        heapq.heapify(self.pending)
        while self.pending:
            _, _, contact = heapq.heappop(self.pending)
            if contact.method == "OUTBOUND":
                self._dial(contact)
            else:
                self._route(contact)
            while self.created:
                heapq.heappush(self.pending, self.created.pop())
        self.contacts.sort(key=lambda c: (c.initiated, c.id))

    def _push(self, contact: Contact, at: int, created: bool = False) -> None:
        self.sequence += 1
        (self.created if created else self.pending).append((at, self.sequence, contact))

    def _arrivals(self, queue: dict) -> None:
        """A Poisson stream per queue, busier in the day than at night, on whole seconds."""
        rate_per_hour = self.rng.uniform(5, 12)
        at = self.start
        while True:
            hour = (at // (3600 * MS)) % 24
            busy = 1.0 if 8 <= hour < 18 else 0.35 if 6 <= hour < 22 else 0.1
            at += max(MS, int(self.rng.expovariate(rate_per_hour * busy / 3600) * MS) // MS * MS)
            if at >= self.end:
                return
            method = self.rng.choices(["INBOUND", "CALLBACK", "API", "OUTBOUND"], [70, 8, 7, 15])[0]
            contact = Contact(self._id(), queue["id"], method, at)
            if method != "OUTBOUND":
                contact.flow_ms = {"INBOUND": self.rng.randint(5, 40), "CALLBACK": 3, "API": 1}[method] * MS
                contact.enqueued = at + contact.flow_ms
                if method == "CALLBACK":
                    contact.callback_retries = self.rng.choices([0, 1, 2], [70, 20, 10])[0]
            self._push(contact, contact.enqueued or at)

    def _available(self, agent_id: str, after: int) -> int | None:
        """The first moment at or after `after` the agent is free and on shift (a minute before its end)."""
        at = max(after, self.free_at[agent_id])
        for begin, finish in self.shifts[agent_id]:
            if at < finish - 60 * MS:
                return max(at, begin)
        return None

    def _first_free(self, after: int) -> tuple[int, str] | None:
        found = [(t, a["id"]) for a in self.agents if (t := self._available(a["id"], after)) is not None]
        return min(found) if found else None

    def _route(self, contact: Contact) -> None:
        """Queue, ring agents (some miss), then answer, abandon or move to another queue."""
        rng = self.rng
        enqueued = contact.enqueued
        deadline = enqueued + rng.randint(5, 420) * MS  # the caller's patience, in whole seconds
        overflow = enqueued + 150 * MS if rng.random() < 0.08 and len(self.queues) > 1 else None
        after = enqueued
        while True:
            free = self._first_free(after)
            if overflow is not None and overflow < deadline and (free is None or free[0] >= overflow):
                return self._queue_transfer(contact, overflow)
            if free is None or free[0] >= deadline:
                return self._abandon(contact, deadline)
            ring_start, agent_id = free
            if rng.random() < 0.07:
                ring_end = ring_start + self.RING_TIMEOUT_MS
                if ring_end > deadline:
                    return self._abandon_while_ringing(contact, agent_id, ring_start, deadline)
                self.misses.append(Miss(agent_id, contact, ring_start, False))
                self.segments.append(Segment(agent_id, "CONNECTING", ring_start, ring_end))
                missed_state = ring_end + rng.randint(5, 40) * MS  # until the agent is Available again
                self.segments.append(Segment(agent_id, "NPT", ring_end, missed_state))
                self.free_at[agent_id] = missed_state
                after = ring_end
                continue
            ring = rng.randint(2, 8) * MS
            if ring_start == enqueued and rng.random() < 0.15:
                ring = rng.choice(THRESHOLDS[:4]) * MS  # a wait of exactly X seconds: LT and LTE differ
            if ring_start + ring > deadline:
                return self._abandon_while_ringing(contact, agent_id, ring_start, deadline)
            return self._answer(contact, agent_id, ring_start, ring_start + ring)

    def _abandon(self, contact: Contact, at: int) -> None:
        contact.outcome, contact.left_queue, contact.disconnected = "ABANDONED", at, at
        self.contacts.append(contact)

    def _abandon_while_ringing(self, contact: Contact, agent_id: str, ring_start: int, at: int) -> None:
        self.misses.append(Miss(agent_id, contact, ring_start, True))
        self.segments.append(Segment(agent_id, "CONNECTING", ring_start, at))
        self.free_at[agent_id] = at
        self._abandon(contact, at)

    def _queue_transfer(self, contact: Contact, at: int) -> None:
        contact.outcome, contact.left_queue, contact.disconnected = "QUEUE_TRANSFER", at, at
        self.contacts.append(contact)
        self._transfer_contact(contact, at, "FROM_QUEUE")

    def _transfer_contact(self, parent: Contact, at: int, how: str) -> None:
        others = [q for q in self.queues if q["id"] != parent.queue_id]
        if not others or at >= self.end:
            return
        child = Contact(self._id(), self.rng.choice(others)["id"], "TRANSFER", at, transferred_in=how)
        child.flow_ms = 2 * MS
        child.enqueued = at + child.flow_ms
        self._push(child, child.enqueued, created=True)

    def _talk(self, contact: Contact, agent_id: str, ring_start: int, connected: int) -> None:
        """Everything from the agent picking up to the end of after-contact work."""
        rng = self.rng
        contact.agent_id, contact.ring_started, contact.connected = agent_id, ring_start, connected
        contact.interaction_ms = int(rng.lognormvariate(math.log(150), 0.6) * MS)
        contact.hold_count = rng.choices([0, 1, 2, 3], [70, 20, 8, 2])[0]
        contact.hold_ms = sum(rng.randint(10 * MS, 120 * MS) for _ in range(contact.hold_count))
        contact.acw_ms = rng.randint(5 * MS, 120 * MS)
        contact.disconnected = connected + contact.interaction_ms + contact.hold_ms
        if contact.hold_count and rng.random() < 0.12:
            contact.hold_disconnect = rng.choice(["AGENT", "CUSTOMER"])
        if rng.random() < 0.1:
            contact.agent_transfer = rng.choices(["INTERNAL", "EXTERNAL"], [70, 30])[0]
        contact.agent_hung_up_first = contact.agent_transfer is not None or rng.random() < 0.35
        contact.consulted = rng.random() < 0.05
        self.segments.append(Segment(agent_id, "CONNECTING", ring_start, connected))
        work_end = contact.disconnected + contact.acw_ms
        self.segments.append(Segment(agent_id, "CONTACT", connected, work_end))
        free = work_end
        if rng.random() < 0.12:
            self.segments.append(Segment(agent_id, "NPT", free, free + rng.randint(60, 600) * MS))
            free = self.segments[-1].end
        if rng.random() < 0.04:
            self.segments.append(Segment(agent_id, "ERROR", free, free + rng.randint(5 * MS, 90 * MS)))
            free = self.segments[-1].end
        self.free_at[agent_id] = free
        self.contacts.append(contact)
        if contact.agent_transfer == "INTERNAL":
            self._transfer_contact(contact, contact.disconnected, "BY_AGENT")

    def _answer(self, contact: Contact, agent_id: str, ring_start: int, connected: int) -> None:
        contact.outcome, contact.left_queue = "ANSWERED", connected
        self._talk(contact, agent_id, ring_start, connected)

    def _dial(self, contact: Contact) -> None:
        """An outbound call by an agent who is free right now (none free: no call)."""
        free = [a["id"] for a in self.agents if self._available(a["id"], contact.initiated) == contact.initiated]
        if not free:
            return
        agent_id = self.rng.choice(free)
        contact.outcome = "ANSWERED"
        self._talk(contact, agent_id, contact.initiated, contact.initiated + self.rng.randint(8, 25) * MS)


# --------------------------------------------------------------------------------------------
# The contact center


class ContactCenter:
    """A seeded contact center over [start, end) on the `interval_minutes` grid (UTC).

    queues: queue names (or a count of the default names); agents: (username, first, last) tuples
    (or a count of the default agents). `queues` and `agents` attributes hold dicts with the ids and
    ARNs Connect would give them; `contacts`, `misses` and `segments` are the contact-level truth.
    """

    def __init__(self, seed: int, start: dt.datetime, end: dt.datetime, interval_minutes: int = 30,
                 queues: Sequence[str] | int = DEFAULT_QUEUES, agents: Sequence[tuple[str, str, str]] | int = DEFAULT_AGENTS,
                 instance_id: str | None = None):
        self.interval_ms = interval_minutes * 60 * MS
        self.start, self.end = to_ms(start), to_ms(end)
        if self.start % self.interval_ms or self.end % self.interval_ms or self.start >= self.end:
            raise ValueError(f"{start}..{end} is not a non-empty window on the {interval_minutes}-minute grid")
        rng = random.Random(seed)
        self.instance_id = instance_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.instance_arn = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{self.instance_id}"
        names = DEFAULT_QUEUES[:queues] if isinstance(queues, int) else tuple(queues)
        people = DEFAULT_AGENTS[:agents] if isinstance(agents, int) else tuple(agents)
        self.queues = [self._resource(rng, "queue", name=name) for name in names]
        self.agents = [
            self._resource(rng, "agent", username=u, first_name=f, last_name=l) for u, f, l in people
        ]
        # Each agent's own agent queue (QueueType AGENT): listed by ListQueues, never in reports.
        self.agent_queues = [
            {"id": a["id"], "arn": f"{self.instance_arn}/queue/agent/{a['id']}"} for a in self.agents
        ]
        # For the queue report's agent-state columns (no API equivalent): an agent's home queue.
        self.home_queue = {a["id"]: self.queues[i % len(self.queues)]["id"] for i, a in enumerate(self.agents)}
        simulation = _Simulation(rng, self.start, self.end, self.queues, self.agents)
        simulation.run()
        self.contacts, self.misses, self.segments = simulation.contacts, simulation.misses, simulation.segments
        self.shifts = simulation.shifts
        self.queue_by_id = {q["id"]: q for q in self.queues}
        self.agent_by_id = {a["id"]: a for a in self.agents}

    def _resource(self, rng: random.Random, kind: str, **fields) -> dict:
        ident = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return {"id": ident, "arn": f"{self.instance_arn}/{kind}/{ident}", **fields}

    # ----------------------------------------------------------------------------------------
    # Shared facts: the interval grid and which queue/agent had activity in an interval

    def intervals(self) -> list[tuple[int, int]]:
        """Every (start, end) of the grid, in epoch milliseconds."""
        return [(s, s + self.interval_ms) for s in range(self.start, self.end, self.interval_ms)]

    def contact_times(self, contact: Contact) -> Iterable[int]:
        return (t for t in (contact.initiated, contact.enqueued, contact.connected, contact.disconnected) if t is not None)

    def active(self, group_key: str, start: int, end: int) -> list[str]:
        """Ids of the queues (QUEUE) or agents (AGENT) with any activity in [start, end), in the
        order of `queues`/`agents`: a contact event or a miss (queue or agent), online time (agent).
        Connect leaves inactive queues and agents out of a report, and the API returns no result."""
        found: set[str] = set()
        for contact in self.contacts:
            if any(start <= t < end for t in self.contact_times(contact)):
                found.add(contact.queue_id if group_key == "QUEUE" else contact.agent_id)
        for miss in self.misses:
            if start <= miss.at < end:
                found.add(miss.contact.queue_id if group_key == "QUEUE" else miss.agent_id)
        if group_key == "AGENT":
            found |= {a["id"] for a in self.agents if self._online_ms(a["id"], start, end) > 0}
        order = self.queues if group_key == "QUEUE" else self.agents
        return [r["id"] for r in order if r["id"] in found]

    def _online_ms(self, agent_id: str, start: int, end: int) -> int:
        """Online time: the union of the agent's shifts and its segments, within [start, end)."""
        spans = sorted(
            [(b, f) for b, f in self.shifts[agent_id] if f > start and b < end]
            + [(s.start, s.end) for s in self.segments if s.agent_id == agent_id and s.end > start and s.start < end]
        )
        total, cursor = 0, start
        for begin, finish in spans:
            begin, finish = max(begin, cursor), min(finish, end)
            if finish > begin:
                total += finish - begin
                cursor = finish
        return total

    # ----------------------------------------------------------------------------------------
    # The report side: one CSV per interval, columns by the report's definitions

    def write_reports(self, folder: pathlib.Path | str, report: str, exact: bool = False) -> list[pathlib.Path]:
        """Writes one `sfInterval{Queue,Agent}-<interval end>.csv` per interval into `folder`.

        Values: counts as integers; seconds with up to 3 decimals (sums are exact: whole
        milliseconds); percentages with 2 decimals and `%`; a blank cell where a value is undefined
        (an average or rate over no contacts). `exact=True` writes averages and percentages with
        Python's shortest round-tripping repr instead (sums and counts are exact either way)."""
        if report not in SCHEDULES:
            raise ValueError(f"report must be queue or agent, not {report!r}")
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        columns = _ReportColumns.QUEUE if report == "queue" else _ReportColumns.AGENT
        header = ["Queue" if report == "queue" else "Agent", "StartInterval", "EndInterval", *columns]
        paths = []
        for start, end in self.intervals():
            rows = [
                self._report_row(report, ident, start, end, columns, exact)
                for ident in self.active("QUEUE" if report == "queue" else "AGENT", start, end)
            ]
            path = folder / f"{SCHEDULES[report]}-{from_ms(end).strftime('%Y-%m-%dT%H:%M:%SZ')}.csv"
            with path.open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(rows)
            paths.append(path)
        return paths

    def _report_row(self, report: str, ident: str, start: int, end: int, columns: dict, exact: bool) -> list[str]:
        cells = _ReportColumns(self, report, ident, start, end)
        if report == "queue":
            name = [self.queue_by_id[ident]["name"]]
        else:
            agent = self.agent_by_id[ident]
            name = [agent["username"]]
        head = [*name, from_ms(start).strftime(STAMP), from_ms(end).strftime(STAMP)]
        return head + [format_cell(unit, compute(cells), exact) for unit, compute in columns.values()]

    # ----------------------------------------------------------------------------------------
    # The API side: GetMetricDataV2 metrics by the API's definitions

    def metric(self, name: str, threshold: dict | tuple | None, group_key: str | None, group_id: str | None,
               interval_start: dt.datetime | int, interval_end: dt.datetime | int,
               filters: dict[str, set[str]] | None = None, metric_filters: dict | None = None) -> float | None:
        """The value of API metric `name` for one group (QUEUE or AGENT id; None: all) over
        [interval_start, interval_end), like GetMetricDataV2 returns it (None: not computable).

        threshold: {"Comparison": "LT"|"LTE", "ThresholdValue": seconds} or (comparison, seconds);
        filters: {"QUEUE": ids, "AGENT": ids} narrowing the records; metric_filters:
        {"INITIATION_METHOD": (values, negate)}."""
        start = interval_start if isinstance(interval_start, int) else to_ms(interval_start)
        end = interval_end if isinstance(interval_end, int) else to_ms(interval_end)
        scope = _ApiScope(self, start, end, dict(filters or {}), metric_filters or {})
        if group_key is not None:
            scope.filters[group_key] = {group_id}
        definition = API_METRICS.get(name)
        if definition is None:
            raise KeyError(f"unknown metric {name}")
        if isinstance(threshold, dict):
            threshold = (threshold["Comparison"], threshold["ThresholdValue"])
        return definition.compute(scope, threshold)


# --------------------------------------------------------------------------------------------
# Report columns (the report's definitions)


def format_cell(unit: str, value, exact: bool) -> str:
    """One CSV cell: counts as integers, seconds (given in ms) with ≤3 decimals, percent with `%`."""
    if value is None:
        return ""
    if unit == "text":
        return str(value)
    if unit == "count":
        return str(int(value))
    if unit == "ms":  # an exact sum or maximum in milliseconds
        return _decimal(value / MS, 3)
    if unit == "avg":  # an average in seconds
        return repr(float(value)) if exact else _decimal(value, 3)
    if unit == "pct":
        return (repr(float(value)) if exact else f"{value:.2f}") + "%"
    raise ValueError(unit)


def _decimal(value: float, places: int) -> str:
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _mean(total_ms: int, count: int) -> float | None:
    return None if count == 0 else total_ms / MS / count


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


class _ReportColumns:
    """The rows' raw material for one queue or agent and interval, and each column's definition.

    `QUEUE` and `AGENT` map each report header to (unit, function of this object)."""

    def __init__(self, center: ContactCenter, report: str, ident: str, start: int, end: int):
        self.center, self.start, self.end = center, start, end
        self.agent = center.agent_by_id.get(ident)
        mine = (lambda c: c.queue_id == ident) if report == "queue" else (lambda c: c.agent_id == ident)
        # The contact records that count in this interval: those that disconnected in it.
        self.records = [c for c in center.contacts if mine(c) and start <= c.disconnected < end]
        self.handled = [c for c in self.records if c.handled]
        self.queued = [c for c in self.records if c.queued]
        self.abandoned = [c for c in self.queued if c.outcome == "ABANDONED"]
        answered_in_queue = [c for c in self.queued if c.outcome == "ANSWERED"]
        self.answer_waits = [c.queue_wait_ms for c in answered_in_queue]
        by_attempt = (lambda m: m.contact.queue_id == ident) if report == "queue" else (lambda m: m.agent_id == ident)
        self.missed = [m for m in center.misses if by_attempt(m) and start <= m.at < end]
        self.answered_attempts = [
            c for c in center.contacts
            if c.queued and c.handled and mine(c) and start <= c.ring_started < end
        ]
        self.connected_here = [c for c in center.contacts if mine(c) and c.handled and start <= c.connected < end]
        self.enqueued_here = [c for c in center.contacts if mine(c) and c.queued and start <= c.enqueued < end]
        self.created_here = [c for c in center.contacts if mine(c) and start <= c.initiated < end]
        agents = [ident] if report == "agent" else [a for a, q in center.home_queue.items() if q == ident]
        self.state_ms = {kind: 0 for kind in ("CONTACT", "CONNECTING", "NPT", "ERROR")}
        for segment in center.segments:
            if segment.agent_id in agents:
                self.state_ms[segment.kind] += overlap(segment.start, segment.end, start, end)
        self.online_ms = sum(center._online_ms(a, start, end) for a in agents)

    def sum_ms(self, contacts: list[Contact], field: Callable[[Contact], int]) -> int:
        return sum(field(c) for c in contacts)

    def handle_ms(self, c: Contact) -> int:
        return c.interaction_ms + c.hold_ms + c.acw_ms

    def idle_ms(self) -> int:
        return self.online_ms - sum(self.state_ms.values())

    def answered_in(self, seconds: int) -> int:
        return sum(1 for w in self.answer_waits if w < seconds * MS)

    def abandoned_in(self, seconds: int) -> int:
        return sum(1 for c in self.abandoned if c.queue_wait_ms < seconds * MS)

    def outbound(self) -> list[Contact]:
        return [c for c in self.handled if c.method == "OUTBOUND"]

    def transferred_out_by_agent(self, kind: str | None = None) -> int:
        return sum(1 for c in self.handled if c.agent_transfer and (kind is None or c.agent_transfer == kind))

    def transferred_out_from_queue(self) -> int:
        return sum(1 for c in self.records if c.outcome == "QUEUE_TRANSFER")


def _columns_common() -> dict[str, tuple[str, Callable[[_ReportColumns], object]]]:
    """Columns both reports have, in the report's order (queue-only ones are added after)."""
    R = _ReportColumns
    return {
        "After contact work time": ("ms", lambda r: r.sum_ms(r.handled, lambda c: c.acw_ms)),
        "Agent on contact time": ("ms", lambda r: r.state_ms["CONTACT"]),
        "Agent idle time": ("ms", R.idle_ms),
        "Non-Productive Time": ("ms", lambda r: r.state_ms["NPT"]),
    }


def _queue_columns() -> dict:
    R = _ReportColumns
    cols = _columns_common()
    cols["Average queue abandon time"] = ("avg", lambda r: _mean(sum(c.queue_wait_ms for c in r.abandoned), len(r.abandoned)))
    averages = _averages()
    cols["Average after contact work time"] = averages.pop("Average after contact work time")
    cols["Average queue answer time"] = ("avg", lambda r: _mean(sum(r.answer_waits), len(r.answer_waits)))
    cols.update(averages)
    cols["Contacts abandoned"] = ("count", lambda r: len(r.abandoned))
    for x in THRESHOLDS:
        cols[f"Contacts abandoned in {x} seconds"] = ("count", lambda r, x=x: r.abandoned_in(x))
    cols.update(_counts_handled())
    cols["Callback contacts handled"] = ("count", lambda r: sum(1 for c in r.handled if c.method == "CALLBACK"))
    cols["API contacts handled"] = ("count", lambda r: sum(1 for c in r.handled if c.method == "API"))
    cols.update(_counts_hold())
    cols["Contacts incoming"] = ("count", lambda r: sum(1 for c in r.records if c.method == "INBOUND"))
    cols["Callback Contacts"] = ("count", lambda r: sum(1 for c in r.records if c.method == "CALLBACK"))
    cols["API Contacts"] = ("count", lambda r: sum(1 for c in r.records if c.method == "API"))
    for x in THRESHOLDS:
        cols[f"Contacts answered in {x} seconds"] = ("count", lambda r, x=x: r.answered_in(x))
    cols["Contacts queued"] = ("count", lambda r: len(r.queued))
    cols.update(_counts_transfer(queue=True))
    cols["Error status time"] = ("ms", lambda r: r.state_ms["ERROR"])
    cols["Customer hold time"] = ("ms", lambda r: r.sum_ms(r.handled, lambda c: c.hold_ms))
    cols["Agent answer rate"] = ("pct", lambda r: _pct(len(r.answered_attempts), len(r.answered_attempts) + len(r.missed)))
    cols["Maximum queued time"] = ("ms", lambda r: max((c.queue_wait_ms for c in r.queued), default=None))
    cols["Contacts missed"] = ("count", lambda r: len(r.missed))
    cols["Contact handle time"] = ("ms", lambda r: r.sum_ms(r.handled, r.handle_ms))
    cols["Contact flow time"] = ("ms", lambda r: r.sum_ms(r.records, lambda c: c.flow_ms))
    cols["Occupancy"] = ("pct", lambda r: _pct(r.state_ms["CONTACT"], r.state_ms["CONTACT"] + r.idle_ms()))
    for x in THRESHOLDS:
        cols[f"Service level {x} seconds"] = ("pct", lambda r, x=x: _pct(r.answered_in(x), len(r.queued)))
    cols.update(_tail())
    cols["Contacts queued (enqueue timestamp)"] = ("count", lambda r: len(r.enqueued_here))
    cols["Abandonment rate"] = ("pct", lambda r: _pct(len(r.abandoned), len(r.queued)))
    cols["Callback attempts"] = ("count", lambda r: sum(c.callback_retries for c in r.records if c.method == "CALLBACK"))
    cols["Contacts created"] = ("count", lambda r: len(r.created_here))
    cols["Contact disconnected"] = ("count", lambda r: len(r.records))
    return cols


def _averages() -> dict:
    return {
        "Average after contact work time": ("avg", lambda r: _mean(r.sum_ms(r.handled, lambda c: c.acw_ms), len(r.handled))),
        "Average handle time": ("avg", lambda r: _mean(r.sum_ms(r.handled, r.handle_ms), len(r.handled))),
        "Average customer hold time": ("avg", lambda r: _mean(
            r.sum_ms(r.handled, lambda c: c.hold_ms), sum(1 for c in r.handled if c.hold_count))),
        "Average agent interaction and customer hold time": ("avg", lambda r: _mean(
            r.sum_ms(r.handled, lambda c: c.interaction_ms + c.hold_ms), len(r.handled))),
        "Average agent interaction time": ("avg", lambda r: _mean(
            r.sum_ms(r.handled, lambda c: c.interaction_ms), len(r.handled))),
    }


def _counts_handled() -> dict:
    return {
        "Contacts agent hung up first": ("count", lambda r: sum(1 for c in r.handled if c.agent_hung_up_first)),
        "Contacts consulted": ("count", lambda r: sum(1 for c in r.handled if c.consulted)),
        "Contacts handled": ("count", lambda r: len(r.handled)),
        "Contacts handled incoming": ("count", lambda r: sum(1 for c in r.handled if c.method == "INBOUND")),
        "Contacts handled outbound": ("count", lambda r: len(r.outbound())),
    }


def _counts_hold() -> dict:
    return {
        "Contacts put on hold": ("count", lambda r: sum(1 for c in r.handled if c.hold_count)),
        "Contacts hold disconnect": ("count", lambda r: sum(1 for c in r.handled if c.hold_disconnect)),
        "Contacts hold agent disconnect": ("count", lambda r: sum(1 for c in r.handled if c.hold_disconnect == "AGENT")),
        "Contacts hold customer disconnect": ("count", lambda r: sum(1 for c in r.handled if c.hold_disconnect == "CUSTOMER")),
    }


def _counts_transfer(queue: bool) -> dict:
    cols = {
        "Contacts transferred in": ("count", lambda r: sum(1 for c in r.records if c.method == "TRANSFER")),
        # out = by agent + moved out of the queue by the flow; internal = to a queue or agent.
        "Contacts transferred out": ("count", lambda r: r.transferred_out_by_agent() + r.transferred_out_from_queue()),
        "Contacts transferred out internal": ("count", lambda r: r.transferred_out_by_agent("INTERNAL") + r.transferred_out_from_queue()),
        "Contacts transferred out external": ("count", lambda r: r.transferred_out_by_agent("EXTERNAL")),
    }
    if queue:
        cols["Contacts transferred in from queue"] = ("count", lambda r: sum(1 for c in r.records if c.transferred_in == "FROM_QUEUE"))
        cols["Contacts transferred out from queue"] = ("count", lambda r: r.transferred_out_from_queue())
    cols["Contacts transferred in by agent"] = ("count", lambda r: sum(1 for c in r.records if c.transferred_in == "BY_AGENT"))
    cols["Contacts transferred out by agent"] = ("count", lambda r: r.transferred_out_by_agent())
    return cols


def _tail() -> dict:
    """Online time .. Contacts handled (connected to agent timestamp), shared by both reports."""
    return {
        "Online time": ("ms", lambda r: r.online_ms),
        "Agent interaction and hold time": ("ms", lambda r: r.sum_ms(r.handled, lambda c: c.interaction_ms + c.hold_ms)),
        "Agent interaction time": ("ms", lambda r: r.sum_ms(r.handled, lambda c: c.interaction_ms)),
        "Average outbound agent interaction time": ("avg", lambda r: _mean(
            r.sum_ms(r.outbound(), lambda c: c.interaction_ms), len(r.outbound()))),
        "Average outbound after contact work time": ("avg", lambda r: _mean(
            r.sum_ms(r.outbound(), lambda c: c.acw_ms), len(r.outbound()))),
        # No schedules in this center (forecasting and scheduling is off): no adherence data.
        "Adherence": ("pct", lambda r: None),
        "Adherent time": ("ms", lambda r: None),
        "Non-Adherent time": ("ms", lambda r: None),
        "Scheduled time": ("ms", lambda r: None),
        "Agent non-response": ("count", lambda r: len(r.missed)),
        "Agent non-response without customer abandons": ("count", lambda r: sum(1 for m in r.missed if not m.customer_abandoned)),
        "Contacts handled (connected to agent timestamp)": ("count", lambda r: len(r.connected_here)),
    }


def _agent_columns() -> dict:
    cols = {
        "Agent Name": ("text", lambda r: f"{r.agent['first_name']} {r.agent['last_name']}"),
        "Agent First Name": ("text", lambda r: r.agent["first_name"]),
        "Agent Last Name": ("text", lambda r: r.agent["last_name"]),
    }
    cols.update(_columns_common())
    cols.update(_averages())
    cols.update(_counts_handled())
    cols.update(_counts_hold())
    cols.update(_counts_transfer(queue=False))
    cols["Error status time"] = ("ms", lambda r: r.state_ms["ERROR"])
    cols["Customer hold time"] = ("ms", lambda r: r.sum_ms(r.handled, lambda c: c.hold_ms))
    cols["Agent answer rate"] = ("pct", lambda r: _pct(len(r.answered_attempts), len(r.answered_attempts) + len(r.missed)))
    cols["Contacts missed"] = ("count", lambda r: len(r.missed))
    cols["Contact handle time"] = ("ms", lambda r: r.sum_ms(r.handled, r.handle_ms))
    cols["Occupancy"] = ("pct", lambda r: _pct(r.state_ms["CONTACT"], r.state_ms["CONTACT"] + r.idle_ms()))
    cols.update(_tail())
    return cols


_ReportColumns.QUEUE = _queue_columns()
_ReportColumns.AGENT = _agent_columns()


# --------------------------------------------------------------------------------------------
# API metrics (GetMetricDataV2's definitions), written apart from the report columns


class _ApiScope:
    """The records one metric value is computed from: a time window and filters."""

    def __init__(self, center: ContactCenter, start: int, end: int, filters: dict[str, set[str]], metric_filters: dict):
        self.center, self.start, self.end = center, start, end
        self.filters, self.metric_filters = filters, metric_filters

    def _match(self, queue_id: str | None, agent_id: str | None, method: str | None = None) -> bool:
        queues, agents = self.filters.get("QUEUE"), self.filters.get("AGENT")
        if queues is not None and queue_id not in queues:
            return False
        if agents is not None and agent_id not in agents:
            return False
        wanted = self.metric_filters.get("INITIATION_METHOD")
        if wanted is not None and method is not None:
            values, negate = wanted
            if (method in values) == negate:
                return False
        return True

    def contacts_at(self, timestamp: str) -> list[Contact]:
        """Contacts whose `timestamp` attribute falls in the window (and pass the filters)."""
        found = []
        for c in self.center.contacts:
            moment = getattr(c, timestamp)
            if moment is not None and self.start <= moment < self.end and self._match(c.queue_id, c.agent_id, c.method):
                found.append(c)
        return found

    def disconnected(self) -> list[Contact]:
        return self.contacts_at("disconnected")

    def misses(self) -> list[Miss]:
        return [m for m in self.center.misses
                if self.start <= m.at < self.end and self._match(m.contact.queue_id, m.agent_id, m.contact.method)]

    def agent_ids(self) -> list[str]:
        wanted = self.filters.get("AGENT")
        return [a["id"] for a in self.center.agents if wanted is None or a["id"] in wanted]

    def state_ms(self, kind: str) -> int:
        """Milliseconds the agents spent in a state (segments split by the wall clock)."""
        return sum(overlap(s.start, s.end, self.start, self.end)
                   for s in self.center.segments if s.kind == kind and s.agent_id in self.agent_ids())

    def online_ms(self) -> int:
        return sum(self.center._online_ms(a, self.start, self.end) for a in self.agent_ids())

    def idle_ms(self) -> int:
        """Online time not on a contact, ringing, non-productive or in error."""
        return self.online_ms() - sum(self.state_ms(k) for k in ("CONTACT", "CONNECTING", "NPT", "ERROR"))


@dataclasses.dataclass(frozen=True)
class ApiMetric:
    """One GetMetricDataV2 metric: where it may be grouped, whether it takes a threshold, its value."""

    groupings: frozenset[str]
    compute: Callable[[_ApiScope, tuple | None], float | None]
    threshold: bool = False


def _seconds(ms_values: Iterable[int]) -> float:
    return sum(ms_values) / MS


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    return None if denominator == 0 else scale * numerator / denominator


def _beats(wait_ms: int, threshold: tuple) -> bool:
    comparison, seconds = threshold
    return wait_ms < seconds * MS if comparison == "LT" else wait_ms <= seconds * MS


def _handled(s: _ApiScope) -> list[Contact]:
    return [c for c in s.disconnected() if c.connected is not None]


def _queued(s: _ApiScope) -> list[Contact]:
    return [c for c in s.disconnected() if c.enqueued is not None]


def _abandoned(s: _ApiScope) -> list[Contact]:
    return [c for c in _queued(s) if c.outcome == "ABANDONED"]


def _answer_rate(s: _ApiScope) -> float | None:
    """Routing attempts answered / routing attempts, counted when the agent's phone rang."""
    answered = [c for c in s.contacts_at("ring_started") if c.enqueued is not None]
    return _ratio(len(answered), len(answered) + len(s.misses()), 100.0)


def _occupancy(s: _ApiScope) -> float | None:
    """On-contact time / (on-contact + idle time)."""
    busy = s.state_ms("CONTACT")
    return _ratio(busy, busy + s.idle_ms(), 100.0)


QA = frozenset({"QUEUE", "AGENT", "CHANNEL"})  # Queue, Channel, Agent among the valid groupings
Q = frozenset({"QUEUE", "CHANNEL"})
A = frozenset({"AGENT"})


def _longest_wait(contacts: list[Contact]) -> float | None:
    waits = [c.left_queue - c.enqueued for c in contacts]
    return max(waits) / MS if waits else None


def _count(select: Callable[[_ApiScope], list]) -> Callable[[_ApiScope, tuple | None], float]:
    return lambda s, t: float(len(select(s)))


API_METRICS: dict[str, ApiMetric] = {
    "ABANDONMENT_RATE": ApiMetric(QA, lambda s, t: _ratio(len(_abandoned(s)), len(_queued(s)), 100.0)),
    "AGENT_ANSWER_RATE": ApiMetric(QA, lambda s, t: _answer_rate(s)),
    "AGENT_NON_RESPONSE": ApiMetric(QA, _count(lambda s: s.misses())),
    "AGENT_NON_RESPONSE_WITHOUT_CUSTOMER_ABANDONS": ApiMetric(
        QA, _count(lambda s: [m for m in s.misses() if not m.customer_abandoned])),
    "AGENT_OCCUPANCY": ApiMetric(A, lambda s, t: _occupancy(s)),
    "AVG_ABANDON_TIME": ApiMetric(QA, lambda s, t: _ratio(_seconds(c.left_queue - c.enqueued for c in _abandoned(s)), len(_abandoned(s)))),
    "AVG_AFTER_CONTACT_WORK_TIME": ApiMetric(QA, lambda s, t: _ratio(_seconds(c.acw_ms for c in _handled(s)), len(_handled(s)))),
    "AVG_HANDLE_TIME": ApiMetric(QA, lambda s, t: _ratio(
        _seconds(c.interaction_ms + c.hold_ms + c.acw_ms for c in _handled(s)), len(_handled(s)))),
    # Averaged over the contacts that were put on hold (AVG_HOLD_TIME_ALL_CONTACTS is the other one).
    "AVG_HOLD_TIME": ApiMetric(QA, lambda s, t: _ratio(
        _seconds(c.hold_ms for c in _handled(s)), len([c for c in _handled(s) if c.hold_count > 0]))),
    "AVG_INTERACTION_AND_HOLD_TIME": ApiMetric(QA, lambda s, t: _ratio(
        _seconds(c.interaction_ms + c.hold_ms for c in _handled(s)), len(_handled(s)))),
    "AVG_INTERACTION_TIME": ApiMetric(Q, lambda s, t: _ratio(_seconds(c.interaction_ms for c in _handled(s)), len(_handled(s)))),
    "AVG_QUEUE_ANSWER_TIME": ApiMetric(Q, lambda s, t: _ratio(
        _seconds(c.connected - c.enqueued for c in _queued(s) if c.outcome == "ANSWERED"),
        len([c for c in _queued(s) if c.outcome == "ANSWERED"]))),
    "CONTACTS_ABANDONED": ApiMetric(QA, _count(_abandoned)),
    "CONTACTS_CREATED": ApiMetric(Q, _count(lambda s: s.contacts_at("initiated"))),
    "CONTACTS_HANDLED": ApiMetric(QA, _count(_handled)),
    "CONTACTS_HANDLED_BY_CONNECTED_TO_AGENT": ApiMetric(QA, _count(lambda s: s.contacts_at("connected"))),
    "CONTACTS_HOLD_ABANDONS": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.hold_disconnect is not None])),
    "CONTACTS_ON_HOLD_AGENT_DISCONNECT": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.hold_disconnect == "AGENT"])),
    "CONTACTS_ON_HOLD_CUSTOMER_DISCONNECT": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.hold_disconnect == "CUSTOMER"])),
    "CONTACTS_PUT_ON_HOLD": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.hold_count > 0])),
    "CONTACTS_QUEUED": ApiMetric(QA, _count(_queued)),
    "CONTACTS_QUEUED_BY_ENQUEUE": ApiMetric(QA, _count(lambda s: s.contacts_at("enqueued"))),
    "CONTACTS_TRANSFERRED_OUT": ApiMetric(QA, _count(
        lambda s: [c for c in s.disconnected() if c.agent_transfer or c.outcome == "QUEUE_TRANSFER"])),
    "CONTACTS_TRANSFERRED_OUT_BY_AGENT": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.agent_transfer])),
    "CONTACTS_TRANSFERRED_OUT_EXTERNAL": ApiMetric(QA, _count(lambda s: [c for c in _handled(s) if c.agent_transfer == "EXTERNAL"])),
    "CONTACTS_TRANSFERRED_OUT_FROM_QUEUE": ApiMetric(QA, _count(lambda s: [c for c in s.disconnected() if c.outcome == "QUEUE_TRANSFER"])),
    "CONTACTS_TRANSFERRED_OUT_INTERNAL": ApiMetric(QA, _count(
        lambda s: [c for c in s.disconnected() if c.agent_transfer == "INTERNAL" or c.outcome == "QUEUE_TRANSFER"])),
    "MAX_QUEUED_TIME": ApiMetric(QA, lambda s, t: _longest_wait(_queued(s))),
    "SERVICE_LEVEL": ApiMetric(Q, lambda s, t: _ratio(
        len([c for c in _queued(s) if c.outcome == "ANSWERED" and _beats(c.connected - c.enqueued, t)]), len(_queued(s)), 100.0),
        threshold=True),
    "SUM_AFTER_CONTACT_WORK_TIME": ApiMetric(QA, lambda s, t: _seconds(c.acw_ms for c in _handled(s))),
    "SUM_CONTACTS_ABANDONED_IN_X": ApiMetric(Q, lambda s, t: float(
        len([c for c in _abandoned(s) if _beats(c.left_queue - c.enqueued, t)])), threshold=True),
    "SUM_CONTACTS_ANSWERED_IN_X": ApiMetric(Q, lambda s, t: float(
        len([c for c in _queued(s) if c.outcome == "ANSWERED" and _beats(c.connected - c.enqueued, t)])), threshold=True),
    "SUM_CONTACTS_DISCONNECTED": ApiMetric(QA, _count(lambda s: s.disconnected())),
    "SUM_CONTACT_FLOW_TIME": ApiMetric(QA, lambda s, t: _seconds(c.flow_ms for c in s.disconnected())),
    "SUM_CONTACT_TIME_AGENT": ApiMetric(A, lambda s, t: s.state_ms("CONTACT") / MS),
    "SUM_ERROR_STATUS_TIME_AGENT": ApiMetric(A, lambda s, t: s.state_ms("ERROR") / MS),
    "SUM_HANDLE_TIME": ApiMetric(QA, lambda s, t: _seconds(c.interaction_ms + c.hold_ms + c.acw_ms for c in _handled(s))),
    "SUM_HOLD_TIME": ApiMetric(QA, lambda s, t: _seconds(c.hold_ms for c in _handled(s))),
    "SUM_IDLE_TIME_AGENT": ApiMetric(A, lambda s, t: s.idle_ms() / MS),
    "SUM_INTERACTION_AND_HOLD_TIME": ApiMetric(QA, lambda s, t: _seconds(c.interaction_ms + c.hold_ms for c in _handled(s))),
    "SUM_INTERACTION_TIME": ApiMetric(QA, lambda s, t: _seconds(c.interaction_ms for c in _handled(s))),
    "SUM_NON_PRODUCTIVE_TIME_AGENT": ApiMetric(A, lambda s, t: s.state_ms("NPT") / MS),
    "SUM_ONLINE_TIME_AGENT": ApiMetric(A, lambda s, t: s.online_ms() / MS),
    "SUM_RETRY_CALLBACK_ATTEMPTS": ApiMetric(Q, lambda s, t: float(
        sum(c.callback_retries for c in s.disconnected() if c.method == "CALLBACK"))),
}
