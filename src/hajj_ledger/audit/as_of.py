"""A journey as of a past moment: as the ledger knew it at a position or a recorded time, or as things had happened
by a business time (the recording agencies' own clocks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hajj_ledger.audit.reads import Entry, within_head, zoned
from hajj_ledger.domain.catalogue import JOURNEY_STEPS, check_step
from hajj_ledger.domain.errors import LedgerError, NotFoundError, ValidationError
from hajj_ledger.domain.journey import Journey

if TYPE_CHECKING:
    from hajj_ledger.ledger import JourneyLedger


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
        zoned("recorded_at", self.recorded_at)
        zoned("occurred_at", self.occurred_at)

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
