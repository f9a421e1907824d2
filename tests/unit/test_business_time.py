"""Business time: a step is dated no earlier than its journey's registration, and no more than the tolerance before
its latest step, unless recorded as a late correction by an agency in the field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from hajj_ledger.domain.catalogue import LATE_TOLERANCE
from hajj_ledger.domain.errors import OccurredTooEarlyError, PermissionDeniedError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, Stage, Stamp
from tests.support import T0, journey_at, record, stamp

ADMITTED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _admitted() -> Journey:
    journey = journey_at(Stage.HOUSED)
    journey.admit_to_hospital(stamp(Role.MOH, at=ADMITTED), "MINA-HOSPITAL")
    return journey


def test_a_discharge_long_before_the_admission_is_refused_naming_both_times() -> None:
    journey = _admitted()
    with pytest.raises(OccurredTooEarlyError) as refused:
        journey.discharge_from_hospital(stamp(Role.MOH, at=datetime(2020, 1, 1, tzinfo=UTC)), "MINA-HOSPITAL")
    assert refused.value.field == "occurred_at"
    assert "2020-01-01T00:00:00+00:00" in str(refused.value) and "2025-05-01T08:00:00+00:00" in str(refused.value)
    assert "before the journey's registration" in str(refused.value)
    with pytest.raises(OccurredTooEarlyError) as refused:
        journey.discharge_from_hospital(stamp(Role.MOH, at=ADMITTED - timedelta(days=2)), "MINA-HOSPITAL")
    assert "2026-11-24T09:00:00+00:00 is 2 days, 0:00:00 before the journey's latest step" in str(refused.value)
    assert "at 2026-11-26T09:00:00+00:00" in str(refused.value)
    assert journey.hospital == "MINA-HOSPITAL"  # nothing changed


def test_a_report_within_the_tolerance_is_taken() -> None:
    journey = _admitted()
    journey.discharge_from_hospital(stamp(Role.MOH, at=ADMITTED - LATE_TOLERANCE), "MINA-HOSPITAL")
    assert journey.hospital is None and journey.last_occurred_at == ADMITTED  # the latest stays the latest


def test_a_late_correction_by_an_agency_in_the_field_is_taken_and_says_why() -> None:
    journey = _admitted()
    late = dataclasses.replace(stamp(Role.MOH, at=ADMITTED - timedelta(days=3)), late_reason="paper_record")
    journey.discharge_from_hospital(late, "MINA-HOSPITAL")
    [event] = journey.collect_events()[-1:]
    assert isinstance(event, Journey.HospitalDischarged) and event.stamp.late_reason == "paper_record"
    assert journey.hospital is None


def test_a_late_correction_never_predates_the_registration() -> None:
    journey = _admitted()
    late = dataclasses.replace(stamp(Role.MOH, at=T0 - timedelta(days=1)), late_reason="paper_record")
    with pytest.raises(OccurredTooEarlyError, match="before the journey's registration"):
        journey.discharge_from_hospital(late, "MINA-HOSPITAL")


def test_late_corrections_are_for_the_agencies_in_the_field() -> None:
    journey = journey_at(Stage.CONTRACTED)
    office: Stamp = dataclasses.replace(stamp(Role.MISSION), late_reason="forgot")
    with pytest.raises(PermissionDeniedError, match="VisaRequested as a late correction"):
        journey.request_visa(office)
    record(journey, "VisaRequested")
    assert journey.stage == Stage.VISA_REQUESTED
