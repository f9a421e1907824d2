"""Many agencies at once: the store's version keys keep seats and journeys consistent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from hajj_ledger.errors import LedgerError, TripFullError
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.vocabulary import Role, Stage
from tests.support import actor, arrive_and_clear, command, schedule_trip

RACERS = 32
SEATS = 5


def test_32_threads_race_for_the_last_5_seats(ledger: JourneyLedger) -> None:
    journeys = arrive_and_clear(ledger, RACERS)
    trip_id = schedule_trip(ledger, capacity=SEATS)
    start = Barrier(RACERS)

    def take_a_seat(journey_id: object) -> Outcome | LedgerError:
        start.wait()
        try:
            return ledger.record(command("BusAssigned", journey_id=journey_id, trip_id=trip_id), actor(Role.NAQABA))
        except LedgerError as refusal:
            return refusal

    with ThreadPoolExecutor(RACERS) as pool:
        results = list(pool.map(take_a_seat, journeys))

    seated = [r.aggregate_id for r in results if isinstance(r, Outcome)]
    refused = [r for r in results if not isinstance(r, Outcome)]
    assert len(seated) == SEATS
    assert len(refused) == RACERS - SEATS
    assert all(isinstance(r, TripFullError) and "is full" in str(r) for r in refused), refused
    trip = ledger.trip(trip_id)
    assert trip.seats == set(seated)
    assert trip.version == 1 + SEATS
    stages = {j: ledger.journey(j).stage for j in journeys}
    assert sorted(stages.values()).count(Stage.BUS_ASSIGNED) == SEATS
    assert all(stages[j] == Stage.BUS_ASSIGNED for j in seated)
