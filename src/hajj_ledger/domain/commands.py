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
    AfterValidator,
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
from hajj_ledger.domain.documents import (
    COUNTRIES,
    MAX_AGE_YEARS,
    checked_country,
    checked_date_of_birth,
    checked_passport_number,
)
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import (
    HOUSING,
    OFFER_SITES,
    SEASONS,
    CancellationReason,
    City,
    Day,
    Direction,
    Mode,
    Moment,
    OfferKind,
    OfferSite,
    Port,
    Site,
    parse_place,
)

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="a short snake_case code")]
AgencyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,63}$")]
FlightNumber = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}[0-9]{1,4}[A-Z]?$")]
PlaceCode = Annotated[str, Field(json_schema_extra={"enum": [*Site, *Port]}, description="a site or a port")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Checked as documents are (domain/documents.py); the schema shows the forms, the checks give the reasons.
Country = Annotated[
    str,
    AfterValidator(checked_country),
    Field(json_schema_extra={"enum": sorted(COUNTRIES)}, description="ISO 3166-1 alpha-3"),
]
PassportNumber = Annotated[
    str,
    AfterValidator(checked_passport_number),
    Field(
        json_schema_extra={"pattern": r"^[A-Z0-9]{5,9}$"},
        description="as the passport's machine-readable zone prints it (ICAO 9303): 5 to 9 letters A-Z and digits, "
        "at least one a digit; spaces are dropped and letters upper-cased",
    ),
]


class Identity(BaseModel):
    """Who a pilgrim is, as a registration carries it and the identity vault keeps it, never in an event: names as
    written (Arabic script, and the passport's Latin form, verbatim); the passport's number, countries and the date
    of birth checked as documents are."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use: starts faster

    name_arabic: Name
    name_latin: Name
    passport_number: PassportNumber
    passport_country: Country
    nationality: Country
    date_of_birth: Annotated[
        Day, AfterValidator(checked_date_of_birth), Field(description=f"in the past, at most {MAX_AGE_YEARS} years ago")
    ]
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
        # Excluding costs pydantic half as much again as the dump: asked only of the commands that carry one.
        exclude = _IDENTITY if "identity" in type(self).model_fields else None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


_ENVELOPE = {"event", "command_id", "correlation_id", "occurred_at", "late_correction"}
_IDENTITY = {"identity"}


class JourneyCommand(CommandBase):
    target = "journey_id"
    journey_id: UUID


class TripCommand(CommandBase):
    target = "trip_id"
    trip_id: UUID


class OfferCommand(CommandBase):
    target = "offer_id"
    offer_id: UUID


class ContractCommand(CommandBase):
    target = "contract_id"
    contract_id: UUID


class BuildingCommand(CommandBase):
    target = "building_id"
    building_id: UUID


SeasonNumber = Annotated[
    StrictInt, Field(ge=SEASONS.start, le=SEASONS.stop - 1, description="the Hijri year of the season")
]


class SeasonCommand(CommandBase):
    """A step of a season opened before: its target is the season's number (the aggregate's id follows from it)."""

    target = "season"
    season: SeasonNumber


class Register(CommandBase):
    event: Literal["Registered"] = "Registered"
    pilgrim_id: UUID = Field(description="the pilgrim's pseudonymous id; never a passport number")
    season: SeasonNumber
    country: Country = Field(description="ISO 3166-1 alpha-3 of the sending country")
    pre_cleared: StrictBool = Field(default=False, description="cleared at origin (Makkah Route)")
    identity: Identity | None = Field(
        default=None, description="who the pilgrim is: kept encrypted in the vault, never in an event"
    )


class ContractPackage(JourneyCommand):
    """The pilgrim under a signed contract of the journey's mission: takes one of its places."""

    event: Literal["PackageContracted"] = "PackageContracted"
    contract_id: UUID = Field(description="a signed contract of the journey's mission and season, with a free place")
    package_id: str = Field(
        default="", pattern=r"^([A-Za-z0-9][A-Za-z0-9 _./-]{0,63})?$", description="the mission's own name for it"
    )


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
    """Into a building named by the offer of the journey's contract: licensed, inspected, with a free bed."""

    event: Literal["HousingCheckedIn"] = "HousingCheckedIn"
    site: Site
    building: Label = Field(description="the company's own name for the building")
    building_id: UUID


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
    expected_arrival: Moment | None = Field(default=None, description="when it should reach its destination")

    @model_validator(mode="after")
    def _places_are_known(self) -> ScheduleTrip:
        for name in ("origin", "destination"):
            try:
                parse_place(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        if self.origin == self.destination:
            raise ValueError("destination: must differ from origin")
        if self.expected_arrival is not None and self.expected_arrival <= self.departs_at:
            raise ValueError("expected_arrival: must be after departs_at")
        return self


Places = Annotated[StrictInt, Field(gt=0, le=1_000_000)]
PriceSar = Annotated[StrictInt, Field(ge=0, le=10_000_000, description="whole riyals per pilgrim")]
BuildingIds = Annotated[tuple[UUID, ...], Field(max_length=500)]


class PublishOffer(CommandBase):
    """A hospitality company's places for a season, for missions to contract."""

    event: Literal["OfferPublished"] = "OfferPublished"
    offer_id: UUID | None = Field(default=None, description="derived from command_id when omitted")
    season: SeasonNumber
    kind: OfferKind
    site: OfferSite
    places: Places
    price_sar: PriceSar
    valid_from: Moment
    valid_until: Moment
    building_ids: BuildingIds = Field(default=(), description="the buildings of a housing offer; none otherwise")

    @model_validator(mode="after")
    def _consistent(self) -> PublishOffer:
        if self.site not in OFFER_SITES[self.kind]:
            raise ValueError(f"site: {self.kind} is served in {', '.join(sorted(OFFER_SITES[self.kind]))}")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until: must be after valid_from")
        if bool(self.building_ids) != (self.kind in HOUSING):
            raise ValueError("building_ids: required for the housing kinds, and only for them")
        if len(set(self.building_ids)) != len(self.building_ids):
            raise ValueError("building_ids: a building named twice")
        return self


class AmendOffer(OfferCommand):
    """Any of places, price, end of validity and buildings; those given replace the offer's."""

    event: Literal["OfferAmended"] = "OfferAmended"
    places: Places | None = None
    price_sar: PriceSar | None = None
    valid_until: Moment | None = None
    building_ids: BuildingIds | None = None

    @model_validator(mode="after")
    def _something(self) -> AmendOffer:
        if (self.places, self.price_sar, self.valid_until, self.building_ids) == (None, None, None, None):
            raise ValueError("places: give at least one of places, price_sar, valid_until, building_ids")
        if self.building_ids is not None and len(set(self.building_ids)) != len(self.building_ids):
            raise ValueError("building_ids: a building named twice")
        return self


class WithdrawOffer(OfferCommand):
    event: Literal["OfferWithdrawn"] = "OfferWithdrawn"
    method = "withdraw"
    reason: Code


class ProposeContract(CommandBase):
    """A mission's places on an offer, in its own name; the offer's company signs it."""

    event: Literal["ContractProposed"] = "ContractProposed"
    contract_id: UUID | None = Field(default=None, description="derived from command_id when omitted")
    offer_id: UUID
    places: Places


class SignContract(ContractCommand):
    event: Literal["ContractSigned"] = "ContractSigned"


class AmendContract(ContractCommand):
    event: Literal["ContractAmended"] = "ContractAmended"
    places: Places = Field(description="the new total")


class TerminateContract(ContractCommand):
    event: Literal["ContractTerminated"] = "ContractTerminated"
    reason: Code


class LicenseBuilding(CommandBase):
    """Pilgrim housing licensed by the municipality, for the company operating it."""

    event: Literal["BuildingLicensed"] = "BuildingLicensed"
    building_id: UUID | None = Field(default=None, description="derived from command_id when omitted")
    company_id: AgencyId
    city: City
    district: Label
    beds: Places
    licence_valid_until: Moment


class SuspendLicence(BuildingCommand):
    event: Literal["LicenceSuspended"] = "LicenceSuspended"
    method = "suspend_licence"
    reason: Code


class RenewLicence(BuildingCommand):
    event: Literal["LicenceRenewed"] = "LicenceRenewed"
    method = "renew_licence"
    licence_valid_until: Moment


class PassInspection(BuildingCommand):
    event: Literal["InspectionPassed"] = "InspectionPassed"
    method = "pass_inspection"
    findings: Code


class FailInspection(BuildingCommand):
    event: Literal["InspectionFailed"] = "InspectionFailed"
    method = "fail_inspection"
    findings: Code


class OpenSeason(CommandBase):
    """A season opened by the ministry with its calendar, days in Makkah: each day not given is worked out from the
    Hijri year by the Umm al-Qura calendar (docs/seasons.md says how)."""

    event: Literal["SeasonOpened"] = "SeasonOpened"
    season: SeasonNumber
    registration_from: Day | None = Field(default=None, description="default: 8 Dhu al-Hijjah of the year before")
    registration_until: Day | None = Field(default=None, description="default: the last day of Dhu al-Qadah")
    arrivals_from: Day | None = Field(default=None, description="default: 33 days before 6 Dhu al-Hijjah")
    arrivals_until: Day | None = Field(default=None, description="default: 7 Dhu al-Hijjah")
    hajj_from: Day | None = Field(default=None, description="8 Dhu al-Hijjah, the first of the six days of the Hajj")
    departures_until: Day | None = Field(default=None, description="default: 15 Muharram of the next year")


class BeginSeasonClosing(SeasonCommand):
    """Closing begun: from then on no step of the season's journeys is accepted."""

    event: Literal["SeasonClosing"] = "SeasonClosing"
    method = "begin_closing"


class CloseSeason(SeasonCommand):
    """The season's archive written and verified."""

    event: Literal["SeasonClosed"] = "SeasonClosed"
    method = "close"
    archive_url: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]
    manifest_digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the manifest")]
    first_position: StrictInt = Field(ge=1, description="of the season's first event in the log")
    last_position: StrictInt = Field(ge=1, description="of its last")
    event_count: StrictInt = Field(ge=0)

    @model_validator(mode="after")
    def _positions_in_order(self) -> CloseSeason:
        if self.last_position < self.first_position:
            raise ValueError("last_position: must not be before first_position")
        if self.event_count > self.last_position - self.first_position + 1:
            raise ValueError("event_count: more events than positions from first_position to last_position")
        return self


class ArchiveSeason(SeasonCommand):
    """Taken out of the hot store."""

    event: Literal["SeasonArchived"] = "SeasonArchived"
    method = "archive"


class RestoreSeason(SeasonCommand):
    """Brought back from the archive into the hot store."""

    event: Literal["SeasonRestored"] = "SeasonRestored"
    method = "restore"


class EraseSeasonIdentities(SeasonCommand):
    """The identities of journeys of an archived season erased from the vault (retention, or a pilgrim's right):
    their journeys' histories are in the season's archive, so the erasure is recorded on the season."""

    event: Literal["SeasonIdentitiesErased"] = "SeasonIdentitiesErased"
    method = "erase_identities"
    journey_ids: list[UUID] = Field(min_length=1, max_length=1000, description="journeys of the archived season")
    reason: Code


class PassCheckpoint(TripCommand):
    event: Literal["CheckpointPassed"] = "CheckpointPassed"
    method = "pass_checkpoint"
    checkpoint: Label


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
    | CancelTrip
    | PassCheckpoint
    | PublishOffer
    | AmendOffer
    | WithdrawOffer
    | ProposeContract
    | SignContract
    | AmendContract
    | TerminateContract
    | LicenseBuilding
    | SuspendLicence
    | RenewLicence
    | PassInspection
    | FailInspection
    | OpenSeason
    | BeginSeasonClosing
    | CloseSeason
    | ArchiveSeason
    | RestoreSeason
    | EraseSeasonIdentities,
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
