"""Every journey step from every stage: allowed exactly where the catalogue says, refused elsewhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hajj_ledger.domain.catalogue import (
    BUILDING_STEPS,
    CONTRACT_STEPS,
    IDENTITY_STEPS,
    JOURNEY_STEPS,
    OFFER_STEPS,
    check_step,
)
from hajj_ledger.domain.catalogue_doc import render_markdown
from hajj_ledger.domain.errors import IllegalStepError, OccurredTooEarlyError, PermissionDeniedError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import ENDED, BuildingStage, ContractStage, Mode, OfferStage, Role, Stage
from tests.support import (
    JED,
    MARKET_PATH_TO,
    MARKET_STEP,
    STEP,
    T0,
    TRIP_ID,
    journey_at,
    market_at,
    record,
    stamp,
    trip,
)

STEPS_AFTER_REGISTRATION = [e for e in JOURNEY_STEPS if e != "Registered"]


def _meet_conditions(journey_stage: Stage, event: str) -> Journey:
    journey = journey_at(journey_stage, identity=event in ("IdentityCorrected", "IdentityErased"))
    # Discharge needs an admission first, being found needs a report first; both only in the Kingdom.
    before = {
        "HospitalDischarged": "HospitalAdmitted",
        "Found": "ReportedMissing",
        "LegalHoldLifted": "LegalHoldPlaced",
    }.get(event)
    if before and journey_stage in JOURNEY_STEPS[before].from_:
        record(journey, before)
    return journey


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("event", STEPS_AFTER_REGISTRATION)
def test_step_is_allowed_exactly_from_the_catalogued_stages(event: str, stage: Stage) -> None:
    journey = _meet_conditions(stage, event)
    version = journey.version
    if stage in JOURNEY_STEPS[event].from_:
        record(journey, event)
        expected = JOURNEY_STEPS[event].to
        assert journey.stage == (expected or journey.stage)
    elif STEP[event][0] == Role.COMPANY and journey.company_id is None:
        # Before a package is contracted no company may act on the journey at all.
        with pytest.raises(PermissionDeniedError, match="not contracted to this company"):
            record(journey, event)
    else:
        with pytest.raises(IllegalStepError) as refused:
            record(journey, event)
        assert refused.value.stage == stage
        assert event not in refused.value.allowed
    assert journey.version in (version, version + 1)
    assert (journey.version == version + 1) == (stage in JOURNEY_STEPS[event].from_)


def test_every_stage_is_reachable_and_every_non_final_stage_has_a_way_on() -> None:
    targets = {step.to for step in JOURNEY_STEPS.values()} - {None}
    assert targets == set(Stage)
    for stage in set(Stage) - ENDED:
        assert any(stage in step.from_ for step in JOURNEY_STEPS.values()), stage


@pytest.mark.parametrize("stage", sorted(ENDED))
def test_nothing_is_recorded_after_the_end(stage: Stage) -> None:
    journey = journey_at(stage, identity=True)
    for event in set(STEPS_AFTER_REGISTRATION) - IDENTITY_STEPS:
        with pytest.raises(IllegalStepError, match=r"steps: IdentityCorrected, IdentityErased, LegalHoldPlaced$"):
            record(journey, event)


@pytest.mark.parametrize("stage", sorted(ENDED))
def test_after_the_end_an_identity_can_still_be_corrected_and_erased(stage: Stage) -> None:
    journey = journey_at(stage, identity=True)
    record(journey, "IdentityCorrected")
    record(journey, "IdentityErased")
    assert journey.identity == "erased"
    with pytest.raises(IllegalStepError, match="needs an identity in the vault"):
        record(journey, "IdentityErased")


def test_a_legal_hold_keeps_the_identity_from_erasure_and_is_named() -> None:
    journey = journey_at(Stage.DECEASED, identity=True)
    record(journey, "LegalHoldPlaced")
    journey.place_legal_hold(stamp(Role.MOH), "death_identification")
    with pytest.raises(IllegalStepError, match="legal hold: death_identification, overstay_investigation"):
        record(journey, "IdentityErased")
    record(journey, "LegalHoldLifted")
    journey.lift_legal_hold(stamp(Role.MOH), "death_identification")
    record(journey, "IdentityErased")
    assert journey.identity == "erased"


def test_a_bus_before_entry_clearance_is_refused_naming_the_stage() -> None:
    journey = journey_at(Stage.ARRIVED)
    with pytest.raises(IllegalStepError) as refused:
        record(journey, "BusAssigned")
    assert refused.value.stage == "arrived"
    # Only what would be accepted now: not a discharge before an admission, nor a correction before an identity.
    assert refused.value.allowed == sorted(
        ["EntryCleared", "HospitalAdmitted", "ReportedMissing", "DeathRecorded", "IdentityRecorded", "LegalHoldPlaced"]
    )
    assert "current stage 'arrived'" in str(refused.value)


def test_a_second_departure_is_refused() -> None:
    journey = journey_at(Stage.DEPARTED)
    with pytest.raises(IllegalStepError, match="current stage 'departed'"):
        record(journey, "Departed")


def test_hospital_and_missing_are_states_beside_the_stage() -> None:
    journey = journey_at(Stage.HOUSED)
    record(journey, "HospitalAdmitted")
    assert (journey.stage, journey.hospital) == (Stage.HOUSED, "MINA-HOSPITAL")
    with pytest.raises(IllegalStepError, match="not in hospital"):
        record(journey, "HospitalAdmitted")
    with pytest.raises(IllegalStepError, match="needs not in hospital and not missing"):
        record(journey, "MovedToSite")
    record(journey, "HospitalDischarged")
    record(journey, "ReportedMissing")
    assert journey.missing and journey.stage == Stage.HOUSED
    with pytest.raises(IllegalStepError, match="needs not in hospital and not missing"):
        record(journey, "MovedToSite")
    record(journey, "Found")
    record(journey, "MovedToSite")
    assert (journey.stage, journey.place, journey.missing) == (Stage.AT_SITE, "mina", False)


def test_cancelling_a_bus_assignment_returns_to_the_stage_before_it() -> None:
    for stage in (Stage.RECEIVED, Stage.HOUSED):
        journey = journey_at(stage)
        record(journey, "BusAssigned")
        record(journey, "BusAssignmentCancelled")
        assert journey.stage == stage and journey.trip_id is None


def test_boarding_another_trip_than_the_assigned_one_is_refused() -> None:
    from uuid import uuid4

    journey = journey_at(Stage.BUS_ASSIGNED)
    with pytest.raises(IllegalStepError, match="the trip it was assigned to"):
        journey.board(stamp(Role.NAQABA), uuid4())


def test_arrival_after_the_visa_expired_is_refused() -> None:
    from datetime import timedelta

    journey = journey_at(Stage.VISA_ISSUED)
    late = stamp(Role.GACA, at=T0 + timedelta(days=91))
    with pytest.raises(IllegalStepError, match="visa valid when it happened"):
        journey.arrive_at_port(late, JED, Mode.AIR, "GA901")


def test_an_arrival_flight_cannot_be_booked_once_arrived() -> None:
    from hajj_ledger.domain.vocabulary import Direction

    journey = journey_at(Stage.HOUSED)
    with pytest.raises(IllegalStepError, match="arrival flights before arrival"):
        journey.book_flight(stamp(Role.MISSION), Direction.ARRIVAL, "GA1", JED, T0)


def test_the_table_renders_every_step() -> None:
    table = render_markdown()
    for event, (role, _) in STEP.items():
        assert f"| {event} | " in table
        assert role in JOURNEY_STEPS[event].roles


MARKET_PAIRS = [
    (event, stage)
    for steps, stages in ((OFFER_STEPS, OfferStage), (CONTRACT_STEPS, ContractStage), (BUILDING_STEPS, BuildingStage))
    for event in steps
    if event in MARKET_STEP
    for stage in stages
]


@pytest.mark.parametrize(("event", "stage"), MARKET_PAIRS)
def test_a_market_or_housing_step_is_allowed_exactly_from_the_catalogued_stages(event: str, stage: Any) -> None:
    """Every step of an offer, a contract and a building (but the one creating it) from every stage of its kind."""
    aggregate = market_at(stage, event)
    kind = type(aggregate).Event.steps
    version = aggregate.version
    if stage in kind[event].from_:
        record(aggregate, event)
        assert aggregate.stage == (kind[event].to or stage) and aggregate.version == version + 1
    else:
        with pytest.raises(IllegalStepError) as refused:
            record(aggregate, event)
        assert refused.value.stage == stage and event not in refused.value.allowed
        assert f"current stage '{stage}'" in str(refused.value) and aggregate.version == version


def test_every_market_step_is_tried_every_stage_reachable_and_the_tables_render() -> None:
    created = {"OfferPublished", "ContractProposed", "BuildingLicensed"}
    assert set(MARKET_STEP) == (set(OFFER_STEPS) | set(CONTRACT_STEPS) | set(BUILDING_STEPS)) - created
    for steps in (OFFER_STEPS, CONTRACT_STEPS, BUILDING_STEPS):
        stages = {s for step in steps.values() for s in step.from_} | {s.to for s in steps.values()} - {None}
        assert stages <= set(MARKET_PATH_TO)
        assert all(f"| {event} | " in render_markdown(steps) for event in steps)


def test_a_ride_follows_its_trip_boarding_before_it_leaves_and_the_transfer_after() -> None:
    """The ledger passes the journey's trip in as `trip` (as it loaded it); the catalogue's conditions ask it."""
    journey, bus = journey_at(Stage.BUS_ASSIGNED), trip()
    naqaba, left = stamp(Role.NAQABA), T0 + timedelta(hours=6)
    fields = {"stamp": naqaba, "trip_id": TRIP_ID, "trip": bus}
    check_step(JOURNEY_STEPS, "Boarded", journey, fields)  # still scheduled
    with pytest.raises(IllegalStepError, match=f"trip {bus.id} is scheduled; TransferCompleted needs it departed"):
        check_step(JOURNEY_STEPS, "TransferCompleted", journey_at(Stage.BOARDED), fields)
    bus.depart(stamp(Role.NAQABA, at=left))
    with pytest.raises(IllegalStepError, match=f"trip {bus.id} is departed; Boarded needs it scheduled"):
        check_step(JOURNEY_STEPS, "Boarded", journey, fields)
    with pytest.raises(OccurredTooEarlyError, match=f"is before the departure of trip {bus.id}, at 2025-05-01T14:00"):
        check_step(JOURNEY_STEPS, "TransferCompleted", journey_at(Stage.BOARDED), fields)
    arrived = {**fields, "stamp": stamp(Role.NAQABA, at=left + timedelta(hours=2))}
    check_step(JOURNEY_STEPS, "TransferCompleted", journey_at(Stage.BOARDED), arrived)
    bus.arrive(stamp(Role.NAQABA, at=left + timedelta(hours=1)))
    check_step(JOURNEY_STEPS, "TransferCompleted", journey_at(Stage.BOARDED), arrived)  # the bus's arrival first
