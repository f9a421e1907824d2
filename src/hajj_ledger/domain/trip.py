"""The Trip aggregate: one bus trip with a fixed number of seats."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from hajj_ledger.domain.catalogue import TRIP_STEPS, check_step
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import Stamp, TripStage


class Trip(Aggregate):
    """Seats are reserved by journey id; `trigger_event` refuses what the catalogue does not allow."""

    class Event(RecordedEvent):
        steps = TRIP_STEPS

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.last_occurred_at = max(aggregate.last_occurred_at, self.stamp.occurred_at)

    class TripScheduled(Event, Aggregate.Created):
        trip_id: UUID  # the originator id too: chosen by the caller, so a retry cannot make a second trip
        operator: str
        bus_plate: str
        origin: str
        destination: str
        departs_at: datetime
        capacity: int
        expected_arrival: datetime | None = None  # None: scheduled before routes had times

    class SeatReserved(Event):
        journey_id: UUID

    class SeatReleased(Event):
        journey_id: UUID

    class TripDeparted(Event):
        pass

    class TripArrived(Event):
        pass

    class TripCancelled(Event):
        reason: str

    class CheckpointPassed(Event):
        checkpoint: str

    @classmethod
    def schedule(
        cls,
        stamp: Stamp,
        trip_id: UUID,
        operator: str,
        bus_plate: str,
        origin: str,
        destination: str,
        departs_at: datetime,
        capacity: int,
        expected_arrival: datetime | None = None,
    ) -> Trip:
        check_step(TRIP_STEPS, "TripScheduled", None, {"stamp": stamp})
        return cls(stamp, trip_id, operator, bus_plate, origin, destination, departs_at, capacity, expected_arrival)

    @staticmethod
    def create_id(trip_id: UUID) -> UUID:
        return trip_id

    @event(TripScheduled)
    def __init__(
        self,
        stamp: Stamp,
        trip_id: UUID,
        operator: str,
        bus_plate: str,
        origin: str,
        destination: str,
        departs_at: datetime,
        capacity: int,
        expected_arrival: datetime | None = None,
    ) -> None:
        self.operator = operator
        self.bus_plate = bus_plate
        self.origin = origin
        self.destination = destination
        self.departs_at = departs_at
        self.capacity = capacity
        self.expected_arrival = expected_arrival
        self.last_checkpoint: str | None = None
        self.checkpoint_at: datetime | None = None
        self.stage = TripStage.SCHEDULED  # moved on by the catalogue's steps, as a journey's stage is
        self.seats: set[UUID] = set()
        self.departed_at: datetime | None = None  # when it left, by the naqaba's account
        self.last_occurred_at = stamp.occurred_at

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(TRIP_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @event(SeatReserved)
    def reserve_seat(self, stamp: Stamp, journey_id: UUID) -> None:
        self.seats.add(journey_id)

    @event(SeatReleased)
    def release_seat(self, stamp: Stamp, journey_id: UUID) -> None:
        self.seats.discard(journey_id)

    @event(TripDeparted)
    def depart(self, stamp: Stamp) -> None:
        self.departed_at = stamp.occurred_at

    @event(TripArrived)
    def arrive(self, stamp: Stamp) -> None:
        pass

    @event(TripCancelled)
    def cancel(self, stamp: Stamp, reason: str) -> None:
        pass

    @event(CheckpointPassed)
    def pass_checkpoint(self, stamp: Stamp, checkpoint: str) -> None:
        self.last_checkpoint = checkpoint
        self.checkpoint_at = stamp.occurred_at
