from __future__ import annotations

from uuid import uuid4

import pytest

from hajj_ledger.domain.errors import IllegalStepError, TripFullError
from hajj_ledger.domain.vocabulary import Role, TripStage
from tests.support import stamp, trip

NQ = Role.NAQABA


def test_a_full_trip_refuses_a_seat() -> None:
    bus = trip(capacity=2)
    bus.reserve_seat(stamp(NQ), uuid4())
    bus.reserve_seat(stamp(NQ), uuid4())
    with pytest.raises(TripFullError, match="2 of 2 seats taken"):
        bus.reserve_seat(stamp(NQ), uuid4())
    assert len(bus.seats) == 2


def test_a_released_seat_can_be_taken_again() -> None:
    bus, first = trip(capacity=1), uuid4()
    bus.reserve_seat(stamp(NQ), first)
    bus.release_seat(stamp(NQ), first)
    bus.reserve_seat(stamp(NQ), uuid4())
    assert len(bus.seats) == 1


def test_only_a_held_seat_is_released() -> None:
    bus = trip()
    with pytest.raises(IllegalStepError, match="the journey to hold a seat"):
        bus.release_seat(stamp(NQ), uuid4())


def test_no_seat_after_departure_and_no_cancelling_with_passengers() -> None:
    bus = trip()
    bus.reserve_seat(stamp(NQ), uuid4())
    with pytest.raises(IllegalStepError, match="no seat held"):
        bus.cancel(stamp(NQ), "weather")
    bus.depart(stamp(NQ))
    with pytest.raises(IllegalStepError, match="current stage 'departed'"):
        bus.reserve_seat(stamp(NQ), uuid4())
    bus.arrive(stamp(NQ))
    assert bus.stage == TripStage.ARRIVED
