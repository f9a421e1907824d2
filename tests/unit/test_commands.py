"""Bad input is refused with the field and the reason, before anything is loaded or stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from hajj_ledger.domain.commands import IssueVisa
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.parsing import _command, parse_command, parse_command_json, validation_error
from tests.support import T0

# Fixed ids: the tests named after these values must be the same in every xdist worker.
BASE = {
    "command_id": "00000000-0000-4000-8000-000000000001",
    "occurred_at": T0.isoformat(),
    "journey_id": "00000000-0000-4000-8000-000000000002",
}


def _refused(data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        parse_command(data)
    return refused.value


BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"event": "Teleported"}, "event", "does not match any of the expected tags"),
    ({**BASE, "event": "ClearedEntry"}, "event", "expected tags"),
    ({**BASE, "event": "EntryCleared", "port": "JFK"}, "port", "Input should be"),
    ({**BASE, "event": "EntryCleared", "port": "JED-HAJJ", "note": "x"}, "note", "Extra"),
    ({**BASE, "event": "VisaRequested", "journey_id": "42"}, "journey_id", "valid UUID"),
    (
        {**BASE, "event": "VisaRequested", "occurred_at": "2025-05-01T08:00"},
        "occurred_at",
        "timezone",
    ),
    (
        {**BASE, "event": "ArrivedAtPort", "port": "HADITHA", "mode": "air", "flight": "SV1"},
        "mode",
        "reached by land",
    ),
    (
        {**BASE, "event": "ArrivedAtPort", "port": "JED-HAJJ", "mode": "air"},
        "flight",
        "required",
    ),
    (
        {
            **BASE,
            "event": "FlightBooked",
            "direction": "arrival",
            "flight": "sv 1",
            "port": "JED-HAJJ",
            "scheduled_at": T0.isoformat(),
        },
        "flight",
        "pattern",
    ),
    ({**BASE, "event": "VisaRejected", "reason": "He is called Muhammad"}, "reason", "pattern"),
    (
        {
            "event": "TripScheduled",
            "command_id": "00000000-0000-4000-8000-000000000003",
            "occurred_at": T0.isoformat(),
            "operator": "SAPTCO",
            "bus_plate": "K-1",
            "origin": "JED-HAJJ",
            "destination": "makkah",
            "departs_at": T0.isoformat(),
            "capacity": 0,
        },
        "capacity",
        "greater than 0",
    ),
    (
        {
            "event": "TripScheduled",
            "command_id": "00000000-0000-4000-8000-000000000004",
            "occurred_at": T0.isoformat(),
            "operator": "SAPTCO",
            "bus_plate": "K-1",
            "origin": "JED-HAJJ",
            "destination": "mekka",
            "departs_at": T0.isoformat(),
            "capacity": 49,
        },
        "destination",
        "neither a site nor a port",
    ),
    (
        {
            "event": "Registered",
            "command_id": "00000000-0000-4000-8000-000000000005",
            "occurred_at": T0.isoformat(),
            "pilgrim_id": "00000000-0000-4000-8000-000000000006",
            "season": 1446,
            "country": "Indonesia",
        },
        "country",
        "not a country's ISO 3166-1 alpha-3 code",
    ),
]


@pytest.mark.parametrize(("data", "field", "reason"), BAD_VALUES)
def test_a_bad_value_is_named_with_its_reason(data: dict[str, Any], field: str, reason: str) -> None:
    error = _refused(data)
    assert error.field == field
    assert reason in error.reason


def test_every_bad_field_is_reported() -> None:
    error = _refused({**BASE, "event": "VisaIssued", "journey_id": "x", "valid_until": "soon"})
    assert {f for f, _ in error.problems} == {"journey_id", "valid_until"}


@pytest.mark.parametrize(
    "text",
    [
        *(json.dumps(data) for data, _, _ in BAD_VALUES),
        json.dumps({**BASE, "event": "VisaIssued", "journey_id": "x", "valid_until": "soon"}),
        json.dumps({**BASE, "event": "VisaIssued", "valid_until": T0.isoformat()}),
        json.dumps({**BASE}),
        json.dumps({**BASE, "event": 7}),
        json.dumps([BASE]),
        "{not json",
        '{"event": "VisaRequested", "event": "Teleported"}',
    ],
)
def test_json_is_read_as_the_union_of_every_command_reads_it(text: str) -> None:
    """The command line builds only the named event's model: what it accepts and refuses, and why, is the same."""

    def outcome(parse: Callable[[str], Any]) -> Any:
        try:
            return parse(text)
        except ValidationError as error:
            return error.problems
        except pydantic.ValidationError as error:
            return validation_error(error).problems

    assert outcome(parse_command_json) == outcome(_command().validate_json)


def test_json_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_command_json("{not json")


def test_times_become_utc_and_arguments_leave_out_the_envelope() -> None:
    command = parse_command({**BASE, "event": "VisaIssued", "valid_until": "2025-07-10T03:00:00+03:00"})
    assert isinstance(command, IssueVisa)
    assert command.arguments() == {"valid_until": T0.replace(month=7, day=10, hour=0)}
    assert command.arguments()["valid_until"].utcoffset().total_seconds() == 0


def test_json_naming_a_known_event_builds_only_that_events_model() -> None:
    """`hajj-ledger record` starts faster: the union of every command is built only for what it must refuse."""
    _command.cache_clear()
    command = parse_command_json(json.dumps({**BASE, "event": "VisaIssued", "valid_until": T0.isoformat()}))
    assert isinstance(command, IssueVisa)
    assert _command.cache_info().currsize == 0
