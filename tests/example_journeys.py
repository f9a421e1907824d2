"""Three demonstration journeys of season 1446, recorded through the ledger's real commands.

Command ids and times are fixed, so running the demo again records nothing new: the ledger answers each
command with its first outcome, which is what idempotency promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.ledger import JourneyLedger, Outcome

SEASON = 1446
_NS = uuid5(NAMESPACE_URL, "https://hajj-ledger.example/demo")

MISSION_IDN = Actor("mission-IDN-0001", Role.MISSION)
MISSION_JOR = Actor("mission-JOR-0001", Role.MISSION)
MISSION_PAK = Actor("mission-PAK-0001", Role.MISSION)
COMPANY = Actor("company-makkah-0042", Role.COMPANY)
AMANAH = Actor("amanah-makkah", Role.AMANAH)
CIVIL_DEFENCE = Actor("civil-defence-makkah", Role.CIVIL_DEFENCE)
ROAD_SECURITY = Actor("road-security-hijrah", Role.ROAD_SECURITY)
MOFA = Actor("mofa", Role.MOFA)
GACA = Actor("gaca-jed", Role.GACA)
JAWAZAT = Actor("jawazat", Role.JAWAZAT)
CUSTOMS = Actor("customs", Role.CUSTOMS)
WUKALA = Actor("wukala-jed", Role.WUKALA)
NAQABA = Actor("naqaba", Role.NAQABA)
MOH = Actor("moh", Role.MOH)


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


class _Script:
    def __init__(self, ledger: JourneyLedger, name: str) -> None:
        self.ledger = ledger
        self.name = name
        self.count = 0
        self.outcomes: list[Outcome] = []

    def __call__(self, actor: Actor, event: str, at: str, **fields: Any) -> Outcome:
        self.count += 1
        data = {
            "event": event,
            "command_id": str(uuid5(_NS, f"{self.name}:{self.count}")),
            "occurred_at": _at(at).isoformat(),
            **{k: str(v) if isinstance(v, UUID | datetime) else v for k, v in fields.items()},
        }
        outcome = self.ledger.record(parse_command(data), actor)
        self.outcomes.append(outcome)
        return outcome


@dataclass(frozen=True)
class _Market:
    building: UUID
    contracts: dict[Actor, UUID]  # each mission's


def _market(ledger: JourneyLedger) -> _Market:
    """The company's building in Makkah, licensed and (at the second try) inspected, its housing offer, and a
    signed contract of each mission on it: the building's id and each mission's contract."""
    step = _Script(ledger, "market")
    building = step(
        AMANAH, "BuildingLicensed", "2024-10-20T08:00", company_id=COMPANY.agency_id, city="makkah",
        district="Aziziyah", beds=120, licence_valid_until=_at("2025-12-31T00:00"),
    ).aggregate_id  # fmt: skip
    step(CIVIL_DEFENCE, "InspectionFailed", "2024-10-25T09:00", building_id=building, findings="fire_exit_blocked")
    step(CIVIL_DEFENCE, "InspectionPassed", "2024-11-02T09:00", building_id=building, findings="compliant")
    offer = step(
        COMPANY, "OfferPublished", "2024-11-05T08:00", season=SEASON, kind="makkah_housing", site="makkah",
        places=100, price_sar=12500, valid_from=_at("2024-11-05T00:00"), valid_until=_at("2025-04-30T00:00"),
        building_ids=[str(building)],
    ).aggregate_id  # fmt: skip
    contracts = {}
    for mission in (MISSION_IDN, MISSION_JOR, MISSION_PAK):
        contract = step(mission, "ContractProposed", "2024-12-01T08:00", offer_id=offer, places=20).aggregate_id
        step(COMPANY, "ContractSigned", "2024-12-05T08:00", contract_id=contract)
        contracts[mission] = contract
    return _Market(building, contracts)


def _contracted(
    step: _Script, market: _Market, mission: Actor, country: str, package_id: str, registered: str, contracted: str
) -> UUID:
    """The script's pilgrim registered by their mission, then contracted to the company: the journey's id."""
    pilgrim_id = uuid5(_NS, f"pilgrim:{step.name}")
    journey = step(mission, "Registered", registered, pilgrim_id=pilgrim_id, season=SEASON, country=country)
    step(mission, "PackageContracted", contracted, journey_id=journey.aggregate_id,
         contract_id=market.contracts[mission], package_id=package_id)  # fmt: skip
    return journey.aggregate_id


def _full_journey(ledger: JourneyLedger, market: _Market) -> UUID:
    """Indonesia by air to Jeddah, Makkah, the holy sites, and home; the journey's id."""
    step = _Script(ledger, "idn")
    j = _contracted(step, market, MISSION_IDN, "IDN", "PKG-IDN-2025-A", "2025-01-10T08:00", "2025-01-12T09:00")
    step(MISSION_IDN, "VisaRequested", "2025-03-01T07:00", journey_id=j)
    step(MOFA, "VisaIssued", "2025-03-10T10:00", journey_id=j, valid_until=_at("2025-07-10T00:00"))
    step(
        MISSION_IDN,
        "FlightBooked",
        "2025-03-12T10:00",
        journey_id=j,
        direction="arrival",
        flight="GA8101",
        port="JED-HAJJ",
        scheduled_at=_at("2025-05-20T03:10"),
    )
    step(
        GACA,
        "ArrivedAtPort",
        "2025-05-20T03:10",
        journey_id=j,
        port="JED-HAJJ",
        mode="air",
        flight="GA8101",
    )
    step(JAWAZAT, "EntryCleared", "2025-05-20T03:40", journey_id=j, port="JED-HAJJ")
    step(CUSTOMS, "CustomsCleared", "2025-05-20T03:55", journey_id=j, port="JED-HAJJ")
    step(WUKALA, "ReceivedAtPort", "2025-05-20T04:20", journey_id=j, port="JED-HAJJ")
    to_makkah = step(
        NAQABA,
        "TripScheduled",
        "2025-05-19T18:00",
        operator="SAPTCO",
        bus_plate="KSA-4821",
        origin="JED-HAJJ",
        destination="makkah",
        departs_at=_at("2025-05-20T05:00"),
        capacity=49,
        expected_arrival=_at("2025-05-20T06:30"),
    ).aggregate_id
    step(NAQABA, "BusAssigned", "2025-05-20T04:30", journey_id=j, trip_id=to_makkah)
    step(NAQABA, "Boarded", "2025-05-20T04:55", journey_id=j, trip_id=to_makkah)
    step(NAQABA, "TripDeparted", "2025-05-20T05:00", trip_id=to_makkah)
    step(ROAD_SECURITY, "CheckpointPassed", "2025-05-20T05:40", trip_id=to_makkah, checkpoint="SHUMAISI")
    step(NAQABA, "TripArrived", "2025-05-20T06:25", trip_id=to_makkah)
    step(NAQABA, "TransferCompleted", "2025-05-20T06:30", journey_id=j, trip_id=to_makkah)
    step(
        COMPANY,
        "HousingCheckedIn",
        "2025-05-20T07:00",
        journey_id=j,
        site="makkah",
        building="MK-AZIZIYAH-112",
        building_id=market.building,
    )
    for site, day in [
        ("mina", "2025-06-04T06:00"),
        ("arafat", "2025-06-05T05:00"),
        ("muzdalifah", "2025-06-05T16:30"),
        ("mina", "2025-06-06T05:00"),
    ]:
        step(COMPANY, "MovedToSite", day, journey_id=j, site=site)
    step(
        COMPANY,
        "HousingCheckedIn",
        "2025-06-08T15:00",
        journey_id=j,
        site="makkah",
        building="MK-AZIZIYAH-112",
        building_id=market.building,
    )
    step(
        MISSION_IDN,
        "FlightBooked",
        "2025-06-10T10:00",
        journey_id=j,
        direction="departure",
        flight="GA8202",
        port="JED-HAJJ",
        scheduled_at=_at("2025-06-20T12:00"),
    )
    step(
        COMPANY,
        "HousingCheckedOut",
        "2025-06-20T06:00",
        journey_id=j,
        site="makkah",
        building="MK-AZIZIYAH-112",
    )
    to_airport = step(
        NAQABA,
        "TripScheduled",
        "2025-06-19T18:00",
        operator="SAPTCO",
        bus_plate="KSA-7310",
        origin="makkah",
        destination="JED-HAJJ",
        departs_at=_at("2025-06-20T07:00"),
        capacity=49,
    ).aggregate_id
    step(NAQABA, "BusAssigned", "2025-06-20T06:10", journey_id=j, trip_id=to_airport)
    step(NAQABA, "Boarded", "2025-06-20T06:50", journey_id=j, trip_id=to_airport)
    step(NAQABA, "TripDeparted", "2025-06-20T07:00", trip_id=to_airport)
    step(NAQABA, "TripArrived", "2025-06-20T08:05", trip_id=to_airport)
    step(NAQABA, "TransferCompleted", "2025-06-20T08:10", journey_id=j, trip_id=to_airport)
    step(JAWAZAT, "ExitCleared", "2025-06-20T09:30", journey_id=j, port="JED-HAJJ")
    step(GACA, "Departed", "2025-06-20T12:05", journey_id=j, port="JED-HAJJ", flight="GA8202")
    return j


def _land_journey_with_hospital(ledger: JourneyLedger, market: _Market) -> None:
    """Jordan by land through al-Haditha; a night in hospital at Arafat."""
    step = _Script(ledger, "jor")
    j = _contracted(step, market, MISSION_JOR, "JOR", "PKG-JOR-7", "2025-02-01T08:00", "2025-02-02T08:00")
    step(MISSION_JOR, "VisaRequested", "2025-03-05T08:00", journey_id=j)
    step(MOFA, "VisaIssued", "2025-03-15T08:00", journey_id=j, valid_until=_at("2025-07-15T00:00"))
    step(JAWAZAT, "ArrivedAtPort", "2025-05-28T14:00", journey_id=j, port="HADITHA", mode="land")
    step(JAWAZAT, "EntryCleared", "2025-05-28T14:30", journey_id=j, port="HADITHA")
    step(MOH, "HospitalAdmitted", "2025-05-28T20:00", journey_id=j, facility="HADITHA-CLINIC")
    step(MOH, "HospitalDischarged", "2025-05-29T09:00", journey_id=j, facility="HADITHA-CLINIC")
    step(CUSTOMS, "CustomsCleared", "2025-05-29T10:00", journey_id=j, port="HADITHA")


def _rejected_and_cancelled(ledger: JourneyLedger, market: _Market) -> None:
    step = _Script(ledger, "pak")
    j = _contracted(step, market, MISSION_PAK, "PAK", "PKG-PAK-3", "2025-01-20T08:00", "2025-01-21T08:00")
    step(MISSION_PAK, "VisaRequested", "2025-03-02T08:00", journey_id=j)
    step(MOFA, "VisaRejected", "2025-03-09T08:00", journey_id=j, reason="documents_incomplete")
    step(MISSION_PAK, "Cancelled", "2025-03-20T08:00", journey_id=j, reason="visa_refused")


def run_demo(ledger: JourneyLedger) -> UUID:
    """Record the demonstration journeys; returns the journey id of the complete one."""
    before = ledger.head()
    market = _market(ledger)
    journey_id = _full_journey(ledger, market)
    _land_journey_with_hospital(ledger, market)
    _rejected_and_cancelled(ledger, market)
    after = ledger.head()
    if after == before:
        print(f"The demonstration journeys were already recorded (ledger head: position {after}).")
    else:
        print(f"Recorded {after - before} events of three demonstration journeys (positions {before + 1}-{after}).")
    return journey_id
