from __future__ import annotations

from datetime import timedelta
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


def test_road_security_records_checkpoints_only_while_the_trip_is_on_the_road() -> None:
    bus, road = trip(), stamp(Role.ROAD_SECURITY)
    with pytest.raises(IllegalStepError, match="current stage 'scheduled'"):
        bus.pass_checkpoint(road, "CP-1")
    bus.depart(stamp(NQ))
    bus.pass_checkpoint(road, "CP-1")
    bus.pass_checkpoint(stamp(Role.ROAD_SECURITY, at=road.occurred_at + timedelta(hours=1)), "CP-2")
    assert (bus.last_checkpoint, bus.checkpoint_at) == ("CP-2", road.occurred_at + timedelta(hours=1))
    bus.arrive(stamp(NQ))
    with pytest.raises(IllegalStepError, match="current stage 'arrived'"):
        bus.pass_checkpoint(road, "CP-3")
