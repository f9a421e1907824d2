"""The market and housing through the ledger, on both stores: each multi-aggregate step checks every aggregate it
touches before changing any, and stores them in one transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from hajj_ledger.domain.errors import ContractFullError, IllegalStepError, LedgerError, PermissionDeniedError
from hajj_ledger.domain.vocabulary import Role, Stage
from hajj_ledger.ledger import JourneyLedger, Outcome
from tests.support import (
    Market,
    actor,
    arrive_and_clear,
    building_fields,
    command,
    contract_journeys,
    offer_fields,
    open_market,
    registered,
    schedule_trip,
)

HOUSING = {"site": "makkah", "building": "B-1"}


def _do(ledger: JourneyLedger, role: Role, event: str, **fields: Any) -> Outcome:
    return ledger.record(command(event, **fields), actor(role))


def _transferred(ledger: JourneyLedger, count: int, market: Market) -> list[UUID]:
    journeys = arrive_and_clear(ledger, count, market)
    trip_id = schedule_trip(ledger, capacity=count)
    for event in ("BusAssigned", "Boarded", "TransferCompleted"):
        ledger.record_batch([(command(event, journey_id=j, trip_id=trip_id), actor(Role.NAQABA)) for j in journeys])
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
