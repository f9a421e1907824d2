"""What an agency asks the ledger to record: one command per step, validated before anything is loaded.

A command names the event it records (`"event": "VisaIssued"`), the journey or trip it is about, when it
happened, and its own id, which makes retrying it safe. Unknown fields are refused. Free text is avoided on
purpose: reasons are short codes, so no personal data can slip into an event through a comment.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args
from uuid import UUID

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from hajj_ledger.domain.command_base import (
    AgencyId,
    BuildingCommand,
    BuildingIds,
    Code,
    CommandBase,
    ContractCommand,
    Country,
    FlightNumber,
    Identity,
    JourneyCommand,
    Label,
    OfferCommand,
    PlaceCode,
    Places,
    PriceSar,
    SeasonNumber,
    TripCommand,
)
from hajj_ledger.domain.season_commands import (
    ArchiveSeason,
    BeginSeasonClosing,
    CloseSeason,
    EraseSeasonIdentities,
    OpenSeason,
    RestoreSeason,
)
from hajj_ledger.domain.vocabulary import (
    HOUSING,
    OFFER_SITES,
    CancellationReason,
    City,
    Direction,
    Mode,
    Moment,
    OfferKind,
    OfferSite,
    Port,
    Site,
    parse_place,
)


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


class IssueVisa(JourneyCommand):
    event: Literal["VisaIssued"] = "VisaIssued"
    valid_until: Moment


class RejectVisa(JourneyCommand):
    event: Literal["VisaRejected"] = "VisaRejected"
    reason: Code


class RevokeVisa(JourneyCommand):
    event: Literal["VisaRevoked"] = "VisaRevoked"
    reason: Code


class BookFlight(JourneyCommand):
    event: Literal["FlightBooked"] = "FlightBooked"
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
    port: Port


class ClearCustoms(JourneyCommand):
    event: Literal["CustomsCleared"] = "CustomsCleared"
    port: Port


class ReceiveAtPort(JourneyCommand):
    event: Literal["ReceivedAtPort"] = "ReceivedAtPort"
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
    trip_id: UUID


class CompleteTransfer(JourneyCommand):
    event: Literal["TransferCompleted"] = "TransferCompleted"
    trip_id: UUID


class CheckInHousing(JourneyCommand):
    """Into a building named by the offer of the journey's contract: licensed, inspected, with a free bed."""

    event: Literal["HousingCheckedIn"] = "HousingCheckedIn"
    site: Site
    building: Label = Field(description="the company's own name for the building")
    building_id: UUID


class CheckOutHousing(JourneyCommand):
    event: Literal["HousingCheckedOut"] = "HousingCheckedOut"
    site: Site
    building: Label


class MoveToSite(JourneyCommand):
    event: Literal["MovedToSite"] = "MovedToSite"
    site: Site


class AdmitToHospital(JourneyCommand):
    event: Literal["HospitalAdmitted"] = "HospitalAdmitted"
    facility: Label


class DischargeFromHospital(JourneyCommand):
    event: Literal["HospitalDischarged"] = "HospitalDischarged"
    facility: Label


class ReportMissing(JourneyCommand):
    event: Literal["ReportedMissing"] = "ReportedMissing"


class RecordFound(JourneyCommand):
    event: Literal["Found"] = "Found"
    site: Site


class RecordDeath(JourneyCommand):
    event: Literal["DeathRecorded"] = "DeathRecorded"
    facility: Label | None = None


class Cancel(JourneyCommand):
    event: Literal["Cancelled"] = "Cancelled"
    reason: CancellationReason


class ClearExit(JourneyCommand):
    event: Literal["ExitCleared"] = "ExitCleared"
    port: Port


class Depart(JourneyCommand):
    event: Literal["Departed"] = "Departed"
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
    hold: Code = Field(description="e.g. overstay_investigation, death_identification")


class LiftLegalHold(JourneyCommand):
    event: Literal["LegalHoldLifted"] = "LegalHoldLifted"
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
    reason: Code


class RenewLicence(BuildingCommand):
    event: Literal["LicenceRenewed"] = "LicenceRenewed"
    licence_valid_until: Moment


class PassInspection(BuildingCommand):
    event: Literal["InspectionPassed"] = "InspectionPassed"
    findings: Code


class FailInspection(BuildingCommand):
    event: Literal["InspectionFailed"] = "InspectionFailed"
    findings: Code


class PassCheckpoint(TripCommand):
    event: Literal["CheckpointPassed"] = "CheckpointPassed"
    checkpoint: Label


class DepartTrip(TripCommand):
    event: Literal["TripDeparted"] = "TripDeparted"


class ArriveTrip(TripCommand):
    event: Literal["TripArrived"] = "TripArrived"


class CancelTrip(TripCommand):
    event: Literal["TripCancelled"] = "TripCancelled"
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

COMMANDS: dict[str, type[CommandBase]] = {
    model.model_fields["event"].default: model for model in get_args(get_args(Command)[0])
}
