"""What an auditor reads: the trail (every event with both clocks, who recorded it and its position in the log),
the journeys there were at a position, and a journey's history; a journey as of a past moment is `as_of.py`'s.

The agency and the recorded time live inside each event's stored payload, which the store does not index. A trail
filtered by agency, event or recorded time is therefore answered from the trail's index (`trail_index`, kept from
the log by the projection runner like any read model; projections/trail_index.py), read on the same connection as
the log itself, so a page costs the same however large the log. What the index has not reached yet (the last few
events while the runner follows the log; all of it before the first `hajj-ledger migrate`) is read from the log
and filtered on decoded events, at most SCAN of them per page: such a page may end short of its limit (even empty)
with a cursor to carry on from. Either way the entries, their order and the cursors are the same.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from hajj_ledger.domain.aggregates import AGGREGATE_OF, KIND
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.errors import NotFoundError, ValidationError
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, hijri, makkah_day
from hajj_ledger.store.codec import stored_topic

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger

MAX_LIMIT = 1000
SCAN = 10_000  # events one page of the trail reads at most, however few of them match
_CHUNK = 1000
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "stamp", "originator_topic"})
# The trail's index, as the projection runner keeps it (projections/trail_index.py): one row per position, and the
# earliest and latest recorded time of each block of BLOCK positions.
INDEX_TABLE = "trail_index"
BLOCKS_TABLE = "trail_index_blocks"
BLOCK = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def microseconds(moment: datetime) -> int:
    """A recorded time as the index keeps it: whole microseconds since the epoch, exact on either store."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def payload(event: RecordedEvent) -> dict[str, Any]:
    """The event's own fields, as JSON values (events carry no personal data: ids, places, times, codes)."""
    return {name: plain(getattr(event, name)) for name, _ in payload_fields(type(event))}


@functools.cache
def payload_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """An event class's own fields, in order, each with its default (`dataclasses.MISSING` when it has none)."""
    return tuple((f.name, f.default) for f in dataclasses.fields(cls) if f.name not in _ENVELOPE)


def plain(value: Any) -> Any:
    """A value as JSON has it: times in ISO 8601, ids and codes as text."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):  # an offer's buildings: a list of ids, not the tuple's repr
        return [plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Entry:
    """One event of the trail."""

    position: int  # its notification id in the log
    aggregate: str  # "journey", "trip", "offer", "contract" or "building"
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
            position, KIND[AGGREGATE_OF[type(event).__name__]], event.originator_id,
            event.originator_version, type(event).__name__, stamp.occurred_at, event.recorded_at, stamp.agency_id,
            stamp.role, stamp.command_id, stamp.correlation_id, payload(event), stamp.late_reason,
        )  # fmt: skip


def zoned(name: str, value: datetime | None) -> None:
    """Refuse a time without its zone: one without is ambiguous by hours."""
    if value is not None and value.utcoffset() is None:
        raise ValidationError(name, "needs a time zone (e.g. 2025-06-05T08:30:00Z)")


@dataclass(frozen=True)
class TrailQuery:
    """Which events: of one journey or trip, by one agency, of one type, recorded within a time range and lying
    within a position range (both ranges inclusive, each end optional), of one season's journeys, trips, offers and
    contracts (the store's season of each event: a season's own events and buildings' are of none)."""

    aggregate_id: UUID | None = None
    agency_id: str | None = None
    event: str | None = None
    recorded_from: datetime | None = None
    recorded_until: datetime | None = None
    from_position: int | None = None
    until_position: int | None = None
    season: int | None = None

    def __post_init__(self) -> None:
        if self.event is not None and self.event not in STEPS:
            raise ValidationError("event", f"no event {self.event!r}; known: {', '.join(STEPS)}")
        zoned("recorded_from", self.recorded_from)
        zoned("recorded_until", self.recorded_until)
        if self.recorded_from and self.recorded_until and self.recorded_until < self.recorded_from:
            raise ValidationError("recorded_until", "is before recorded_from")
        for name in ("from_position", "until_position"):
            if (getattr(self, name) or 0) < 0:
                raise ValidationError(name, "must not be negative")
        if self.from_position and self.until_position is not None and self.until_position < self.from_position:
            raise ValidationError("until_position", "is before from_position")

    @property
    def indexed(self) -> bool:
        """Whether the trail's index narrows this query down (an aggregate's own events need no index)."""
        wanted = (self.agency_id, self.event, self.recorded_from, self.recorded_until, self.season)
        return self.aggregate_id is None and any(v is not None for v in wanted)

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
    """The events `query` admits after position `after`, in log order: at most `limit`. The part of the log the
    trail's index covers is read through it; the rest is read and filtered event by event, at most SCAN."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be from 1 to {MAX_LIMIT}")
    if after < 0:
        raise ValidationError("after", "must not be negative")
    start = max(after, (query.from_position or 1) - 1)
    if query.aggregate_id is not None:
        if query.season is not None and not _of_season(ledger, query.aggregate_id, query.season):
            return TrailPage([], None)  # not of the season (or of none): the same in a closed season's archive
        return _scan(ledger, query, iter(_aggregate(ledger, query.aggregate_id, start)), [], limit)
    found: list[Entry] = []
    index = _Index(ledger) if query.indexed else None
    if index is not None and start < (reached := index.reached()):
        stop = reached if query.until_position is None else min(reached, query.until_position)
        found = index.page(query, start, stop, limit + 1)
        if len(found) > limit:  # one more matches: the page is full and there is a next one
            return TrailPage(found[:limit], found[limit - 1].position)
        start = reached
    topics = [_topic(query.event)] if query.event else []
    if query.season is not None:
        log = _season_log(ledger, query.season, start, query.until_position, topics)
    else:
        log = _log(ledger, start, query.until_position, topics)
    return _scan(ledger, query, log, found, limit)


def _scan(
    ledger: JourneyLedger, query: TrailQuery, notifications: Iterator[Notification], found: list[Entry], limit: int
) -> TrailPage:
    """`found`, then the notifications the query admits, decoded one by one: a page of at most `limit`, having read
    at most SCAN notifications."""
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


class _Index:
    """The trail's index, read on the ledger's own connection to the log (a standby's, if the ledger reads one): the
    index and the events it points to are then always of the same database."""

    def __init__(self, ledger: JourneyLedger) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder  # here: commands that never ask start faster

        self.ledger = ledger
        self.recorder = ledger.recorder
        self.postgres = isinstance(self.recorder, PostgresApplicationRecorder)

    def _sql(self, text: str) -> Any:
        """`text` for this store: its tables named in braces, its parameters as `?`."""
        events: str = self.recorder.events_table_name  # type: ignore[attr-defined]
        names = {"index": INDEX_TABLE, "blocks": BLOCKS_TABLE, "events": events}
        if not self.postgres:
            return text.format(position="rowid", **names)
        from psycopg import sql

        schema = self.recorder.datastore.schema  # type: ignore[attr-defined]
        tables = {k: sql.Identifier(schema, v) for k, v in names.items()}
        return sql.SQL(text.replace("?", "%s")).format(position=sql.Identifier("notification_id"), **tables)

    def _rows(self, text: str, *parameters: Any) -> list[Any]:
        with self.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute(self._sql(text), parameters)
            return list(cursor.fetchall())

    def reached(self) -> int:
        """The position up to which the index holds every event (0 when it is not installed): the runner applies
        the log in order, each batch with its position in one transaction."""
        if self.postgres:
            schema = self.recorder.datastore.schema  # type: ignore[attr-defined]
            [row] = self._rows("SELECT to_regclass(?) IS NOT NULL AS found", f'"{schema}"."{INDEX_TABLE}"')
        else:
            [row] = self._rows("SELECT count(*) > 0 AS found FROM sqlite_master WHERE name = ?", INDEX_TABLE)
        if not row["found"]:
            return 0
        [row] = self._rows("SELECT coalesce(max(position), 0) AS reached FROM {index}")
        return int(row["reached"])

    def page(self, query: TrailQuery, after: int, stop: int, limit: int) -> list[Entry]:
        """At most `limit` entries the query admits at positions after `after` up to `stop`, in log order."""
        low, high = self._bounds(query)
        after, stop = max(after, low - 1), min(stop, high)
        if stop <= after:
            return []
        conditions = ["position > ?", "position <= ?"]
        parameters: list[Any] = [after, stop]
        for condition, value in (
            ("agency_id = ?", query.agency_id),
            ("event = ?", query.event),
            ("recorded_us >= ?", query.recorded_from and microseconds(query.recorded_from)),
            ("recorded_us <= ?", query.recorded_until and microseconds(query.recorded_until)),
        ):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        indexed = "{index}"
        if query.season is not None:  # the season is the log's, beside each event
            indexed = "{index} AS x JOIN {events} AS s ON s.{position} = x.position"
            conditions.append("s.season = ?")
            parameters.append(query.season)
        rows = self._rows(
            "SELECT i.position, e.originator_id, e.originator_version, e.topic, e.state FROM "
            f"(SELECT position FROM {indexed} WHERE {' AND '.join(conditions)} ORDER BY position LIMIT ?) AS i "
            "JOIN {events} AS e ON e.{position} = i.position ORDER BY i.position",
            *parameters,
            limit,
        )
        return [Entry.of(r["position"], self.decoded(r, "position")) for r in rows]

    def decoded(self, row: Any, at: str) -> Any:
        """A row of the log (originator, version, topic, state, and its position under `at`) as its domain event."""
        return self.ledger.mapper.to_domain_event(self.notification(row, at))

    def notification(self, row: Any, at: str) -> Notification:
        return Notification(
            id=row[at],
            originator_id=row["originator_id"] if self.postgres else UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )

    def _bounds(self, query: TrailQuery) -> tuple[int, int]:
        """The positions a recorded-time range can lie within: from the first block whose latest recorded time is
        in or after the range, to the last block whose earliest is in or before it (exact whatever the order of
        the stamps: writers stamp events before they take the store's insert lock)."""
        low, high = 1, 2**62
        if query.recorded_from is not None:
            [row] = self._rows(
                "SELECT min(block) AS b FROM {blocks} WHERE latest_us >= ?", microseconds(query.recorded_from)
            )
            low = high if row["b"] is None else row["b"] * BLOCK
        if query.recorded_until is not None:
            [row] = self._rows(
                "SELECT max(block) AS b FROM {blocks} WHERE earliest_us <= ?", microseconds(query.recorded_until)
            )
            high = 0 if row["b"] is None else row["b"] * BLOCK + BLOCK - 1
        return low, high


# A journey's registration is its first event: the journeys there were at a position are those registered by then.
REGISTERED = stored_topic(get_topic(Journey.Registered))
_REGISTRATIONS = f"originator_version = 1 AND topic = '{REGISTERED}'"  # literal: a partial index is chosen by it


def registrations_index(events: str, position: str) -> str:
    """The index of the journeys' registrations, by journey id, with their positions (migration 0006): a page of the
    journeys there were at any position is then one short read of it, however long the log."""
    sqlite = position == "rowid"
    columns = "originator_id" if sqlite else f"originator_id, {position}"  # SQLite's rowid comes along
    # SQLite: in the main file, whose table a view of the same name may shadow (hajj_ledger.store.season_files).
    index = f"main.{events}_registrations" if sqlite else f"{events}_registrations"
    return f"CREATE INDEX IF NOT EXISTS {index} ON {events} ({columns}) WHERE {_REGISTRATIONS}"


def journeys_at(ledger: JourneyLedger, position: int, after: UUID | None, limit: int) -> list[UUID]:
    """The journeys registered by `position`, in the order of their ids, after `after`: at most `limit`."""
    log = _Index(ledger)
    parameters: list[Any] = [position]
    if after is not None:
        parameters.append(after if log.postgres else after.hex)
    rows = log._rows(
        f"SELECT originator_id AS id FROM {{events}} WHERE {_REGISTRATIONS} AND {{position}} <= ?"
        + (" AND originator_id > ?" if after is not None else "")
        + " ORDER BY originator_id LIMIT ?",
        *parameters,
        limit,
    )
    return [r["id"] if log.postgres else UUID(r["id"]) for r in rows]


def events_until(ledger: JourneyLedger, aggregate_ids: Sequence[UUID], position: int) -> list[tuple[int, Any]]:
    """Every event of these journeys or trips up to `position`, decoded, with its position, in log order."""
    if not aggregate_ids:
        return []
    log = _Index(ledger)
    if log.postgres:
        rows = log._rows(
            "SELECT {position} AS at, originator_id, originator_version, topic, state FROM {events} "
            "WHERE originator_id = ANY(?) AND {position} <= ? ORDER BY {position}",
            list(aggregate_ids),
            position,
        )
    else:
        marks = ",".join("?" * len(aggregate_ids))
        rows = log._rows(
            "SELECT {position} AS at, originator_id, originator_version, topic, state FROM {events} "
            f"WHERE originator_id IN ({marks}) AND {{position}} <= ? ORDER BY {{position}}",
            *(i.hex for i in aggregate_ids),
            position,
        )
    return [(r["at"], log.decoded(r, "at")) for r in rows]


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


def _of_season(ledger: JourneyLedger, aggregate_id: UUID, season: int) -> bool:
    log = _Index(ledger)
    rows = log._rows(
        "SELECT count(*) AS n FROM {events} WHERE originator_id = ? AND season = ?",
        aggregate_id if log.postgres else aggregate_id.hex,
        season,
    )
    return bool(rows[0]["n"])


def _season_log(
    ledger: JourneyLedger, season: int, after: int, stop: int | None, topics: list[str]
) -> Iterator[Notification]:
    """`_log`, of one season's events: read by the season the store keeps beside each event."""
    log = _Index(ledger)
    conditions = "season = ? AND {position} > ?" + (" AND {position} <= ?" if stop is not None else "")
    conditions += "".join(" AND topic = ?" for _ in topics[:1])
    while True:
        bounds = [after, *([stop] if stop is not None else []), *topics[:1]]
        rows = log._rows(
            "SELECT {position} AS at, originator_id, originator_version, topic, state FROM {events} "
            f"WHERE {conditions} ORDER BY {{position}} LIMIT ?",
            season,
            *bounds,
            _CHUNK,
        )
        yield from (log.notification(row, "at") for row in rows)
        if len(rows) < _CHUNK:
            return
        after = rows[-1]["at"]


def _topic(event: str) -> str:
    return stored_topic(get_topic(getattr(AGGREGATE_OF[event], event)))


def within_head(ledger: JourneyLedger, position: int, field: str) -> None:
    """Refuse a position the ledger has not reached: the past only."""
    if position < 0:
        raise ValidationError(field, "must not be negative")
    if position > (head := ledger.head()):
        raise ValidationError(field, f"{position} is beyond the ledger's head ({head})")


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
