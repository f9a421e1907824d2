"""A refusal's `allowed` list names exactly the steps that would be accepted next: conditions included."""

from __future__ import annotations

import copy
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hajj_ledger.domain.catalogue import JOURNEY_STEPS, allowed_now
from hajj_ledger.domain.errors import IllegalStepError, LedgerError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, Stage
from tests.support import STEP, journey_at, record, stamp

TRIED = sorted(STEP)


def _record(journey: Journey, event: str) -> None:
    """The step with the fields that fit the journey best, where some do (a hold not yet placed, one placed)."""
    if event == "LegalHoldPlaced":
        hold = next(f"hold_{n}" for n in count() if f"hold_{n}" not in journey.holds)
        journey.place_legal_hold(stamp(Role.JAWAZAT), hold)
    elif event == "LegalHoldLifted" and journey.holds:
        journey.lift_legal_hold(stamp(Role.JAWAZAT), journey.holds[0])
    else:
        record(journey, event)


def _accepted(journey: Journey, event: str) -> bool:
    try:
        _record(copy.deepcopy(journey), event)
    except LedgerError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(start=st.sampled_from(list(Stage)), walk=st.lists(st.sampled_from(TRIED), max_size=25))
def test_every_listed_step_is_accepted_next_and_every_other_refused(start: Stage, walk: list[str]) -> None:
    journey = journey_at(start, identity=start == Stage.REGISTERED)
    journey.collect_events()  # its state alone is copied for each try: a copy with its pending events costs 3-8x
    for event in walk:  # a random walk: hospital, missing, holds, buses, identities, each where they may be
        if _accepted(journey, event):
            _record(journey, event)
            journey.collect_events()
    allowed = set(allowed_now(JOURNEY_STEPS, journey))
    for event in TRIED:
        assert _accepted(journey, event) == (event in allowed), (event, journey.stage, sorted(allowed))


def test_a_refused_boarding_in_hospital_does_not_list_boarding() -> None:
    journey = journey_at(Stage.BUS_ASSIGNED)
    record(journey, "HospitalAdmitted")
    with pytest.raises(IllegalStepError, match="needs not in hospital") as refused:
        record(journey, "Boarded")
    assert "Boarded" not in refused.value.allowed
    assert "HospitalAdmitted" not in refused.value.allowed
    assert {"HospitalDischarged", "BusAssignmentCancelled"} <= set(refused.value.allowed)


def test_a_second_admission_is_refused_without_listing_admission() -> None:
    journey = journey_at(Stage.HOUSED)
    record(journey, "HospitalAdmitted")
    with pytest.raises(IllegalStepError) as refused:
        record(journey, "HospitalAdmitted")
    assert "HospitalAdmitted" not in refused.value.allowed
    assert "HospitalDischarged" in refused.value.allowed
