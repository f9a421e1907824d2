"""The simulated season, checked against its calibration rather than eyeballed."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import JOURNEY_STEPS
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import ENDED, REGION_OF, BuildingStage, Mode, Stage
from hajj_ledger.identities import find_by_name, find_by_passport, identity_of
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.missions import missions
from hajj_ledger.simulation.planner import MissionPlanner
from hajj_ledger.simulation.season import Summary, chunks, simulate

pytestmark = [
    pytest.mark.xdist_group("season"),  # one worker simulates the season (a module fixture) for all the tests
    pytest.mark.slow,  # a season of 3,000 pilgrims checked against its calibration: a scale test
]
PILGRIMS = 3000
SEED = 5
SEASON = 1446


def events(ledger: JourneyLedger) -> Iterator[Any]:
    start = 1
    while rows := ledger.recorder.select_notifications(start=start, limit=5000):
        for row in rows:
            yield ledger.mapper.to_domain_event(row)
        start = rows[-1].id + 1


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JourneyLedger, Summary]]:
    ledger = JourneyLedger(f"sqlite:///{tmp_path_factory.mktemp('season')}/ledger.sqlite3")
    summary = simulate(ledger, PILGRIMS, SEASON, SEED)
    yield ledger, summary
    ledger.close()


@pytest.fixture(scope="module")
def journeys(season: tuple[JourneyLedger, Summary]) -> dict[UUID, list[Any]]:
    by_journey: dict[UUID, list[Any]] = defaultdict(list)
    for event in events(season[0]):
        if isinstance(event, Journey.Event):
            by_journey[event.originator_id].append(event)
    return by_journey


def test_every_command_is_accepted_and_counted(season: tuple[JourneyLedger, Summary]) -> None:
    ledger, summary = season
    assert summary.refused == 0, summary.refusals
    assert summary.pilgrims == PILGRIMS
    assert summary.events == ledger.head() == sum(summary.events_by_type.values())
    assert 28 <= summary.events / PILGRIMS <= 34  # about thirty events a journey, as domain.md says


def _share(counts: Counter[Any], key: Any) -> float:
    return counts[key] / sum(counts.values())


def test_regions_and_modes_match_the_calibration(journeys: dict[UUID, list[Any]]) -> None:
    assert len(journeys) == PILGRIMS
    regions = Counter(REGION_OF[history[0].country] for history in journeys.values())
    for region, share in cal.REGION_SHARE.items():
        assert _share(regions, region) == pytest.approx(share, abs=0.005), region
    countries = Counter(history[0].country for history in journeys.values())
    assert [c for c, _ in countries.most_common(4)] == ["IDN", "PAK", "IND", "BGD"]
    modes: Counter[Mode] = Counter(
        e.mode for history in journeys.values() for e in history if isinstance(e, Journey.ArrivedAtPort)
    )
    assert _share(modes, Mode.AIR) == pytest.approx(cal.MODE_SHARE[Mode.AIR], abs=0.01)
    assert _share(modes, Mode.LAND) == pytest.approx(cal.MODE_SHARE[Mode.LAND], abs=0.01)
    assert _share(modes, Mode.SEA) == pytest.approx(cal.MODE_SHARE[Mode.SEA], abs=0.003)


def test_gender_matches_the_calibration() -> None:
    """Gender is personal data and never reaches an event; the simulator's own plan carries it."""
    sequence = iter(range(10**9))
    males = total = 0
    for mission in missions(PILGRIMS, SEED, SEASON):
        planner = MissionPlanner(mission, SEED, SEASON, sequence)
        planner.plan()
        males += sum(p.male for p in planner.pilgrims)
        total += len(planner.pilgrims)
    assert total == PILGRIMS
    assert males / total == pytest.approx(cal.MALE_SHARE, abs=0.025)


def test_missions_flights_and_the_calendar(journeys: dict[UUID, list[Any]]) -> None:
    arafat = cal.arafat_day(SEASON)
    missions_: Counter[str] = Counter(history[0].stamp.agency_id for history in journeys.values())
    assert max(missions_.values()) <= cal.MISSION_SIZE[1]
    flights: Counter[tuple[str, Any]] = Counter()
    for history in journeys.values():
        for event in history:
            if isinstance(event, Journey.FlightBooked):
                flights[(event.flight, event.scheduled_at)] += 1
            if isinstance(event, Journey.ArrivedAtPort):
                assert arafat - timedelta(days=37) <= event.stamp.occurred_at <= arafat - timedelta(days=2)
            if isinstance(event, Journey.MovedToSite) and event.site == "muzdalifah":
                # The Nafra: everyone moves within a few hours after sunset on the day of Arafat.
                assert arafat + timedelta(hours=15) <= event.stamp.occurred_at <= arafat + timedelta(hours=20)
            if isinstance(event, Journey.Departed):
                assert event.stamp.occurred_at <= arafat + timedelta(days=5 + cal.DEPARTURE_WINDOW_DAYS)
    assert max(flights.values()) <= cal.FLIGHT_SEATS[1]


def test_every_journey_ends_as_a_journey_can(journeys: dict[UUID, list[Any]]) -> None:
    endings: Counter[str] = Counter()
    for history in journeys.values():
        stage = Stage.REGISTERED
        for event in history:
            stage = JOURNEY_STEPS[type(event).__name__].to or stage
        if stage in ENDED or stage == Stage.VISA_REJECTED:
            endings[stage] += 1
        else:  # still in the Kingdom after the season: an overstay
            assert history[-1].stamp.occurred_at < cal.arafat_day(SEASON) + timedelta(days=10)
            endings["overstay"] += 1
    assert endings[Stage.DEPARTED] / PILGRIMS > 0.95
    assert 0 < endings[Stage.CANCELLED] / PILGRIMS < 0.03
    assert endings["overstay"] / PILGRIMS < 0.005
    assert endings[Stage.DECEASED] / PILGRIMS < 0.005


def test_exceptions_happen_at_realistic_rates(season: tuple[JourneyLedger, Summary]) -> None:
    kinds = season[1].events_by_type
    assert kinds["VisaRejected"] / PILGRIMS == pytest.approx(cal.VISA_REJECTED, abs=0.01)
    assert kinds["HospitalAdmitted"] / PILGRIMS == pytest.approx(cal.HOSPITAL_ADMITTED, abs=0.01)
    assert kinds["HospitalAdmitted"] == kinds["HospitalDischarged"]
    assert kinds["ReportedMissing"] == kinds["Found"] > 0


def test_no_trip_is_ever_over_capacity(season: tuple[JourneyLedger, Summary]) -> None:
    ledger = season[0]
    trips = {e.originator_id for e in events(ledger) if isinstance(e, Trip.TripScheduled)}
    assert len(trips) > PILGRIMS / 50
    for trip_id in trips:
        trip = ledger.trip(trip_id)
        assert trip.capacity <= cal.BUS_SEATS[1]
        assert len(trip.seats) <= trip.capacity


def _fingerprint(ledger: JourneyLedger) -> list[tuple[Any, ...]]:
    rows = []
    for row in ledger.recorder.select_notifications(start=1, limit=10**6):
        state = orjson.loads(row.state)
        del state["timestamp"]  # when this run recorded it
        for digest in ("ciphertext_digest", "identity_digest"):  # of encryptions with fresh keys and nonces
            state.pop(digest, None)
        rows.append((row.id, row.originator_id, row.originator_version, row.topic, state))
    return rows


def test_the_same_seed_gives_the_same_ledger(tmp_path: Path) -> None:
    first, second, other = (JourneyLedger(f"sqlite:///{tmp_path}/{n}.sqlite3") for n in "abc")
    try:
        simulate(first, 400, SEASON, seed=9)
        simulate(second, 400, SEASON, seed=9)
        simulate(other, 400, SEASON, seed=10)
        assert _fingerprint(first) == _fingerprint(second)
        assert _fingerprint(first) != _fingerprint(other)
        # Recording the same season again stores nothing: every command repeats its first outcome.
        head = first.head()
        again = simulate(first, 400, SEASON, seed=9)
        assert first.head() == head and again.refused == 0
    finally:
        for ledger in (first, second, other):
            ledger.close()


def test_a_season_records_on_either_store(ledger: JourneyLedger) -> None:
    summary = simulate(ledger, 250, SEASON, seed=3)
    assert summary.refused == 0, summary.refusals
    assert summary.events + 1 == ledger.head()  # and the season's opening, by the fixture before


def test_chunks_hold_whole_missions_in_time_order() -> None:
    for _, planned in chunks(700, SEED, SEASON):
        assert planned == sorted(planned, key=lambda p: (p.at, p.seq))


def test_a_season_that_has_not_ended_is_refused(tmp_path: Path) -> None:
    from hajj_ledger.domain.errors import ValidationError

    ledger = JourneyLedger(f"sqlite:///{tmp_path}/l.sqlite3")
    try:
        with pytest.raises(ValidationError, match="has not ended"):
            simulate(ledger, 10, 1460, seed=1)
    finally:
        ledger.close()


def test_simulated_pilgrims_have_identities_in_the_vault(season: tuple[JourneyLedger, Summary]) -> None:
    from hajj_ledger.domain.vocabulary import Actor, Role

    ledger = season[0]
    vaulted = ledger.store.select_vault_journeys()
    assert len(vaulted) == PILGRIMS
    spellings: set[str] = set()
    for journey_id in vaulted[:300]:
        journey = ledger.journey(journey_id)
        identity = identity_of(ledger, journey_id, Actor(journey.mission_id, Role.MISSION))
        assert identity.nationality == journey.country
        passports = Actor("jawazat-JED", Role.JAWAZAT)
        assert journey_id in find_by_passport(ledger, identity.passport_number, identity.passport_country, passports)
        words = identity.name_arabic.split()
        if "محمد" in words:
            spellings.add(identity.name_latin.split()[words.index("محمد")])
            mission = Actor(journey.mission_id, Role.MISSION)
            for spelling in ("محمد", "MUHAMMAD", "MOHAMED", "Mohammed"):  # whichever the passport has
                assert journey_id in find_by_name(ledger, spelling, mission, limit=10_000)
    assert len(spellings) >= 3, spellings  # one Arabic name, several Latin spellings


def test_no_building_over_its_beds_no_contract_over_its_places_and_everyone_housed_licensed_and_inspected(
    season: tuple[JourneyLedger, Summary],
) -> None:
    """The log replayed in order: at every step the market and housing hold, and each check-in met its building's
    licence and inspection as they stood then."""
    ledger, _ = season
    state: dict[UUID, Any] = {}
    checked_in = inspected_late = 0
    for event in events(ledger):
        state[event.originator_id] = event.mutate(state.get(event.originator_id))
        match event:
            case Building.BedTaken() | Building.InspectionFailed():
                house = state[event.originator_id]
                assert len(house.occupants) <= house.beds
                inspected_late += isinstance(event, Building.InspectionFailed)
            case Contract.PlaceTaken():
                assert len(state[event.originator_id].used) <= state[event.originator_id].places
            case ServiceOffer.PlacesReserved():
                assert state[event.originator_id].contracted <= state[event.originator_id].places
            case Journey.HousingCheckedIn():
                assert event.building_id is not None
                house = state[event.building_id]
                assert house.stage == BuildingStage.LICENSED and house.inspected is True
                assert event.stamp.occurred_at <= house.licence_valid_until
                assert event.originator_id in house.occupants
                contract = state[state[event.originator_id].contract_id]
                assert event.building_id in state[contract.offer_id].building_ids
                checked_in += 1
    assert checked_in > PILGRIMS and inspected_late > 0  # a few buildings failed their first inspection
    housed = {a.id: a.building_id for a in state.values() if isinstance(a, Journey) and a.building_id is not None}
    assert housed and all(journey in state[building].occupants for journey, building in housed.items())
    buildings = [a for a in state.values() if isinstance(a, Building)]
    assert sum(len(b.occupants) for b in buildings) == len(housed)


def test_buses_pass_one_to_three_checkpoints_on_the_road(season: tuple[JourneyLedger, Summary]) -> None:
    passed: Counter[UUID] = Counter()
    on_road: dict[UUID, bool] = {}
    for event in events(season[0]):
        match event:
            case Trip.TripDeparted():
                on_road[event.originator_id] = True
            case Trip.CheckpointPassed():
                assert on_road[event.originator_id]
                passed[event.originator_id] += 1
            case Trip.TripArrived():
                on_road[event.originator_id] = False
    assert on_road and not any(on_road.values())
    assert set(passed) == set(on_road) and set(passed.values()) == {1, 2, 3}


def test_every_ride_lies_within_its_trip(season: tuple[JourneyLedger, Summary]) -> None:
    """Both clocks agree: each rider boards before the bus leaves, is handed over once it has arrived, and rides
    about as long as the route takes."""
    trips: dict[UUID, dict[str, Any]] = defaultdict(dict)
    boarded: dict[tuple[UUID, UUID], Any] = {}
    transferred: dict[tuple[UUID, UUID], Any] = {}
    for event in events(season[0]):
        match event:
            case Trip.TripScheduled():
                assert event.expected_arrival is not None
                trips[event.originator_id]["route"] = event.expected_arrival - event.departs_at
            case Trip.TripDeparted() | Trip.TripArrived():
                trips[event.originator_id][type(event).__name__] = event.stamp.occurred_at
            case Journey.Boarded():
                boarded[(event.originator_id, event.trip_id)] = event.stamp.occurred_at
            case Journey.TransferCompleted():
                transferred[(event.originator_id, event.trip_id)] = event.stamp.occurred_at
    assert len(transferred) > 2 * PILGRIMS
    for ride, off in transferred.items():
        trip, on = trips[ride[1]], boarded[ride]
        assert on <= trip["TripDeparted"] <= trip.get("TripArrived", off) <= off, (ride, on, off, trip)
        assert trip["route"] <= off - on <= trip["route"] + timedelta(hours=1), (ride, on, off, trip)
