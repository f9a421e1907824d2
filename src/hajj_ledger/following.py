"""The log as agencies follow it: each event after a position, rendered once as the trail renders it (no personal
data: ids, places, times, codes), with what deciding who is told of it needs: its aggregate's owners as of the event
(the columns of its kind in SCOPES) and its season. The change feed (`GET /v1/feed`) and the relay to NATS
(`hajj-ledger publish`) both read the log through it.

Events are rendered straight from their stored JSON, without building domain events: the trail's rendering (`Entry`)
is that JSON with its times in UTC written with a `Z`, so decoding each value only to write it back again was most of
the relay's cost. Events stored at an older version of their class are upcast as the codec upcasts them.

Events name their aggregate, not its owners: those come from its first event (a journey's mission is who registered
it, an offer's company, a contract's mission and company, a building's operator) and, for a journey, its
`PackageContracted`; remembered as they pass, and read from the store in one query for the aggregates a stretch of
the log meets first. A company is told of a journey's events from its contract on, whenever the stretch is read
(live, or resumed a day later), so what an agency is told never depends on when it asked. What a `Following` learns
decides what its reader tells, so the one that tells live readers follows the log alone, in its order; a reader of
the past reads through one of its own (api/feed.py). Meeting a first event again (a stretch read anew) keeps what
was learned since.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from eventsourcing.utils import resolve_topic

from hajj_ledger.audit.reads import payload_fields, plain
from hajj_ledger.domain.aggregates import AGGREGATE_OF, KIND
from hajj_ledger.domain.catalogue import SCOPES
from hajj_ledger.domain.vocabulary import SEASONS, Role
from hajj_ledger.store.codec import current_state

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger

KNOWN_AGGREGATES = 200_000  # aggregates whose owners are remembered (about 150 bytes each)
CONTRACTED = "PackageContracted"  # a journey's company owns it from this event on
_ROLES = {role.value: role for role in Role}  # a dictionary's lookup costs a twentieth of calling the enum


@dataclass(slots=True)  # not frozen, though never changed: a frozen one took a tenth of the relay's time to build
class Told:
    """One event as agencies are told of it."""

    position: int
    event: str  # its name, as in the catalogue
    role: Role  # who recorded it
    agency_id: str
    occurred_at: datetime  # when it happened, by the recording agency's account
    season: int | None  # its journey's, offer's or contract's; None for a trip's or a building's event
    owners: Mapping[str, str | None] | None  # its aggregate's SCOPES columns as of this event; None: a trip's, unknown
    body: bytes  # the event as JSON, as the trail gives it


@functools.cache
def _season_ids() -> dict[int, int]:
    """Each season's aggregate's id (as an integer), to its season: ids are made from the season's number."""
    from hajj_ledger.domain.season import Season

    return {Season.create_id(season).int: season for season in SEASONS}


@dataclass(frozen=True, slots=True)
class _Kind:
    """What rendering the stored events of one topic needs, worked out once."""

    cls: type
    event: str
    aggregate: str  # as the trail names it
    scopes: Mapping[Role, tuple[str, str]]  # SCOPES of its aggregate: the owners to remember (none: a trip)
    fields: tuple[tuple[str, Any], ...]  # its own fields, each with its default as JSON (MISSING: none)


@functools.cache
def _kind(topic: str) -> _Kind:
    cls = resolve_topic(topic)
    aggregate = AGGREGATE_OF[cls.__name__]
    fields = tuple(
        (name, default if default is dataclasses.MISSING else plain(default)) for name, default in payload_fields(cls)
    )
    return _Kind(cls, cls.__name__, KIND[aggregate], SCOPES[aggregate.__name__], fields)


def _utc_z(moment: str) -> str:
    """A stored time as the trail writes it (orjson's OPT_UTC_Z)."""
    return moment[:-6] + "Z" if moment.endswith("+00:00") else moment


@dataclass(slots=True)
class _Owned:
    season: int | None
    owners: dict[str, str | None]  # replaced, never changed: a Told keeps the owners as of its event
    contracted: int = 0  # a journey's PackageContracted's version (0: none yet)

    def as_of(self, version: int) -> dict[str, str | None]:
        if self.contracted and version < self.contracted:
            return {**self.owners, "company_id": None}
        return self.owners


class _Known:
    """The owners of the aggregates met most recently, at most `size` of them, by the id's integer: it is consulted
    once an event, and a UUID hashes and compares in Python, an int in C."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.owned: OrderedDict[int, _Owned] = OrderedDict()

    def get(self, key: int) -> _Owned | None:
        owned = self.owned.get(key)
        if owned is not None:
            self.owned.move_to_end(key)
        return owned

    def put(self, key: int, owned: _Owned) -> None:
        self.owned[key] = owned
        self.owned.move_to_end(key)
        if len(self.owned) > self.size:
            self.owned.popitem(last=False)


class Following:
    """Reads stretches of one ledger's log as `Told` events; safe to share between threads."""

    def __init__(self, ledger: JourneyLedger, known: int = KNOWN_AGGREGATES) -> None:
        self.ledger = ledger
        self._known = _Known(known)
        self._lock = threading.Lock()

    def read(self, after: int, limit: int, until: int | None = None) -> tuple[int, list[Told]]:
        """The events after `after` (up to `until`, inclusive), at most `limit`, and the position the stretch read
        reaches (`after` when there is nothing new)."""
        rows = self.ledger.store.select_written_after(after, limit)
        if until is not None and rows and rows[-1][0] > until:
            rows = [row for row in rows if row[0] <= until]
            if not rows:  # `until` itself is not in the log (PostgreSQL's positions can skip): the stretch ends there
                return max(after, until), []
        if not rows:
            return after, []
        events = [
            (position, aggregate_id, version, kind := _kind(topic), current_state(kind.cls, state))
            for position, aggregate_id, version, topic, state in rows
        ]
        with self._lock:
            created = {event[1].int for event in events if "originator_topic" in event[4]}
            self._learn(
                {
                    aggregate_id
                    for _, aggregate_id, _, kind, _ in events
                    if kind.scopes and aggregate_id.int not in self._known.owned and aggregate_id.int not in created
                }
            )
            return rows[-1][0], [self._told(*event) for event in events]

    def _learn(self, aggregates: set[Any]) -> None:
        """The owners of aggregates first met past their first event, from the store in one query."""
        if not aggregates:
            return
        for stored in self.ledger.store.select_events_of(sorted(aggregates)):
            if stored.originator_version == 1 or stored.topic.endswith(CONTRACTED):
                kind, key = _kind(stored.topic), UUID(str(stored.originator_id)).int
                self._note(kind, key, stored.originator_version, current_state(kind.cls, stored.state))

    def _note(self, kind: _Kind, key: int, version: int, state: dict[str, Any]) -> _Owned | None:
        """What the event at `version` of the aggregate whose id's integer is `key` tells of its owners."""
        known = self._known.get(key)
        if "originator_topic" in state:
            if known is not None:  # met again (a stretch read anew): what was learned since stays
                return known
            owners = {column: state.get(column) for column, _ in kind.scopes.values()}
            if Role.MISSION in kind.scopes and "mission_id" not in state:  # a journey: its mission registered it
                owners["mission_id"] = state["stamp"]["agency_id"]
            created = _Owned(state.get("season"), owners)
            self._known.put(key, created)
            return created
        if known is not None and kind.event == CONTRACTED:
            known.owners, known.contracted = {**known.owners, "company_id": state["company_id"]}, version
        return known

    def _told(self, position: int, aggregate_id: UUID, version: int, kind: _Kind, state: dict[str, Any]) -> Told:
        season: int | None = None
        owners: dict[str, str | None] | None = None
        if kind.scopes:
            owned = self._note(kind, aggregate_id.int, version, state)
            if owned is not None:  # an aggregate the store has no first event of has no owner to tell
                season, owners = owned.season, owned.as_of(version)
        else:  # a season's own events are of that season, whatever day they are recorded on
            season = _season_ids().get(aggregate_id.int)
        stamp = state["stamp"]
        fields = {
            name: state[name] if default is dataclasses.MISSING else state.get(name, default)
            for name, default in kind.fields
        }
        body = orjson.dumps(
            {
                "position": position, "aggregate": kind.aggregate, "aggregate_id": str(aggregate_id),
                "version": version, "event": kind.event, "occurred_at": _utc_z(stamp["occurred_at"]),
                "recorded_at": _utc_z(state["timestamp"]), "agency_id": stamp["agency_id"], "role": stamp["role"],
                "command_id": stamp["command_id"], "correlation_id": stamp["correlation_id"], "fields": fields,
                "late_correction": stamp.get("late_reason"),
            }
        )  # fmt: skip
        occurred_at = datetime.fromisoformat(stamp["occurred_at"])
        role = _ROLES[stamp["role"]]
        return Told(position, kind.event, role, stamp["agency_id"], occurred_at, season, owners, body)
