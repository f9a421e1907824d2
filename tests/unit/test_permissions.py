"""Who may record what: every role against every step, and the missions' and companies' scope; who may read what:
the access table against the domain, the views and the docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from hajj_ledger.domain.access import READS, VIEW_READERS, VIEWS, render_markdown
from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import JOURNEY_STEPS, SCOPE, SEASON_STEPS, STEPS, TRIP_STEPS
from hajj_ledger.domain.errors import PermissionDeniedError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.vocabulary import (
    BuildingStage,
    City,
    ContractStage,
    OfferKind,
    OfferSite,
    Role,
    Stage,
    Stamp,
)
from hajj_ledger.projections import PROJECTIONS
from tests.support import (
    COMPANY_ID,
    MARKET_PATH_TO,
    MARKET_STEP,
    STEP,
    T0,
    contract,
    journey_at,
    market_at,
    offer,
    record,
    register,
    stamp,
    trip,
)

# A stage from which each journey step is allowed, so only the role decides.
WHERE = {
    event: next(stage for stage in Stage if stage in step.from_) for event, step in JOURNEY_STEPS.items() if step.from_
}
WHERE["HospitalDischarged"] = WHERE["Found"] = Stage.HOUSED


def _ready(event: str) -> Journey:
    journey = journey_at(WHERE[event])
    before = {
        "HospitalDischarged": "HospitalAdmitted",
        "Found": "ReportedMissing",
        "IdentityCorrected": "IdentityRecorded",
        "IdentityErased": "IdentityRecorded",
        "LegalHoldLifted": "LegalHoldPlaced",
    }.get(event)
    if before:
        record(journey, before)
    return journey


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("event", list(STEP))
def test_a_journey_step_is_recorded_only_by_its_roles(event: str, role: Role) -> None:
    journey = _ready(event)
    if role in JOURNEY_STEPS[event].roles:
        record(journey, event, role)
        assert type(journey.pending_events[-1]).__name__ == event
    else:
        with pytest.raises(PermissionDeniedError) as refused:
            record(journey, event, role)
        assert f"role '{role}' may not record {event}" in str(refused.value)


@pytest.mark.parametrize("role", list(Role))
def test_only_missions_register(role: Role) -> None:
    if role is Role.MISSION:
        assert register().stage == Stage.REGISTERED
    else:
        from uuid import uuid4

        with pytest.raises(PermissionDeniedError, match="may not record Registered"):
            Journey.register(stamp(role), uuid4(), 1446, "IDN", False)


def test_roles_follow_the_domain() -> None:
    """Spot checks of the catalogue against domain.md, written out independently of it."""
    assert STEPS["VisaIssued"].roles == {Role.MOFA}
    assert STEPS["EntryCleared"].roles == STEPS["ExitCleared"].roles == {Role.JAWAZAT}
    assert STEPS["CustomsCleared"].roles == {Role.CUSTOMS}
    assert STEPS["ReceivedAtPort"].roles == {Role.WUKALA}
    assert STEPS["BusAssigned"].roles == STEPS["SeatReserved"].roles == {Role.NAQABA}
    assert STEPS["HospitalAdmitted"].roles == STEPS["DeathRecorded"].roles == {Role.MOH}
    assert STEPS["HousingCheckedIn"].roles == {Role.COMPANY}
    recorders = set().union(*(step.roles for step in STEPS.values()))
    assert not recorders & {Role.AUDITOR, Role.ANALYST}
    assert [name for name, step in STEPS.items() if Role.MINISTRY in step.roles] == [
        "IdentityErased",
        "LegalHoldPlaced",
        "LegalHoldLifted",
        *SEASON_STEPS,  # the season's calendar and its closing: the ministry's alone
    ]


def test_a_mission_acts_only_on_journeys_it_registered() -> None:
    journey = register()
    with pytest.raises(PermissionDeniedError, match="registered by another mission"):
        record(journey, "PackageContracted", agency_id="mission-PAK-9")
    record(journey, "PackageContracted")
    assert journey.company_id == "company-1"


def test_a_company_acts_only_on_journeys_contracted_to_it() -> None:
    journey = journey_at(Stage.TRANSFERRED)
    with pytest.raises(PermissionDeniedError, match="not contracted to this company"):
        record(journey, "HousingCheckedIn", agency_id="company-other")
    record(journey, "HousingCheckedIn")
    assert journey.stage == Stage.HOUSED


@pytest.mark.parametrize("role", list(Role))
def test_trip_steps_are_recorded_only_by_the_car_syndicate(role: Role) -> None:
    bus = trip()
    if role in TRIP_STEPS["TripDeparted"].roles:
        bus.depart(stamp(role))
    else:
        with pytest.raises(PermissionDeniedError):
            bus.depart(stamp(role))


def test_a_mission_registers_pilgrims_of_its_own_country_only() -> None:
    pilgrim = uuid4()
    with pytest.raises(PermissionDeniedError, match="mission mission-IDN-1 registers pilgrims of IDN only, not PAK"):
        Journey.register(stamp(Role.MISSION), pilgrim, 1446, "PAK", False)
    with pytest.raises(PermissionDeniedError, match="names no country"):
        Journey.register(stamp(Role.MISSION, "mission-demo"), pilgrim, 1446, "IDN", False)
    assert Journey.register(stamp(Role.MISSION), pilgrim, 1446, "IDN", False).country == "IDN"


# A stage of its own kind from which each step of an offer, a contract and a building is allowed.
MARKET_WHERE = {event: next(stage for stage in MARKET_PATH_TO if stage in STEPS[event].from_) for event in MARKET_STEP}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("event", list(MARKET_STEP))
def test_a_market_or_housing_step_is_recorded_only_by_its_roles(event: str, role: Role) -> None:
    aggregate = market_at(MARKET_WHERE[event], event)
    if role in STEPS[event].roles:
        record(aggregate, event, role)
        assert type(aggregate.pending_events[-1]).__name__ == event
    else:
        with pytest.raises(PermissionDeniedError, match=f"role '{role}' may not record {event}"):
            record(aggregate, event, role)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(
    ("event", "create"),
    [
        ("OfferPublished", lambda s: offer_at_stamp(s)),
        ("ContractProposed", lambda s: Contract.propose(s, uuid4(), offer(), 1)),
        ("BuildingLicensed", lambda s: Building.license(s, uuid4(), COMPANY_ID, City.MAKKAH, "Ajyad", 9, T0)),
    ],
)
def test_a_market_or_housing_aggregate_is_created_only_by_its_roles(event: str, create: Any, role: Role) -> None:
    if role in STEPS[event].roles:
        assert create(stamp(role)).version == 1
    else:
        with pytest.raises(PermissionDeniedError, match=f"may not record {event}"):
            create(stamp(role))


def offer_at_stamp(by: Stamp) -> ServiceOffer:
    return ServiceOffer.publish(by, uuid4(), 1446, OfferKind.CATERING, OfferSite.MINA, 5, 100, T0, T0, ())


def test_the_market_follows_the_domain() -> None:
    """Spot checks against the issue, written out independently of the catalogue."""
    assert STEPS["BuildingLicensed"].roles == STEPS["LicenceSuspended"].roles == {Role.AMANAH}
    assert STEPS["InspectionPassed"].roles == STEPS["InspectionFailed"].roles == {Role.CIVIL_DEFENCE}
    assert STEPS["CheckpointPassed"].roles == {Role.ROAD_SECURITY}
    assert STEPS["OfferPublished"].roles == STEPS["ContractSigned"].roles == {Role.COMPANY}
    assert STEPS["ContractProposed"].roles == {Role.MISSION}
    assert STEPS["ContractAmended"].roles == STEPS["ContractTerminated"].roles == {Role.MISSION, Role.COMPANY}


def test_a_company_acts_only_on_its_own_offers_contracts_and_buildings() -> None:
    with pytest.raises(PermissionDeniedError, match="the offer is another company's"):
        record(offer(), "OfferAmended", agency_id="company-other")
    with pytest.raises(PermissionDeniedError, match="the contract is on another company's offer"):
        record(contract(), "ContractSigned", agency_id="company-other")
    with pytest.raises(PermissionDeniedError, match="the building is operated by another company"):
        record(market_at(BuildingStage.LICENSED, "BedTaken"), "BedTaken", agency_id="company-other")


def test_a_mission_acts_only_on_its_own_contracts_and_on_any_offer() -> None:
    with pytest.raises(PermissionDeniedError, match="the contract is another mission's"):
        record(market_at(ContractStage.SIGNED), "ContractAmended", agency_id="mission-PAK-9")
    bought = offer()
    record(bought, "ContractNoted", agency_id="mission-PAK-9")
    assert bought.active_contracts


# Who reads what: domain/access.py.

DOC = Path(__file__).parents[2] / "docs" / "access.md"


def test_every_view_is_in_the_access_table_and_every_grant_says_why() -> None:
    assert list(VIEWS) == [p.name for p in PROJECTIONS]
    routes = [route for read in READS.values() for route in read.routes]
    assert len(routes) == len(set(routes)), "a route served by two reads"
    for name, read in READS.items():
        assert read.what and read.routes and read.grants, name
        assert all(why.strip() for why in read.grants.values()), name
        assert read.whole <= read.readers, name


def test_a_scoped_role_is_granted_only_views_with_its_own_column() -> None:
    """A mission or a company sees its own rows of a view by the view's column of its scope (a mission_id, a
    company_id); a view without that column would show it every agency's rows, unless granted whole."""
    for projection in PROJECTIONS:
        read, columns = VIEWS[projection.name], projection.models[0].view().c
        for role in read.readers & SCOPE.keys():
            assert role in read.whole or SCOPE[role][0] in columns, (projection.name, role)


def test_only_the_agencies_that_record_a_journey_s_steps_read_journeys() -> None:
    """Need-to-know (issue 27): a journey's status and history are for the agencies that record its steps (and the
    history for auditors); the municipality, Civil Defence and road security record none and read neither."""
    recorders = frozenset().union(*(step.roles for step in JOURNEY_STEPS.values()))
    assert VIEW_READERS["journey_status"] == recorders
    history = READS["journey history"].readers
    assert history == recorders | {Role.AUDITOR}
    assert not {Role.AMANAH, Role.CIVIL_DEFENCE, Role.ROAD_SECURITY} & (recorders | history)


def test_reads_follow_the_domain() -> None:
    """Spot checks against domain.md and docs/access.md, written out independently of the table."""
    assert VIEW_READERS["trips_on_road"] == {Role.ROAD_SECURITY, Role.NAQABA, Role.MINISTRY}
    assert VIEW_READERS["building_occupancy"] == {Role.AMANAH, Role.CIVIL_DEFENCE, Role.COMPANY, Role.MINISTRY}
    assert VIEW_READERS["health_cases"] == {Role.MOH, Role.MINISTRY}
    assert READS["audit"].readers == {Role.AUDITOR, Role.MINISTRY} and READS["exports"].readers == {Role.ANALYST}
    single = ("journey_status", "journey history", "identity", "names", "missing_persons", "overstay_watch")
    assert not any(Role.ANALYST in READS[name].readers for name in single)  # analysts never a single journey
    assert all(Role.MINISTRY in read.readers for name, read in READS.items() if name not in ("exports", "names"))


def test_the_docs_show_who_reads_what_as_the_access_table_has_it() -> None:
    assert render_markdown() in DOC.read_text()
