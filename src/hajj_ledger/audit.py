"""What an auditor reads: the trail (every event with both clocks, who recorded it and its position in the log) and
a journey as of a past moment: as the ledger knew it at a position or a recorded time, or as things had happened
by a business time.

The agency and the recorded time live inside each event's stored payload, which has no index: the trail filters
them on decoded events, so one page reads a bounded stretch of the log and may end short of its limit (even
empty) with a cursor to carry on from. The event type and the position range are filtered by the store itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from hajj_ledger.catalogue import JOURNEY_STEPS, STEPS, RecordedEvent, check_step
from hajj_ledger.errors import LedgerError, NotFoundError, ValidationError
from hajj_ledger.journey import Journey
from hajj_ledger.trip import Trip
from hajj_ledger.vocabulary import Role, hijri, makkah_day

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger

MAX_LIMIT = 1000
SCAN = 10_000  # events one page of the trail reads at most, however few of them match
_CHUNK = 1000
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "stamp", "originator_topic"})


def payload(event: RecordedEvent) -> dict[str, Any]:
    """The event's own fields, as JSON values (events carry no personal data: ids, places, times, codes)."""
    return {f.name: plain(getattr(event, f.name)) for f in dataclasses.fields(event) if f.name not in _ENVELOPE}


def plain(value: Any) -> Any:
    """A value as JSON has it: times in ISO 8601, ids and codes as text."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Entry:
    """One event of the trail."""

    position: int  # its notification id in the log
    aggregate: str  # "journey" or "trip"
    aggregate_id: UUID
    version: int
    event: str
    occurred_at: datetime  # when it happened, by the recording agency's account
    recorded_at: datetime  # when the ledger recorded it (the library's timestamp)
    agency_id: str
    role: Role
    command_id: UUID
    correlation_id: UUID | None
    fields: dict[str, Any]
    late_correction: str | None = None  # why it was reported so late, when it was a late correction

    @classmethod
    def of(cls, position: int, event: RecordedEvent) -> Entry:
        stamp = event.stamp
        return cls(
            position, "journey" if isinstance(event, Journey.Event) else "trip", event.originator_id,
            event.originator_version, type(event).__name__, stamp.occurred_at, event.recorded_at, stamp.agency_id,
            stamp.role, stamp.command_id, stamp.correlation_id, payload(event), stamp.late_reason,
        )  # fmt: skip


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValidationError(name, "needs a time zone (e.g. 2025-06-05T08:30:00Z)")


@dataclass(frozen=True)
class TrailQuery:
    """Which events: of one journey or trip, by one agency, of one type, recorded within a time range and lying
    within a position range (both ranges inclusive, each end optional)."""

    aggregate_id: UUID | None = None
    agency_id: str | None = None
    event: str | None = None
    recorded_from: datetime | None = None
    recorded_until: datetime | None = None
    from_position: int | None = None
    until_position: int | None = None

    def __post_init__(self) -> None:
        if self.event is not None and self.event not in STEPS:
            raise ValidationError("event", f"no event {self.event!r}; known: {', '.join(STEPS)}")
        _aware("recorded_from", self.recorded_from)
        _aware("recorded_until", self.recorded_until)
        if self.recorded_from and self.recorded_until and self.recorded_until < self.recorded_from:
            raise ValidationError("recorded_until", "is before recorded_from")
        for name in ("from_position", "until_position"):
            if (getattr(self, name) or 0) < 0:
                raise ValidationError(name, "must not be negative")
        if self.from_position and self.until_position is not None and self.until_position < self.from_position:
            raise ValidationError("until_position", "is before from_position")

    def admits(self, entry: Entry) -> bool:
        return (
            (self.agency_id is None or entry.agency_id == self.agency_id)
            and (self.event is None or entry.event == self.event)
            and (self.recorded_from is None or entry.recorded_at >= self.recorded_from)
            and (self.recorded_until is None or entry.recorded_at <= self.recorded_until)
            and (self.until_position is None or entry.position <= self.until_position)
        )


@dataclass(frozen=True)
class TrailPage:
    entries: list[Entry]
    next_after: int | None  # the position to carry on after; None: nothing more matches


def trail(ledger: JourneyLedger, query: TrailQuery, after: int = 0, limit: int = 100) -> TrailPage:
    """The events `query` admits after position `after`, in log order: at most `limit`, reading at most SCAN."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be from 1 to {MAX_LIMIT}")
    if after < 0:
        raise ValidationError("after", "must not be negative")
    start = max(after, (query.from_position or 1) - 1)
    if query.aggregate_id is not None:
        notifications: Iterator[Notification] = iter(_aggregate(ledger, query.aggregate_id, start))
    else:
        notifications = _log(ledger, start, query.until_position, [_topic(query.event)] if query.event else [])
    found: list[Entry] = []
    scanned = last = 0
    for notification in notifications:
        entry = Entry.of(notification.id, ledger.mapper.to_domain_event(notification))  # type: ignore[arg-type]
        if query.admits(entry):
            if len(found) == limit:  # one more matches: the page is full and there is a next one
                return TrailPage(found, found[-1].position)
            found.append(entry)
        scanned, last = scanned + 1, notification.id
        if scanned == SCAN:
            return TrailPage(found, last)
    return TrailPage(found, None)


def _aggregate(ledger: JourneyLedger, aggregate_id: UUID, after: int) -> list[Notification]:
    notifications = ledger.store.select_aggregate_notifications(aggregate_id)
    if not notifications:
        raise NotFoundError(f"no journey or trip {aggregate_id}")
    return [n for n in notifications if n.id > after]


def _log(ledger: JourneyLedger, after: int, stop: int | None, topics: list[str]) -> Iterator[Notification]:
    while True:
        chunk = ledger.recorder.select_notifications(start=after + 1, limit=_CHUNK, stop=stop, topics=topics)
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        after = chunk[-1].id


def _topic(event: str) -> str:
    return get_topic(getattr(Journey if event in JOURNEY_STEPS else Trip, event))


@dataclass(frozen=True)
class AsOf:
    """A moment of the past, given one way: a position in the log or a recorded time (what the ledger knew then),
    or a business time (what had happened by then, by the recording agencies' own clocks)."""

    position: int | None = None
    recorded_at: datetime | None = None
    occurred_at: datetime | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("position", "recorded_at", "occurred_at") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValidationError(
                "as_of",
                f"give exactly one of position, recorded_at and occurred_at (given: {', '.join(given) or 'none'})",
            )
        if self.position is not None and self.position < 0:
            raise ValidationError("position", "must not be negative")
        _aware("recorded_at", self.recorded_at)
        _aware("occurred_at", self.occurred_at)

    def __str__(self) -> str:
        if self.position is not None:
            return f"position {self.position}"
        if self.recorded_at is not None:
            return f"what was recorded by {self.recorded_at.isoformat()}"
        assert self.occurred_at is not None
        return f"what had happened by {self.occurred_at.isoformat()}"


@dataclass(frozen=True)
class PastJourney:
    """A journey as of a moment: its state, the last event taken into account, and (business time only) the events
    that had happened by then but that the journey's rules refuse on the state the others built, with why."""

    journey: Journey
    position: int
    events: int
    refused: list[tuple[Entry, str]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        journey = self.journey
        public = {k: v for k, v in vars(journey).items() if not k.startswith("_")}
        return {"journey_id": journey.id, "version": journey.version, "recorded_at": journey.modified_on, **public}


def within_head(ledger: JourneyLedger, position: int, field: str) -> None:
    """Refuse a position the ledger has not reached: the past only."""
    if position < 0:
        raise ValidationError(field, "must not be negative")
    if position > (head := ledger.head()):
        raise ValidationError(field, f"{position} is beyond the ledger's head ({head})")


def journey_as_of(ledger: JourneyLedger, journey_id: UUID, at: AsOf) -> PastJourney:
    if at.position is not None:
        within_head(ledger, at.position, "position")
    decode = ledger.mapper.to_domain_event
    events: list[tuple[int, Any]] = [(n.id, decode(n)) for n in ledger.store.select_aggregate_notifications(journey_id)]
    if not events or not isinstance(events[0][1], Journey.Registered):
        raise NotFoundError(f"journey {journey_id} not found")
    if at.occurred_at is None:
        # A journey's events are recorded in version order, so these are a prefix of its history: the library's
        # own replay, as when the ledger read it then.
        known = [(p, e) for p, e in events if p <= at.position] if at.position is not None else [
            (p, e) for p, e in events if e.recorded_at <= at.recorded_at
        ]  # fmt: skip
        if not known:
            raise NotFoundError(f"journey {journey_id} was not yet recorded at {at}")
        journey = None
        for _, event in known:
            journey = event.mutate(journey)
        assert isinstance(journey, Journey)
        return PastJourney(journey, known[-1][0], len(known))
    return _happened(journey_id, [(p, e) for p, e in events if e.stamp.occurred_at <= at.occurred_at], at)


def _happened(journey_id: UUID, happened: list[tuple[int, Any]], at: AsOf) -> PastJourney:
    """Replay the events that had happened by a business time, in log order. They need not be a prefix: an agency
    may report later what happened earlier. Each is checked against the journey's rules on the state the earlier
    ones built (as the ledger checked it when recorded), and one the rules refuse there is left out and reported:
    its agency's clock says it happened before an event it depends on."""
    if not happened or not isinstance(happened[0][1], Journey.Registered):
        raise NotFoundError(f"journey {journey_id} had not been registered by {at}")
    (position, registered), *rest = happened
    journey = registered.mutate(None)
    applied, refused = 1, []
    for at_position, event in rest:
        try:
            check_step(JOURNEY_STEPS, type(event).__name__, journey, vars(event))
        except LedgerError as refusal:
            refused.append((Entry.of(at_position, event), refusal.message))
            continue
        # The library's mutate would insist on consecutive versions; this subset has gaps by design.
        event.apply(journey)
        journey.version = event.originator_version
        journey.modified_on = event.recorded_at
        position, applied = at_position, applied + 1
    return PastJourney(journey, position, applied, refused)


def event_json(event: Journey.Event) -> dict[str, Any]:
    stamp = event.stamp
    return {
        "version": event.originator_version,
        "event": type(event).__name__,
        "journey_id": str(event.originator_id),
        "occurred_at": stamp.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "agency_id": stamp.agency_id,
        "role": str(stamp.role),
        "command_id": str(stamp.command_id),
        "correlation_id": str(stamp.correlation_id) if stamp.correlation_id else None,
        "late_correction": stamp.late_reason,
        "details": payload(event),
    }


def print_history(events: Sequence[Journey.Event], *, as_json: bool) -> None:
    for event in events:
        row = event_json(event)
        if as_json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            details = " ".join(f"{k}={v}" for k, v in row["details"].items())
            if row["late_correction"]:
                details += f" (late correction: {row['late_correction']})"
            day = makkah_day(event.stamp.occurred_at)
            print(
                f"{row['version']:>3}  {row['event']:<22} happened {row['occurred_at']} ({day} in Makkah, "
                f"{hijri(day)})  "
                f"recorded {row['recorded_at']}  by {row['role']}:{row['agency_id']}  {details}"
            )
