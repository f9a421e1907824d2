"""No event may carry personal data: events name a pilgrim id, identity lives apart."""

from __future__ import annotations

import dataclasses
import re

import pytest

from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import Stamp

PERSONAL = re.compile(
    r"name|passport|birth|dob|age$|gender|sex|health|diagnos|condition|phone|email|address|"
    r"religio|photo|biometric|fingerprint|national_id|iqama|visa_number"
)


def _event_classes() -> list[type]:
    classes = []
    for aggregate in (Journey, Trip):
        for value in vars(aggregate).values():
            if isinstance(value, type) and issubclass(value, aggregate.Event):
                classes.append(value)
    return classes


def test_the_scan_sees_every_event() -> None:
    names = {c.__name__ for c in _event_classes()}
    assert {"Registered", "VisaIssued", "Departed", "TripScheduled", "SeatReserved"} <= names
    assert len(names) >= 32


@pytest.mark.parametrize("event_class", _event_classes(), ids=lambda c: c.__name__)
def test_no_event_field_names_personal_data(event_class: type) -> None:
    fields = [f.name for f in dataclasses.fields(event_class)]
    fields += [f.name for f in dataclasses.fields(Stamp)]
    assert not [f for f in fields if PERSONAL.search(f)], fields


def test_the_scan_would_catch_a_personal_field() -> None:
    assert PERSONAL.search("passport_number") and PERSONAL.search("full_name")
    assert not PERSONAL.search("pilgrim_id")
