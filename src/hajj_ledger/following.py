"""The log as agencies follow it: each event after a position, rendered once as the trail renders it (no personal
data: ids, places, times, codes), with what deciding who is told of it needs: the journey's owners as of the event
(SCOPE's columns) and its season. The change feed (`GET /v1/feed`) and the relay to NATS (`hajj-ledger publish`)
both read the log through it.

Events name their journey, not its mission or company: those come from the journey's `Registered` and
`PackageContracted`, remembered as they pass, and read from the store in one query for the journeys a stretch of
the log meets first. A company is told of a journey's events from its contract on, whenever the stretch is read
(live, or resumed a day later), so what an agency is told never depends on when it asked.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from cachetools import LRUCache

from hajj_ledger.audit.reads import Entry
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger

KNOWN_JOURNEYS = 200_000  # journeys whose owners are remembered (about 150 bytes each)
_FIRST = ("Journey.Registered", "Journey.PackageContracted")  # the events a journey's owners come from


@dataclass(frozen=True, slots=True)
class Told:
    """One event as agencies are told of it."""

    position: int
    event: str  # its name, as in the catalogue
    role: Role  # who recorded it
    agency_id: str
    occurred_at: datetime  # when it happened, by the recording agency's account
    season: int | None  # the journey's; None for a trip's event
    owners: Mapping[str, str | None] | None  # the journey's mission_id and company_id as of this event; None: a trip's
    body: bytes  # the event as JSON, as the trail gives it


@dataclass(slots=True)
class _Owned:
    season: int
    mission_id: str
    company_id: str | None = None
    contracted: int = 0  # the version of its PackageContracted (0: none yet)

    def owners(self, version: int) -> dict[str, str | None]:
        company = self.company_id if self.contracted and version >= self.contracted else None
        return {"mission_id": self.mission_id, "company_id": company}


class Following:
    """Reads stretches of one ledger's log as `Told` events; safe to share between threads."""

    def __init__(self, ledger: JourneyLedger, known: int = KNOWN_JOURNEYS) -> None:
        self.ledger = ledger
        self._known: LRUCache[UUID, _Owned] = LRUCache(known)
        self._lock = threading.Lock()

    def read(self, after: int, limit: int, until: int | None = None) -> tuple[int, list[Told]]:
        """The events after `after` (up to `until`, inclusive), at most `limit`, and the position the stretch read
        reaches (`after` when there is nothing new)."""
        rows = self.ledger.recorder.select_notifications(start=after + 1, limit=limit, stop=until)
        if not rows:
            return after, []
        decode = self.ledger.mapper.to_domain_event
        events = [(row.id, decode(row)) for row in rows]
        with self._lock:
            self._learn(
                {
                    e.originator_id
                    for _, e in events
                    if isinstance(e, Journey.Event) and not isinstance(e, Journey.Registered)
                    and e.originator_id not in self._known
                }
            )  # fmt: skip
            return rows[-1].id, [self._told(position, event) for position, event in events]

    def _learn(self, journeys: set[Any]) -> None:
        """The owners of journeys first met past their registration, from the store in one query."""
        if not journeys:
            return
        decode = self.ledger.mapper.to_domain_event
        for stored in self.ledger.store.select_events_of(sorted(journeys)):
            if stored.topic.endswith(_FIRST):
                self._note(decode(stored))

    def _note(self, event: Any) -> _Owned | None:
        if isinstance(event, Journey.Registered):
            registered = self._known[event.originator_id] = _Owned(event.season, event.stamp.agency_id)
            return registered
        known = self._known.get(event.originator_id)
        if known is not None and isinstance(event, Journey.PackageContracted):
            known.company_id, known.contracted = event.company_id, event.originator_version
        return known

    def _told(self, position: int, event: Any) -> Told:
        entry = Entry.of(position, event)
        season: int | None = None
        owners: dict[str, str | None] | None = None
        if isinstance(event, Journey.Event):
            owned = self._note(event)
            if owned is not None:  # a journey the store has no registration of has no owner to tell
                season, owners = owned.season, owned.owners(event.originator_version)
        body = orjson.dumps(entry, option=orjson.OPT_UTC_Z)
        return Told(position, entry.event, entry.role, entry.agency_id, entry.occurred_at, season, owners, body)
