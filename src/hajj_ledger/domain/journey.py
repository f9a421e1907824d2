"""The Journey aggregate: one pilgrim's journey in one season, as the events the agencies recorded."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from hajj_ledger.domain.catalogue import JOURNEY_STEPS, check_step
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import (
    ENDED,
    PORT_MODES,
    CancellationReason,
    Direction,
    Mode,
    Port,
    Site,
    Stage,
    Stamp,
)

JOURNEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://hajj-ledger.example/journey")


class Journey(Aggregate):
    """Command methods record one step each; `trigger_event` refuses any step the catalogue does not allow."""

    class Event(RecordedEvent):
        steps = JOURNEY_STEPS

        def apply(self, aggregate: Any) -> None:
            super().apply(aggregate)
            aggregate.last_occurred_at = max(aggregate.last_occurred_at, self.stamp.occurred_at)
            if aggregate.stage in ENDED and aggregate.ended_at is None:
                aggregate.ended_at = self.stamp.occurred_at  # when the journey ended, for retention
                aggregate.building_id = aggregate.housed_in = None  # its bed freed with the step that ended it

    class Registered(Event, Aggregate.Created):
        pilgrim_id: UUID
        season: int
        country: str
        pre_cleared: bool
        identity_digest: str | None  # registered with an identity: a keyed hash of its ciphertext, never its content

        # v1 was never given an identity at registration (IdentityRecorded followed it).
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["identity_digest"] = None

    class PackageContracted(Event):
        company_id: str  # the contract's
        package_id: str = ""  # free text, before contracts
        contract_id: UUID | None = None  # None: recorded before contracts

    class VisaRequested(Event):
        pass

    class VisaIssued(Event):
        valid_until: datetime

    class VisaRejected(Event):
        reason: str

    class VisaRevoked(Event):
        reason: str

    class FlightBooked(Event):
        direction: Direction
        flight: str
        port: Port
        scheduled_at: datetime

    class ArrivedAtPort(Event):
        port: Port
        mode: Mode
        flight: str | None

        # v1 had no mode: every port has exactly one, so it is recovered from the port.
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["mode"] = PORT_MODES[Port(state["port"])].value

    class EntryCleared(Event):
        port: Port

    class CustomsCleared(Event):
        port: Port

    class ReceivedAtPort(Event):
        port: Port

    class BusAssigned(Event):
        trip_id: UUID
        destination: str

    class BusAssignmentCancelled(Event):
        trip_id: UUID
        reason: str

    class Boarded(Event):
        trip_id: UUID

    class TransferCompleted(Event):
        trip_id: UUID

    class HousingCheckedIn(Event):
        site: Site
        building: str
        building_id: UUID | None = None  # None: recorded before buildings were licensed in the ledger

    class HousingCheckedOut(Event):
        site: Site
        building: str

    class MovedToSite(Event):
        site: Site

    class HospitalAdmitted(Event):
        facility: str

    class HospitalDischarged(Event):
        facility: str

    class ReportedMissing(Event):
        pass

    class Found(Event):
        site: Site

    class DeathRecorded(Event):
        facility: str | None

    class Cancelled(Event):
        reason: CancellationReason

    class ExitCleared(Event):
        port: Port

    class Departed(Event):
        port: Port
        flight: str | None

    class IdentityRecorded(Event):
        ciphertext_digest: str  # a keyed hash of the vault's ciphertext: never the identity itself

    class IdentityCorrected(Event):
        ciphertext_digest: str

    class IdentityErased(Event):
        reason: str

    class LegalHoldPlaced(Event):
        hold: str

    class LegalHoldLifted(Event):
        hold: str

    @staticmethod
    def create_id(season: int, pilgrim_id: UUID) -> UUID:
        """One journey per pilgrim per season: the id says so, and the store's key enforces it."""
        return _journey_id(season, pilgrim_id)

    @classmethod
    def register(
        cls,
        stamp: Stamp,
        pilgrim_id: UUID,
        season: int,
        country: str,
        pre_cleared: bool,
        identity_digest: str | None = None,
        **context: Any,
    ) -> Journey:
        """`context`: what the catalogue's rules read beside the registration (its season's `calendar`)."""
        check_step(JOURNEY_STEPS, "Registered", None, {"stamp": stamp, "season": season, "country": country, **context})
        # The library's own way in for a named "created" event, without matching positional arguments to names.
        return cls._create(
            cls.Registered, id=cls.create_id(season, pilgrim_id), stamp=stamp, pilgrim_id=pilgrim_id, season=season,
            country=country, pre_cleared=pre_cleared, identity_digest=identity_digest,
        )  # fmt: skip

    @event(Registered)
    def __init__(
        self,
        stamp: Stamp,
        pilgrim_id: UUID,
        season: int,
        country: str,
        pre_cleared: bool,
        identity_digest: str | None,
    ) -> None:
        self.pilgrim_id = pilgrim_id
        self.season = season
        self.country = country
        self.pre_cleared = pre_cleared
        self.mission_id = stamp.agency_id
        self.company_id: str | None = None
        self.package_id: str | None = None
        self.contract_id: UUID | None = None
        self.building_id: UUID | None = None  # the building holding its bed, while housed
        self.housed_in: tuple[Site, str] | None = None  # the site and the company's name of that building
        self.stage = Stage.REGISTERED
        self.visa_valid_until: datetime | None = None
        self.flights: dict[str, str] = {}
        self.place: str | None = None
        self.trip_id: UUID | None = None
        self.trip_destination: str | None = None
        self.stage_before_bus: Stage | None = None
        self.hospital: str | None = None
        self.missing = False
        self.identity = "recorded" if identity_digest else "none"  # or "erased": the vault holds the rest
        self.holds: list[str] = []  # legal holds keeping the identity from erasure
        self.ended_at: datetime | None = None
        self.registered_at = stamp.occurred_at
        self.last_occurred_at = stamp.occurred_at

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(JOURNEY_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @property
    def ended(self) -> bool:
        return self.stage in (Stage.DEPARTED, Stage.CANCELLED, Stage.DECEASED)

    @event(PackageContracted)
    def contract_package(
        self, stamp: Stamp, company_id: str, package_id: str = "", contract_id: UUID | None = None
    ) -> None:
        self.company_id = company_id
        self.package_id = package_id
        self.contract_id = contract_id

    @event(VisaRequested)
    def request_visa(self, stamp: Stamp) -> None:
        self.visa_valid_until = None

    @event(VisaIssued)
    def issue_visa(self, stamp: Stamp, valid_until: datetime) -> None:
        self.visa_valid_until = valid_until

    @event(VisaRejected)
    def reject_visa(self, stamp: Stamp, reason: str) -> None:
        self.visa_valid_until = None

    @event(VisaRevoked)
    def revoke_visa(self, stamp: Stamp, reason: str) -> None:
        self.visa_valid_until = None

    @event(FlightBooked)
    def book_flight(self, stamp: Stamp, direction: Direction, flight: str, port: Port, scheduled_at: datetime) -> None:
        self.flights[direction] = flight

    @event(ArrivedAtPort)
    def arrive_at_port(self, stamp: Stamp, port: Port, mode: Mode, flight: str | None) -> None:
        self.place = port

    @event(EntryCleared)
    def clear_entry(self, stamp: Stamp, port: Port) -> None:
        self.place = port

    @event(CustomsCleared)
    def clear_customs(self, stamp: Stamp, port: Port) -> None:
        self.place = port

    @event(ReceivedAtPort)
    def receive_at_port(self, stamp: Stamp, port: Port) -> None:
        self.place = port

    @event(BusAssigned)
    def assign_bus(self, stamp: Stamp, trip_id: UUID, destination: str) -> None:
        self.stage_before_bus = self.stage
        self.trip_id = trip_id
        self.trip_destination = destination

    @event(BusAssignmentCancelled)
    def cancel_bus_assignment(self, stamp: Stamp, trip_id: UUID, reason: str) -> None:
        assert self.stage_before_bus is not None
        self.stage = self.stage_before_bus
        self._leave_bus()

    @event(Boarded)
    def board(self, stamp: Stamp, trip_id: UUID) -> None:
        pass

    @event(TransferCompleted)
    def complete_transfer(self, stamp: Stamp, trip_id: UUID) -> None:
        self.place = self.trip_destination
        self._leave_bus()

    def _leave_bus(self) -> None:
        self.trip_id = None
        self.trip_destination = None
        self.stage_before_bus = None

    @event(HousingCheckedIn)
    def check_in_housing(self, stamp: Stamp, site: Site, building: str, building_id: UUID | None = None) -> None:
        self.place = site
        self.building_id = building_id
        self.housed_in = (site, building)

    @event(HousingCheckedOut)
    def check_out_housing(self, stamp: Stamp, site: Site, building: str) -> None:
        self.place = site
        self.building_id = None
        self.housed_in = None

    @event(MovedToSite)
    def move_to_site(self, stamp: Stamp, site: Site) -> None:
        self.place = site

    @event(HospitalAdmitted)
    def admit_to_hospital(self, stamp: Stamp, facility: str) -> None:
        self.hospital = facility

    @event(HospitalDischarged)
    def discharge_from_hospital(self, stamp: Stamp, facility: str) -> None:
        self.hospital = None

    @event(ReportedMissing)
    def report_missing(self, stamp: Stamp) -> None:
        self.missing = True

    @event(Found)
    def record_found(self, stamp: Stamp, site: Site) -> None:
        self.missing = False
        self.place = site

    @event(DeathRecorded)
    def record_death(self, stamp: Stamp, facility: str | None) -> None:
        self.hospital = None

    @event(Cancelled)
    def cancel(self, stamp: Stamp, reason: CancellationReason) -> None:
        pass

    @event(ExitCleared)
    def clear_exit(self, stamp: Stamp, port: Port) -> None:
        self.place = port

    @event(Departed)
    def depart(self, stamp: Stamp, port: Port, flight: str | None) -> None:
        self.place = None

    @event(IdentityRecorded)
    def record_identity(self, stamp: Stamp, ciphertext_digest: str) -> None:
        self.identity = "recorded"

    @event(IdentityCorrected)
    def correct_identity(self, stamp: Stamp, ciphertext_digest: str) -> None:
        pass

    @event(IdentityErased)
    def erase_identity(self, stamp: Stamp, reason: str) -> None:
        self.identity = "erased"

    @event(LegalHoldPlaced)
    def place_legal_hold(self, stamp: Stamp, hold: str) -> None:
        self.holds = [*self.holds, hold]

    @event(LegalHoldLifted)
    def lift_legal_hold(self, stamp: Stamp, hold: str) -> None:
        self.holds = [h for h in self.holds if h != hold]


@lru_cache(maxsize=4096)
def _journey_id(season: int, pilgrim_id: UUID) -> UUID:
    # A registration asks twice (is it there? then create it): the second answer comes from here.
    return uuid5(JOURNEY_NAMESPACE, f"{season}:{pilgrim_id}")
