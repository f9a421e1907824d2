from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from hajj_ledger.domain.errors import IllegalStepError, OccurredTooEarlyError, TripFullError
from hajj_ledger.domain.vocabulary import Role, Stamp, TripStage
from hajj_ledger.store.seasons import NO_SEASON, season_on
from tests.support import T0, stamp, trip

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


def test_nothing_happens_on_the_road_before_the_trip_departed_late_correction_or_not() -> None:
    bus = trip()
    left = T0 + timedelta(hours=18)
    bus.depart(stamp(NQ, at=left))
    with pytest.raises(OccurredTooEarlyError, match=f"08:00:00\\+00:00 is before the departure of trip {bus.id}, at "
                                                    "2025-05-02T02:00:00\\+00:00"):  # fmt: skip
        bus.pass_checkpoint(stamp(Role.ROAD_SECURITY), "CP-1")  # dated 18 h before it left
    with pytest.raises(OccurredTooEarlyError, match="before the departure of trip"):
        bus.arrive(late(NQ, left - timedelta(minutes=1)))
    bus.pass_checkpoint(stamp(Role.ROAD_SECURITY, at=left + timedelta(hours=1)), "CP-1")
    bus.arrive(stamp(NQ, at=left + timedelta(hours=2)))
    assert bus.stage == TripStage.ARRIVED and bus.checkpoint_at == left + timedelta(hours=1)


def test_a_trips_step_more_than_the_tolerance_before_its_latest_is_a_late_correction() -> None:
    bus, latest = trip(), T0 + timedelta(hours=10)
    bus.depart(stamp(NQ, at=latest))
    bus.pass_checkpoint(stamp(Role.ROAD_SECURITY, at=latest + timedelta(hours=7)), "CP-2")
    earlier = latest + timedelta(minutes=30)  # on the road, but 6 h 30 min before the trip's latest step
    with pytest.raises(OccurredTooEarlyError, match="6:30:00 before the trip's latest step"):
        bus.pass_checkpoint(stamp(Role.ROAD_SECURITY, at=earlier), "CP-1")
    bus.pass_checkpoint(late(Role.ROAD_SECURITY, earlier), "CP-1")  # road security reports from the field
    assert bus.last_checkpoint == "CP-1" and bus.version == 4


def late(role: Role, at: datetime) -> Stamp:
    """A late correction by `role`, of a step at `at`."""
    return Stamp(f"{role}-1", role, at, uuid4(), None, "paper_record")


@pytest.mark.parametrize(
    ("departs", "season"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), NO_SEASON),  # within sixty days of year 1: no day before it to count back to
        (datetime(1800, 6, 1, tzinfo=UTC), NO_SEASON),  # before the Hijri calendar kept
        (datetime(2025, 6, 6, tzinfo=UTC), 1446),
        (datetime(2025, 7, 20, tzinfo=UTC), 1446),  # a departure in Muharram 1447 still carries season 1446's pilgrims
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), NO_SEASON),
    ],
)
def test_a_trip_s_season_is_its_departure_s_or_none_outside_the_calendar(departs: datetime, season: int) -> None:
    assert season_on(departs) == season
