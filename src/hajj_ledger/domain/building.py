"""The Building aggregate: pilgrim housing, licensed by the municipality, inspected by Civil Defence, one pilgrim a
bed."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from hajj_ledger.domain.catalogue import BUILDING_STEPS, check_step
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.vocabulary import BuildingStage, City, Stamp


class Building(Aggregate):
    """Beds are taken by journey id; `trigger_event` refuses what the catalogue does not allow."""

    class Event(RecordedEvent):
        steps = BUILDING_STEPS

    class BuildingLicensed(Event, Aggregate.Created):
        building_id: UUID
        company_id: str  # the operator: only its offers may name the building
        city: City
        district: str
        beds: int
        licence_valid_until: datetime

    class LicenceSuspended(Event):
        reason: str

    class LicenceRenewed(Event):
        licence_valid_until: datetime

    class InspectionPassed(Event):
        findings: str

    class InspectionFailed(Event):
        findings: str

    class BedTaken(Event):
        journey_id: UUID

    class BedFreed(Event):
        journey_id: UUID

    @classmethod
    def license(
        cls,
        stamp: Stamp,
        building_id: UUID,
        company_id: str,
        city: City,
        district: str,
        beds: int,
        licence_valid_until: datetime,
    ) -> Building:
        check_step(BUILDING_STEPS, "BuildingLicensed", None, {"stamp": stamp})
        return cls(stamp, building_id, company_id, city, district, beds, licence_valid_until)

    @staticmethod
    def create_id(building_id: UUID) -> UUID:
        return building_id

    @event(BuildingLicensed)
    def __init__(
        self,
        stamp: Stamp,
        building_id: UUID,
        company_id: str,
        city: City,
        district: str,
        beds: int,
        licence_valid_until: datetime,
    ) -> None:
        self.company_id = company_id
        self.city = city
        self.district = district
        self.beds = beds
        self.licence_valid_until = licence_valid_until
        self.stage = BuildingStage.LICENSED
        self.inspected: bool | None = None  # the latest inspection passed; None: never inspected
        self.occupants: set[UUID] = set()

    @property
    def suspended(self) -> bool:
        return self.stage is BuildingStage.SUSPENDED

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        check_step(BUILDING_STEPS, event_class.__name__, self, kwargs)
        super().trigger_event(event_class, **kwargs)

    @event(LicenceSuspended)
    def suspend_licence(self, stamp: Stamp, reason: str) -> None:
        pass

    @event(LicenceRenewed)
    def renew_licence(self, stamp: Stamp, licence_valid_until: datetime) -> None:
        self.licence_valid_until = licence_valid_until

    @event(InspectionPassed)
    def pass_inspection(self, stamp: Stamp, findings: str) -> None:
        self.inspected = True

    @event(InspectionFailed)
    def fail_inspection(self, stamp: Stamp, findings: str) -> None:
        self.inspected = False

    @event(BedTaken)
    def take_bed(self, stamp: Stamp, journey_id: UUID) -> None:
        self.occupants.add(journey_id)

    @event(BedFreed)
    def free_bed(self, stamp: Stamp, journey_id: UUID) -> None:
        self.occupants.discard(journey_id)
