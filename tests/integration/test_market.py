"""The market and housing through the ledger, on both stores: each multi-aggregate step checks every aggregate it
touches (or reads: a building returned to, a trip ridden) before changing any, and stores them in one transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from hajj_ledger.domain.errors import (
    ContractFullError,
    IllegalStepError,
    LedgerError,
    OccurredTooEarlyError,
    PermissionDeniedError,
)
from hajj_ledger.domain.vocabulary import Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.integration.test_api import COMPANY_2, PAK, Api, api, is_problem  # noqa: F401 (the fixture)
from tests.support import (
    T0,
    Market,
    actor,
    arrive_and_clear,
    as_json,
    building_fields,
    command,
    contract_journeys,
    offer_fields,
    open_market,
    registered,
    ride,
    schedule_trip,
)

HOUSING = {"site": "makkah", "building": "B-1"}
WEEK = timedelta(days=7)


def _do(ledger: JourneyLedger, role: Role, event: str, **fields: Any) -> Outcome:
    return ledger.record(command(event, **fields), actor(role))


def _transferred(ledger: JourneyLedger, count: int, market: Market) -> list[UUID]:
    journeys = arrive_and_clear(ledger, count, market)
    ride(ledger, journeys, schedule_trip(ledger, capacity=count))
    return journeys


def _refused(ledger: JourneyLedger, role: Role, event: str, **fields: Any) -> LedgerError:
    head = ledger.head()
    with pytest.raises(LedgerError) as refused:
        _do(ledger, role, event, **fields)
    assert ledger.head() == head  # nothing of it stored
    return refused.value


def test_a_check_in_takes_a_bed_of_the_contract_and_a_check_out_or_a_death_frees_it(ledger: JourneyLedger) -> None:
    market = open_market(ledger, 3, 3)
    first, second, third = _transferred(ledger, 3, market)
    checked_in = _do(
        ledger, Role.COMPANY, "HousingCheckedIn", journey_id=first, building_id=market.building_id, **HOUSING
    )
    assert checked_in.events == ("BedTaken", "HousingCheckedIn")
    _do(ledger, Role.COMPANY, "MovedToSite", journey_id=first, site="mina")
    back = _do(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=first, building_id=market.building_id, **HOUSING)
    assert back.events == ("HousingCheckedIn",)  # its own bed, kept while at the holy sites
    assert _do(ledger, Role.COMPANY, "HousingCheckedOut", journey_id=first, **HOUSING).events == (
        "HousingCheckedOut", "BedFreed",
    )  # fmt: skip
    _do(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=second, building_id=market.building_id, **HOUSING)
    died = _do(ledger, Role.MOH, "DeathRecorded", journey_id=second, facility="H-1")
    assert died.events == ("DeathRecorded", "BedFreed")
    _do(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=third, building_id=market.building_id, **HOUSING)
    assert ledger.building(market.building_id).occupants == {third}
    assert ledger.journey(first).building_id is None and ledger.journey(third).building_id == market.building_id


def test_a_check_in_elsewhere_than_the_contracts_buildings_is_refused_naming_why(ledger: JourneyLedger) -> None:
    market, other = open_market(ledger, 1, 1), open_market(ledger, 1, 1)
    [journey] = _transferred(ledger, 1, market)
    refusal = _refused(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=journey, building_id=other.building_id,
                       **HOUSING)  # fmt: skip
    assert isinstance(refusal, IllegalStepError) and "is not named by the offer of the journey's contract" in str(
        refusal
    )
    assert refusal.stage == Stage.TRANSFERRED and not ledger.building(other.building_id).occupants
    madinah = _do(ledger, Role.AMANAH, "BuildingLicensed", **building_fields(5, city="madinah")).aggregate_id
    _do(ledger, Role.COMPANY, "OfferAmended", offer_id=market.offer_id, building_ids=[market.building_id, madinah])
    _do(ledger, Role.CIVIL_DEFENCE, "InspectionPassed", building_id=madinah, findings="compliant")
    refusal = _refused(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=journey, building_id=madinah, **HOUSING)
    assert f"building {madinah} is in madinah, not makkah" in str(refusal)
    _do(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=journey, building_id=madinah, site="madinah",
        building="M-1")  # fmt: skip


def test_an_offer_names_only_its_companys_buildings(ledger: JourneyLedger) -> None:
    theirs = _do(ledger, Role.AMANAH, "BuildingLicensed", **building_fields(5, company_id="company-2")).aggregate_id
    refusal = _refused(ledger, Role.COMPANY, "OfferPublished", **offer_fields(5, [theirs]))
    assert isinstance(refusal, PermissionDeniedError) and f"building {theirs} is operated by company-2" in str(refusal)


def test_a_cancelled_journey_frees_its_place_and_a_contract_of_another_season_is_refused(
    ledger: JourneyLedger,
) -> None:
    market = open_market(ledger, 1)
    [journey] = registered(ledger, 1)
    contract_journeys(ledger, [journey], market.contract_id)
    [late] = registered(ledger, 1)
    full = _refused(ledger, Role.MISSION, "PackageContracted", journey_id=late, contract_id=market.contract_id)
    assert isinstance(full, ContractFullError) and "1 of 1 places used" in str(full)
    cancelled = _do(ledger, Role.MISSION, "Cancelled", journey_id=journey, reason="withdrawn")
    assert cancelled.events == ("Cancelled", "PlaceFreed")
    contract_journeys(ledger, [late], market.contract_id)
    assert ledger.contract(market.contract_id).used == {late}
    next_season = _do(ledger, Role.COMPANY, "OfferPublished", **offer_fields(5, [market.building_id], season=1447))
    contract = _do(ledger, Role.MISSION, "ContractProposed", offer_id=next_season.aggregate_id, places=1)
    _do(ledger, Role.COMPANY, "ContractSigned", contract_id=contract.aggregate_id)
    [journey_1446] = registered(ledger, 1)
    refusal = _refused(ledger, Role.MISSION, "PackageContracted", journey_id=journey_1446,
                       contract_id=contract.aggregate_id)  # fmt: skip
    assert "the contract is for season 1447, the journey 1446" in str(refusal)


def test_signing_amending_and_terminating_move_the_offers_places(ledger: JourneyLedger) -> None:
    market = open_market(ledger, 4, signed=False)
    assert ledger.offer(market.offer_id).contracted == 0
    signed = _do(ledger, Role.COMPANY, "ContractSigned", contract_id=market.contract_id)
    assert signed.events == ("PlacesReserved", "ContractSigned") and ledger.offer(market.offer_id).free == 0
    _do(ledger, Role.MISSION, "ContractAmended", contract_id=market.contract_id, places=2)
    assert (ledger.offer(market.offer_id).free, ledger.contract(market.contract_id).places) == (2, 2)
    refusal = _refused(ledger, Role.COMPANY, "OfferWithdrawn", offer_id=market.offer_id, reason="no_demand")
    assert "1 contracts are proposed or signed on it" in str(refusal)
    _do(ledger, Role.COMPANY, "ContractTerminated", contract_id=market.contract_id, reason="withdrawn")
    assert ledger.offer(market.offer_id).active_contracts == frozenset()
    _do(ledger, Role.COMPANY, "OfferWithdrawn", offer_id=market.offer_id, reason="no_demand")
    refusal = _refused(ledger, Role.MISSION, "ContractProposed", offer_id=market.offer_id, places=1)
    assert "current stage 'withdrawn'" in str(refusal)


def test_a_pilgrim_back_to_its_bed_needs_the_building_licensed_and_inspected(ledger: JourneyLedger) -> None:
    market = open_market(ledger, 1, 1)
    [journey] = _transferred(ledger, 1, market)
    house = {"journey_id": journey, "building_id": market.building_id, **HOUSING}
    _do(ledger, Role.COMPANY, "HousingCheckedIn", **house)
    _do(ledger, Role.COMPANY, "MovedToSite", journey_id=journey, site="mina")
    _do(ledger, Role.AMANAH, "LicenceSuspended", building_id=market.building_id, reason="fire_risk")
    refusal = _refused(ledger, Role.COMPANY, "HousingCheckedIn", **house)
    assert isinstance(refusal, IllegalStepError) and refusal.stage == Stage.AT_SITE
    assert f"building {market.building_id} is suspended" in str(refusal)
    _do(ledger, Role.AMANAH, "LicenceRenewed", building_id=market.building_id, licence_valid_until=T0 + WEEK)
    _do(ledger, Role.CIVIL_DEFENCE, "InspectionFailed", building_id=market.building_id, findings="alarms_faulty")
    refusal = _refused(ledger, Role.COMPANY, "HousingCheckedIn", **house)
    assert f"building {market.building_id} needs its latest inspection passed" in str(refusal)
    _do(ledger, Role.CIVIL_DEFENCE, "InspectionPassed", building_id=market.building_id, findings="compliant")
    assert _do(ledger, Role.COMPANY, "HousingCheckedIn", **house).events == ("HousingCheckedIn",)


def test_a_check_out_names_where_the_pilgrim_is_checked_in_or_is_refused(ledger: JourneyLedger) -> None:
    market, other = open_market(ledger, 1, 1), open_market(ledger, 1, 1)
    [journey] = _transferred(ledger, 1, market)
    _do(ledger, Role.COMPANY, "HousingCheckedIn", journey_id=journey, building_id=market.building_id, **HOUSING)
    for elsewhere in ({"site": "madinah", "building": "M-9"}, {"site": "makkah", "building": "B-2"}):
        refusal = _refused(ledger, Role.COMPANY, "HousingCheckedOut", journey_id=journey, **elsewhere)
        assert isinstance(refusal, IllegalStepError) and refusal.stage == Stage.HOUSED
        assert (
            f"the pilgrim is checked in at B-1 (building {market.building_id}) in makkah, not "
            f"{elsewhere['building']} in {elsewhere['site']}"
        ) in str(refusal)
    assert ledger.building(market.building_id).occupants == {journey}  # the real bed still held
    assert not ledger.building(other.building_id).occupants
    assert _do(ledger, Role.COMPANY, "HousingCheckedOut", journey_id=journey, **HOUSING).events == (
        "HousingCheckedOut", "BedFreed",
    )  # fmt: skip


def test_a_ride_follows_its_trips_clock(ledger: JourneyLedger) -> None:
    """The trip departs at 14:00: a transfer at 11:57 is refused while it waits, and once it has left; a boarding
    once it has left too."""
    journeys = arrive_and_clear(ledger, 2)
    trip_id = schedule_trip(ledger, capacity=2)
    at = {"trip_id": trip_id}
    for journey in journeys:
        _do(ledger, Role.NAQABA, "BusAssigned", journey_id=journey, **at)
    _do(ledger, Role.NAQABA, "Boarded", journey_id=journeys[0], **at)
    early, departs = {"occurred_at": T0 + timedelta(hours=3, minutes=57)}, T0 + timedelta(hours=6)
    refusal = _refused(ledger, Role.NAQABA, "TransferCompleted", journey_id=journeys[0], **at, **early)
    assert isinstance(refusal, IllegalStepError) and f"trip {trip_id} is scheduled" in str(refusal)
    _do(ledger, Role.NAQABA, "TripDeparted", trip_id=trip_id, occurred_at=departs)
    refusal = _refused(ledger, Role.NAQABA, "TransferCompleted", journey_id=journeys[0], **at, **early)
    assert isinstance(refusal, OccurredTooEarlyError) and f"before the departure of trip {trip_id}" in str(refusal)
    refusal = _refused(ledger, Role.NAQABA, "Boarded", journey_id=journeys[1], **at, occurred_at=departs)
    assert f"trip {trip_id} is departed; Boarded needs it scheduled" in str(refusal)
    later = {"occurred_at": departs + timedelta(hours=2)}
    assert _do(ledger, Role.NAQABA, "TransferCompleted", journey_id=journeys[0], **at, **later).events == (
        "TransferCompleted",
    )


@pytest.fixture
def http(api: Api) -> Api:  # noqa: F811 (the imported fixture)
    return api


def test_a_command_id_another_agency_used_is_refused_naming_the_aggregates_kind(http: Api) -> None:
    """Company 2 sends company 1's offer's command id again, a mission another mission's contract's: each refusal
    names the offer or the contract, as the same command without a receipt would."""
    building = http.created("amanah", "/v1/buildings", building_fields(50))
    used = str(uuid4())
    offer = as_json({"occurred_at": T0, "command_id": used, **offer_fields(5, [building])})
    assert http.post("company", "/v1/offers", offer).status_code == 201
    body = is_problem(http.post(COMPANY_2, "/v1/offers", offer), 403)
    assert "the offer is another company's" in body["detail"] and "journey" not in body["detail"], body
    proposal = as_json({"occurred_at": T0, "command_id": str(uuid4()), "offer_id": http.created(
        "company", "/v1/offers", offer_fields(5, [building])), "places": 1})  # fmt: skip
    assert http.post("mission", "/v1/contracts", proposal).status_code == 201
    body = is_problem(http.post(PAK, "/v1/contracts", proposal), 403)
    assert "the contract is another mission's" in body["detail"], body
