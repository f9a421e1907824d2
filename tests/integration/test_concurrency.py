"""Many agencies at once: the store's version keys keep seats and journeys consistent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any
from uuid import UUID

import pytest

from hajj_ledger.domain.errors import LedgerError, TripFullError
from hajj_ledger.domain.vocabulary import Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.store.connections import WRITE_POOL_OVERFLOW_VARIABLE, WRITE_POOL_SIZE_VARIABLE
from tests.support import actor, arrive_and_clear, command, schedule_trip

RACERS = 32
SEATS = 5


def _race(ledgers: Callable[[int], JourneyLedger], journeys: Sequence[UUID], trip_id: UUID) -> list[Any]:
    start = Barrier(len(journeys))

    def take_a_seat(n: int) -> Outcome | LedgerError:
        bus = command("BusAssigned", journey_id=journeys[n], trip_id=trip_id)
        start.wait()
        try:
            return ledgers(n).record(bus, actor(Role.NAQABA))
        except LedgerError as refusal:
            return refusal

    with ThreadPoolExecutor(len(journeys)) as pool:
        return list(pool.map(take_a_seat, range(len(journeys))))


def _check(ledger: JourneyLedger, results: list[Any], journeys: Sequence[UUID], trip_id: UUID) -> None:
    seated = [r.aggregate_id for r in results if isinstance(r, Outcome)]
    refused = [r for r in results if not isinstance(r, Outcome)]
    assert len(seated) == SEATS
    assert len(refused) == RACERS - SEATS
    assert all(isinstance(r, TripFullError) and "is full" in str(r) for r in refused), refused
    trip = ledger.trip(trip_id)
    assert trip.seats == set(seated)
    assert trip.version == 1 + SEATS
    stages = {j: ledger.journey(j).stage for j in journeys}
    assert list(stages.values()).count(Stage.BUS_ASSIGNED) == SEATS
    assert all(stages[j] == Stage.BUS_ASSIGNED for j in seated)


def test_32_writers_race_for_the_last_5_seats(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread its own ledger, as separate processes would be: the store decides who gets a seat."""
    journeys = arrive_and_clear(ledger, RACERS)
    trip_id = schedule_trip(ledger, capacity=SEATS)
    monkeypatch.setenv(WRITE_POOL_SIZE_VARIABLE, "1")  # a connection each: 32 writers within max_connections
    monkeypatch.setenv(WRITE_POOL_OVERFLOW_VARIABLE, "0")
    writers = [JourneyLedger(store_url) for _ in range(RACERS)]
    try:
        results = _race(writers.__getitem__, journeys, trip_id)
    finally:
        for writer in writers:
            writer.close()
    _check(ledger, results, journeys, trip_id)


def test_concurrent_callers_share_transactions_and_each_hear_their_own_outcome(
    ledger: JourneyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    journeys = arrive_and_clear(ledger, RACERS)
    trip_id = schedule_trip(ledger, capacity=SEATS)
    batch_sizes: list[int] = []
    record_batch = ledger.record_batch

    def counting(commands: Sequence[Any]) -> list[Any]:
        batch_sizes.append(len(commands))
        return record_batch(commands)

    monkeypatch.setattr(ledger, "record_batch", counting)
    results = _race(lambda _: ledger, journeys, trip_id)
    _check(ledger, results, journeys, trip_id)
    assert sum(batch_sizes) == RACERS
    assert max(batch_sizes) > 1, "concurrent commands were not coalesced"
    for journey_id, result in zip(journeys, results, strict=True):
        if isinstance(result, Outcome):
            assert result.aggregate_id == journey_id


def test_ledgers_starting_together_on_an_empty_store_all_start(store_url: str) -> None:
    start = Barrier(8)

    def open_ledger(_: int) -> int:
        start.wait()
        ledger = JourneyLedger(store_url)
        try:
            return ledger.head()
        finally:
            ledger.close()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(open_ledger, range(8))) == [0] * 8
