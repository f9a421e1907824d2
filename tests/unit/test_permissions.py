"""Who may record what: every role against every step, and the missions' and companies' scope."""

from __future__ import annotations

from uuid import uuid4

import pytest

from hajj_ledger.domain.catalogue import JOURNEY_STEPS, STEPS, TRIP_STEPS
from hajj_ledger.domain.errors import PermissionDeniedError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, Stage
from tests.support import STEP, journey_at, record, register, stamp, trip

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
