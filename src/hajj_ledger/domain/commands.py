"""What an agency asks the ledger to record: one command per step, validated before anything is loaded.

A command names the event it records (`"event": "VisaIssued"`), the journey or trip it is about, when it
happened, and its own id, which makes retrying it safe. Unknown fields are refused. Free text is avoided on
purpose: reasons are short codes, so no personal data can slip into an event through a comment.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, cast, get_args
from uuid import UUID

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from hajj_ledger.domain.catalogue import LATE_TOLERANCE, STEPS
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import (
    CancellationReason,
    Day,
    Direction,
    Mode,
    Moment,
    Port,
    Site,
    parse_place,
)

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="a short snake_case code")]
AgencyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,63}$")]
FlightNumber = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}[0-9]{1,4}[A-Z]?$")]
PlaceCode = Annotated[str, Field(description="a site (makkah, mina, ...) or a port code (JED-HAJJ, ...)")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Identity(BaseModel):
    """Who a pilgrim is, as a registration carries it and the identity vault keeps it, never in an event: names as
    written (Arabic script, and the passport's Latin form, verbatim)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use: starts faster

    name_arabic: Name
    name_latin: Name
    passport_number: str = Field(pattern=r"^[A-Za-z0-9]{5,20}$")
    passport_country: str = Field(pattern=r"^[A-Z]{3}$")
    nationality: str = Field(pattern=r"^[A-Z]{3}$")
    date_of_birth: Day
    gender: Literal["female", "male"]


class CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    command_id: UUID = Field(description="chosen by the caller; repeating it repeats the first outcome")
    correlation_id: UUID | None = None
    occurred_at: Moment = Field(description="when it happened, by the recording agency's account")
    late_correction: Code | None = Field(
        default=None,
        description=f"why a step is reported more than {LATE_TOLERANCE} (h:mm:ss) before the journey's latest one "
        "(e.g. device_offline): recorded in the event; for the agencies in the field",
    )

    # The aggregate method that records the step, and the field naming its aggregate.
    method: ClassVar[str]
    target: ClassVar[str] = ""

    def arguments(self) -> dict[str, Any]:
        """The event's own fields: everything but the envelope and the target."""
        return {
            name: _utc(getattr(self, name))
            for name in type(self).model_fields
            if name not in _ENVELOPE and name != self.target
        }

    def fingerprint(self) -> str:
        """A digest of the command, to tell a retry from a different command reusing an id. Identity is left
        out: receipts must not hold a hash of who the pilgrim is."""
        return hashlib.sha256(self.model_dump_json(exclude={"identity"}).encode()).hexdigest()


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


_ENVELOPE = {"event", "command_id", "correlation_id", "occurred_at", "late_correction"}


class JourneyCommand(CommandBase):
    target = "journey_id"
    journey_id: UUID


class TripCommand(CommandBase):
    target = "trip_id"
    trip_id: UUID


class Register(CommandBase):
    event: Literal["Registered"] = "Registered"
    pilgrim_id: UUID = Field(description="the pilgrim's pseudonymous id; never a passport number")
    season: StrictInt = Field(ge=1400, le=1600, description="the Hijri year of the season")
    country: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3 of the sending country")
    pre_cleared: StrictBool = Field(default=False, description="cleared at origin (Makkah Route)")
    identity: Identity | None = Field(
        default=None, description="who the pilgrim is: kept encrypted in the vault, never in an event"
    )


class ContractPackage(JourneyCommand):
    event: Literal["PackageContracted"] = "PackageContracted"
    method = "contract_package"
    company_id: AgencyId
    package_id: Label


class RequestVisa(JourneyCommand):
    event: Literal["VisaRequested"] = "VisaRequested"
    method = "request_visa"


class IssueVisa(JourneyCommand):
    event: Literal["VisaIssued"] = "VisaIssued"
    method = "issue_visa"
    valid_until: Moment


class RejectVisa(JourneyCommand):
    event: Literal["VisaRejected"] = "VisaRejected"
    method = "reject_visa"
    reason: Code


class RevokeVisa(JourneyCommand):
    event: Literal["VisaRevoked"] = "VisaRevoked"
    method = "revoke_visa"
    reason: Code


class BookFlight(JourneyCommand):
    event: Literal["FlightBooked"] = "FlightBooked"
    method = "book_flight"
    direction: Direction
    flight: FlightNumber
    port: Port
    scheduled_at: Moment

    @model_validator(mode="after")
    def _port_is_an_airport(self) -> BookFlight:
        if self.port.mode is not Mode.AIR:
            raise ValueError(f"port: {self.port} is reached by {self.port.mode}, not an airport")
        return self


class ArriveAtPort(JourneyCommand):
    event: Literal["ArrivedAtPort"] = "ArrivedAtPort"
    method = "arrive_at_port"
    port: Port
    mode: Mode
    flight: FlightNumber | None = None

    @model_validator(mode="after")
    def _mode_fits_port(self) -> ArriveAtPort:
        if self.mode is not self.port.mode:
            raise ValueError(f"mode: {self.port} is reached by {self.port.mode}, not {self.mode}")
        if (self.mode is Mode.AIR) != (self.flight is not None):
            raise ValueError("flight: required for arrivals by air, and only for them")
        return self


class ClearEntry(JourneyCommand):
    event: Literal["EntryCleared"] = "EntryCleared"
    method = "clear_entry"
    port: Port


class ClearCustoms(JourneyCommand):
    event: Literal["CustomsCleared"] = "CustomsCleared"
    method = "clear_customs"
    port: Port


class ReceiveAtPort(JourneyCommand):
    event: Literal["ReceivedAtPort"] = "ReceivedAtPort"
    method = "receive_at_port"
    port: Port


class AssignBus(JourneyCommand):
    event: Literal["BusAssigned"] = "BusAssigned"
    trip_id: UUID


class CancelBusAssignment(JourneyCommand):
    event: Literal["BusAssignmentCancelled"] = "BusAssignmentCancelled"
    trip_id: UUID
    reason: Code


class Board(JourneyCommand):
    event: Literal["Boarded"] = "Boarded"
    method = "board"
    trip_id: UUID


class CompleteTransfer(JourneyCommand):
    event: Literal["TransferCompleted"] = "TransferCompleted"
    method = "complete_transfer"
    trip_id: UUID


class CheckInHousing(JourneyCommand):
    event: Literal["HousingCheckedIn"] = "HousingCheckedIn"
    method = "check_in_housing"
    site: Site
    building: Label


class CheckOutHousing(JourneyCommand):
    event: Literal["HousingCheckedOut"] = "HousingCheckedOut"
    method = "check_out_housing"
    site: Site
    building: Label


class MoveToSite(JourneyCommand):
    event: Literal["MovedToSite"] = "MovedToSite"
    method = "move_to_site"
    site: Site


class AdmitToHospital(JourneyCommand):
    event: Literal["HospitalAdmitted"] = "HospitalAdmitted"
    method = "admit_to_hospital"
    facility: Label


class DischargeFromHospital(JourneyCommand):
    event: Literal["HospitalDischarged"] = "HospitalDischarged"
    method = "discharge_from_hospital"
    facility: Label


class ReportMissing(JourneyCommand):
    event: Literal["ReportedMissing"] = "ReportedMissing"
    method = "report_missing"


class RecordFound(JourneyCommand):
    event: Literal["Found"] = "Found"
    method = "record_found"
    site: Site


class RecordDeath(JourneyCommand):
    event: Literal["DeathRecorded"] = "DeathRecorded"
    method = "record_death"
    facility: Label | None = None


class Cancel(JourneyCommand):
    event: Literal["Cancelled"] = "Cancelled"
    method = "cancel"
    reason: CancellationReason


class ClearExit(JourneyCommand):
    event: Literal["ExitCleared"] = "ExitCleared"
    method = "clear_exit"
    port: Port


class Depart(JourneyCommand):
    event: Literal["Departed"] = "Departed"
    method = "depart"
    port: Port
    flight: FlightNumber | None = None


class RecordIdentity(JourneyCommand):
    """The identity of a pilgrim registered without one (registration with identity records it at once)."""

    event: Literal["IdentityRecorded"] = "IdentityRecorded"
    identity: Identity


class CorrectIdentity(JourneyCommand):
    event: Literal["IdentityCorrected"] = "IdentityCorrected"
    identity: Identity


class EraseIdentity(JourneyCommand):
    event: Literal["IdentityErased"] = "IdentityErased"
    reason: Code


class PlaceLegalHold(JourneyCommand):
    event: Literal["LegalHoldPlaced"] = "LegalHoldPlaced"
    method = "place_legal_hold"
    hold: Code = Field(description="e.g. overstay_investigation, death_identification")


class LiftLegalHold(JourneyCommand):
    event: Literal["LegalHoldLifted"] = "LegalHoldLifted"
    method = "lift_legal_hold"
    hold: Code


class ScheduleTrip(CommandBase):
    event: Literal["TripScheduled"] = "TripScheduled"
    trip_id: UUID | None = Field(default=None, description="derived from command_id when omitted")
    operator: Label
    bus_plate: Label
    origin: PlaceCode
    destination: PlaceCode
    departs_at: Moment
    capacity: StrictInt = Field(gt=0, le=120, description="seats on the bus")

    @model_validator(mode="after")
    def _places_are_known(self) -> ScheduleTrip:
        for name in ("origin", "destination"):
            try:
                parse_place(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        if self.origin == self.destination:
            raise ValueError("destination: must differ from origin")
        return self


class DepartTrip(TripCommand):
    event: Literal["TripDeparted"] = "TripDeparted"
    method = "depart"


class ArriveTrip(TripCommand):
    event: Literal["TripArrived"] = "TripArrived"
    method = "arrive"


class CancelTrip(TripCommand):
    event: Literal["TripCancelled"] = "TripCancelled"
    method = "cancel"
    reason: Code


Command = Annotated[
    Register
    | ContractPackage
    | RequestVisa
    | IssueVisa
    | RejectVisa
    | RevokeVisa
    | BookFlight
    | ArriveAtPort
    | ClearEntry
    | ClearCustoms
    | ReceiveAtPort
    | AssignBus
    | CancelBusAssignment
    | Board
    | CompleteTransfer
    | CheckInHousing
    | CheckOutHousing
    | MoveToSite
    | AdmitToHospital
    | DischargeFromHospital
    | ReportMissing
    | RecordFound
    | RecordDeath
    | Cancel
    | ClearExit
    | Depart
    | RecordIdentity
    | CorrectIdentity
    | EraseIdentity
    | PlaceLegalHold
    | LiftLegalHold
    | ScheduleTrip
    | DepartTrip
    | ArriveTrip
    | CancelTrip,
    Field(discriminator="event"),
]


@cache
def _command() -> TypeAdapter[Command]:
    """Built on first use (as are the models, `defer_build`): a command line that records nothing starts faster."""
    return TypeAdapter(Command)


COMMANDS: dict[str, type[CommandBase]] = {
    model.model_fields["event"].default: model for model in get_args(get_args(Command)[0])
}


def parse_command(data: Any) -> Command:
    """A command from decoded JSON, or a ValidationError naming each bad field and why."""
    try:
        return _command().validate_python(data)
    except pydantic.ValidationError as e:
        raise validation_error(e) from None


def parse_command_json(text: str | bytes) -> Command:
    """A command from JSON text. The command line records one command: only its event's model is built when the
    text names a known event (the union of all of them takes longer to build than the rest of `record`); anything
    else goes to the union, which says what is wrong with the tag."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    event = data.get("event") if isinstance(data, dict) else None
    model = COMMANDS.get(event) if isinstance(event, str) else None
    try:
        return cast(Command, model.model_validate_json(text)) if model else _command().validate_json(text)
    except pydantic.ValidationError as e:
        raise validation_error(e) from None


def validation_error(error: pydantic.ValidationError) -> ValidationError:
    problems = []
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        if loc and loc[0] in STEPS:  # the union's tag says nothing to the caller
            loc = loc[1:]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            loc = ["event"]
        if not loc and ": " in message:  # our own cross-field checks name their field
            field, reason = message.split(": ", 1)
        else:
            field, reason = ".".join(loc) or "command", message
        problems.append((field, reason))
    return ValidationError(*problems[0], problems=problems)
