"""Many agencies at once: the store's version keys keep seats and journeys consistent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any
from uuid import UUID

import pytest

from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import (
    BuildingFullError,
    ContractFullError,
    LedgerError,
    OfferFullError,
    TripFullError,
)
from hajj_ledger.domain.vocabulary import Actor, ContractStage, Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.store.connections import WRITE_POOL_OVERFLOW_VARIABLE, WRITE_POOL_SIZE_VARIABLE
from tests.support import (
    actor,
    arrive_and_clear,
    building_fields,
    command,
    contract_journeys,
    offer_fields,
    open_market,
    registered,
    ride,
    schedule_trip,
)

RACERS = 32
SEATS = 5
PLACES = 5
BEDS = 3


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


def _racing(store_url: str, monkeypatch: pytest.MonkeyPatch, items: Sequence[tuple[Command, Actor]]) -> list[Any]:
    """Each command from a thread with a ledger of its own, as separate processes would be, all at once."""
    monkeypatch.setenv(WRITE_POOL_SIZE_VARIABLE, "1")
    monkeypatch.setenv(WRITE_POOL_OVERFLOW_VARIABLE, "0")
    writers = [JourneyLedger(store_url) for _ in items]
    start = Barrier(len(items))

    def send(n: int) -> Outcome | LedgerError:
        start.wait()
        try:
            return writers[n].record(*items[n])
        except LedgerError as refusal:
            return refusal

    try:
        with ThreadPoolExecutor(len(items)) as pool:
            return list(pool.map(send, range(len(items))))
    finally:
        for writer in writers:
            writer.close()


def _winners(results: list[Any], full: type[LedgerError], room: int) -> list[Outcome]:
    won = [r for r in results if isinstance(r, Outcome)]
    assert len(won) == room, results
    assert all(isinstance(r, full) for r in results if not isinstance(r, Outcome)), results
    return won


def test_32_missions_race_for_the_last_5_places_of_an_offer(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mission's proposal fits the 5 free places (a proposal reserves none: they are sent together to one
    node, whose group commit records them); the company signs them all at once, each signature from a node of its
    own, and the offer's places go to exactly 5."""
    building = ledger.record(command("BuildingLicensed", **building_fields(10)), actor(Role.AMANAH)).aggregate_id
    offer = ledger.record(command("OfferPublished", **offer_fields(PLACES + 3, [building])), actor(Role.COMPANY))
    missions = [f"mission-IDN-{n:03d}" for n in range(RACERS)]
    earlier = ledger.record(command("ContractProposed", offer_id=offer.aggregate_id, places=3), actor(Role.MISSION))
    ledger.record(command("ContractSigned", contract_id=earlier.aggregate_id), actor(Role.COMPANY))
    with ThreadPoolExecutor(RACERS) as pool:
        proposed = list(pool.map(lambda m: ledger.submit(
            command("ContractProposed", offer_id=offer.aggregate_id, places=1), actor(Role.MISSION, m)
        ).result(), missions))  # fmt: skip
    contracts = [r.aggregate_id for r in proposed if isinstance(r, Outcome)]
    assert len(contracts) == RACERS, proposed
    signed = _racing(store_url, monkeypatch, [
        (command("ContractSigned", contract_id=c), actor(Role.COMPANY)) for c in contracts
    ])  # fmt: skip
    won = _winners(signed, OfferFullError, PLACES)
    sold = ledger.offer(offer.aggregate_id)
    assert (sold.contracted, sold.free) == (PLACES + 3, 0)
    assert {c for c, places in sold.reserved.items() if places} == {
        earlier.aggregate_id,
        *(w.aggregate_id for w in won),
    }
    stages = Counter(ledger.contract(c).stage for c in contracts)
    assert stages == {ContractStage.SIGNED: PLACES, ContractStage.PROPOSED: RACERS - PLACES}


def test_32_journeys_race_for_the_last_places_of_a_contract(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = open_market(ledger, PLACES + 2)
    contract_journeys(ledger, registered(ledger, 2), market.contract_id)  # the places before the last five
    journeys = registered(ledger, RACERS)
    results = _racing(store_url, monkeypatch, [
        (command("PackageContracted", journey_id=j, contract_id=market.contract_id), actor(Role.MISSION))
        for j in journeys
    ])  # fmt: skip
    won = {r.aggregate_id for r in _winners(results, ContractFullError, PLACES)}
    deal = ledger.contract(market.contract_id)
    assert len(deal.used) == deal.places == PLACES + 2 and won <= deal.used
    assert {j for j in journeys if ledger.journey(j).stage == Stage.CONTRACTED} == won
    assert all(ledger.journey(j).contract_id == market.contract_id for j in won)


def test_32_check_ins_race_for_the_last_3_beds(
    ledger: JourneyLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = open_market(ledger, RACERS + 1, BEDS + 1)
    journeys = arrive_and_clear(ledger, RACERS + 1, market)
    ride(ledger, journeys, schedule_trip(ledger, capacity=RACERS + 1))
    housing = {"site": "makkah", "building": "B-1", "building_id": market.building_id}
    ledger.record(command("HousingCheckedIn", journey_id=journeys[0], **housing), actor(Role.COMPANY))
    results = _racing(store_url, monkeypatch, [
        (command("HousingCheckedIn", journey_id=j, **housing), actor(Role.COMPANY)) for j in journeys[1:]
    ])  # fmt: skip
    won = {r.aggregate_id for r in _winners(results, BuildingFullError, BEDS)}
    house = ledger.building(market.building_id)
    assert house.occupants == won | {journeys[0]} and len(house.occupants) == house.beds
    assert {j for j in journeys[1:] if ledger.journey(j).stage == Stage.HOUSED} == won
    assert all(ledger.journey(j).building_id == market.building_id for j in won)
