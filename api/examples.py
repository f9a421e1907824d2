"""One valid body for each recording endpoint, shown by the OpenAPI document (and used by Swagger UI's "Try it out"):
together they tell one story of season 1446 on the demo's mission and company, in the order they are listed.

The market first (a building licensed and inspected, an offer on it, a contract proposed and signed), then a
pilgrim from registration to departure, with its bus trip; then the steps that the journey's end no longer allows
(answered 409, naming the stage), and the season's close. The ids are fixed, so each body names what the ones
before it made; `PATH_EXAMPLES` gives each path parameter the id of the same story. Each body is posted by a role
that may record it (`STEPS[event].roles`), on a fresh server, by tests/integration/test_openapi.py.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import USUAL_CODES

SEASON = 1446
MISSION, COMPANY = "mission-IDN-00013", "company-012"  # the demo's Indonesian mission and its company (`make run`)
BUILDING = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e01")
OFFER = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e02")
CONTRACT = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e03")
TRIP = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e04")
PILGRIM = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e05")  # a pseudonymous id, never a passport number
JOURNEY = Journey.create_id(SEASON, PILGRIM)
BUILDING_NAME = "Aziziyah Tower 7"  # the company's own name for BUILDING
IDENTITY = {
    "name_arabic": "سيتي نور الحياة",
    "name_latin": "SITI NURUL HAYAT",
    "passport_number": "X1234567",
    "passport_country": "IDN",
    "nationality": "IDN",
    "date_of_birth": "1968-03-14",
    "gender": "female",
}
FLIGHT, PORT = "GA8201", "JED-HAJJ"


def _code(event: str, field: str) -> str:
    return USUAL_CODES[event, field][0]


# Each recording endpoint's example body, by its event, in the story's order.
EXAMPLES: dict[str, dict[str, Any]] = {
    "SeasonOpened": {"occurred_at": "2024-06-01T08:00:00Z", "season": SEASON},
    # The market, months before the pilgrims register.
    "BuildingLicensed": {
        "occurred_at": "2025-01-05T08:00:00Z", "building_id": str(BUILDING), "company_id": COMPANY, "city": "makkah",
        "district": "Aziziyah", "beds": 40, "licence_valid_until": "2025-12-31T00:00:00Z",
    },
    "InspectionFailed": {"occurred_at": "2025-01-06T08:00:00Z", "findings": _code("InspectionFailed", "findings")},
    "InspectionPassed": {"occurred_at": "2025-01-10T08:00:00Z", "findings": _code("InspectionPassed", "findings")},
    "LicenceSuspended": {"occurred_at": "2025-01-11T08:00:00Z", "reason": _code("LicenceSuspended", "reason")},
    "LicenceRenewed": {"occurred_at": "2025-01-12T08:00:00Z", "licence_valid_until": "2025-12-31T00:00:00Z"},
    "OfferPublished": {
        "occurred_at": "2025-01-13T08:00:00Z", "offer_id": str(OFFER), "season": SEASON, "kind": "makkah_housing",
        "site": "makkah", "places": 40, "price_sar": 9000, "valid_from": "2025-01-13T00:00:00Z",
        "valid_until": "2025-07-31T00:00:00Z", "building_ids": [str(BUILDING)],
    },
    "OfferAmended": {"occurred_at": "2025-01-14T08:00:00Z", "price_sar": 8500},
    "ContractProposed": {
        "occurred_at": "2025-01-15T08:00:00Z", "contract_id": str(CONTRACT), "offer_id": str(OFFER), "places": 10,
    },
    "ContractSigned": {"occurred_at": "2025-01-16T08:00:00Z"},
    "ContractAmended": {"occurred_at": "2025-01-17T08:00:00Z", "places": 12},
    # A pilgrim, from registration to departure.
    "Registered": {
        "occurred_at": "2025-05-01T08:00:00Z", "pilgrim_id": str(PILGRIM), "season": SEASON, "country": "IDN",
    },
    "IdentityRecorded": {"occurred_at": "2025-05-01T08:30:00Z", "identity": IDENTITY},
    "PackageContracted": {"occurred_at": "2025-05-01T09:00:00Z", "contract_id": str(CONTRACT), "package_id": "PKG-1"},
    "VisaRequested": {"occurred_at": "2025-05-01T10:00:00Z"},
    "VisaIssued": {"occurred_at": "2025-05-03T08:00:00Z", "valid_until": "2025-07-31T00:00:00Z"},
    "FlightBooked": {
        "occurred_at": "2025-05-04T08:00:00Z", "direction": "arrival", "flight": FLIGHT, "port": PORT,
        "scheduled_at": "2025-05-10T06:00:00Z",
    },
    "ArrivedAtPort": {"occurred_at": "2025-05-10T06:30:00Z", "port": PORT, "mode": "air", "flight": FLIGHT},
    "EntryCleared": {"occurred_at": "2025-05-10T07:00:00Z", "port": PORT},
    "CustomsCleared": {"occurred_at": "2025-05-10T07:20:00Z", "port": PORT},
    "ReceivedAtPort": {"occurred_at": "2025-05-10T07:40:00Z", "port": PORT},
    "TripScheduled": {
        "occurred_at": "2025-05-09T12:00:00Z", "trip_id": str(TRIP), "operator": "Saptco", "bus_plate": "KSA 4821",
        "origin": PORT, "destination": "makkah", "departs_at": "2025-05-10T09:00:00Z", "capacity": 45,
        "expected_arrival": "2025-05-10T10:30:00Z",
    },
    "BusAssigned": {"occurred_at": "2025-05-10T08:00:00Z", "trip_id": str(TRIP)},
    "Boarded": {"occurred_at": "2025-05-10T08:45:00Z", "trip_id": str(TRIP)},
    "TripDeparted": {"occurred_at": "2025-05-10T09:00:00Z"},
    "CheckpointPassed": {"occurred_at": "2025-05-10T09:40:00Z", "checkpoint": "Shumaisi"},
    "TripArrived": {"occurred_at": "2025-05-10T10:30:00Z"},
    "TransferCompleted": {"occurred_at": "2025-05-10T10:35:00Z", "trip_id": str(TRIP)},
    "HousingCheckedIn": {
        "occurred_at": "2025-05-10T11:00:00Z", "site": "makkah", "building": BUILDING_NAME,
        "building_id": str(BUILDING),
    },
    "HospitalAdmitted": {"occurred_at": "2025-05-12T08:00:00Z", "facility": "King Abdullah Medical City"},
    "HospitalDischarged": {"occurred_at": "2025-05-13T08:00:00Z", "facility": "King Abdullah Medical City"},
    "ReportedMissing": {"occurred_at": "2025-05-14T08:00:00Z"},
    "Found": {"occurred_at": "2025-05-14T12:00:00Z", "site": "makkah"},
    "IdentityCorrected": {
        "occurred_at": "2025-05-15T08:00:00Z", "identity": {**IDENTITY, "name_latin": "SITI NURUL HAYATI"},
    },
    "LegalHoldPlaced": {"occurred_at": "2025-05-16T08:00:00Z", "hold": _code("LegalHoldPlaced", "hold")},
    "LegalHoldLifted": {"occurred_at": "2025-05-17T08:00:00Z", "hold": _code("LegalHoldLifted", "hold")},
    "HousingCheckedOut": {"occurred_at": "2025-06-03T08:00:00Z", "site": "makkah", "building": BUILDING_NAME},
    "MovedToSite": {"occurred_at": "2025-06-04T08:00:00Z", "site": "mina"},
    "ExitCleared": {"occurred_at": "2025-06-20T08:00:00Z", "port": PORT},
    "Departed": {"occurred_at": "2025-06-20T10:00:00Z", "port": PORT, "flight": "GA8202"},
    # What the journey's end (or the market's contract in use) no longer allows: each refused, naming the stage.
    "VisaRejected": {"occurred_at": "2025-06-21T08:00:00Z", "reason": _code("VisaRejected", "reason")},
    "VisaRevoked": {"occurred_at": "2025-06-21T08:00:00Z", "reason": _code("VisaRevoked", "reason")},
    "BusAssignmentCancelled": {
        "occurred_at": "2025-06-21T08:00:00Z", "trip_id": str(TRIP),
        "reason": _code("BusAssignmentCancelled", "reason"),
    },
    "DeathRecorded": {"occurred_at": "2025-06-21T08:00:00Z", "facility": "King Abdullah Medical City"},
    "Cancelled": {"occurred_at": "2025-06-21T08:00:00Z", "reason": "withdrawn"},
    "TripCancelled": {"occurred_at": "2025-06-21T08:00:00Z", "reason": _code("TripCancelled", "reason")},
    "ContractTerminated": {"occurred_at": "2025-06-21T08:00:00Z", "reason": _code("ContractTerminated", "reason")},
    "OfferWithdrawn": {"occurred_at": "2025-06-21T08:00:00Z", "reason": _code("OfferWithdrawn", "reason")},
    # The pilgrim's right to erasure, after the end; then the season's close, once its departures are long over
    # (`hajj-ledger season close` records these as it archives; its identities are erased once it is archived).
    "IdentityErased": {"occurred_at": "2025-06-22T08:00:00Z", "reason": _code("IdentityErased", "reason")},
    "SeasonClosing": {"occurred_at": "2025-09-01T08:00:00Z"},
    "SeasonClosed": {
        "occurred_at": "2025-09-02T08:00:00Z", "archive_url": "file:///var/hajj-ledger/archives/1446",
        "manifest_digest": "9f2c7d1e5b3a4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d", "first_position": 1,
        "last_position": 120, "event_count": 60,
    },
    "SeasonArchived": {"occurred_at": "2025-09-03T08:00:00Z"},
    "SeasonRestored": {"occurred_at": "2025-09-05T08:00:00Z"},
    "SeasonIdentitiesErased": {
        "occurred_at": "2025-09-06T08:00:00Z", "journey_ids": [str(JOURNEY)],
        "reason": _code("SeasonIdentitiesErased", "reason"),
    },
}  # fmt: skip

# Two of the mission's commands in one request: another pilgrim of the season registered, and its visa asked for
# too early (refused alone: 409 in its result, the registration recorded all the same).
SECOND_PILGRIM = UUID("0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e06")
BATCH: dict[str, Any] = {
    "commands": [
        {
            "event": "Registered", "command_id": "0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e07",
            "pilgrim_id": str(SECOND_PILGRIM), "season": SEASON, "country": "IDN",
            "occurred_at": "2025-05-02T08:00:00Z",
        },
        {
            "event": "VisaRequested", "command_id": "0e5a1c3e-7d0b-4c8e-9f41-5b1a2d3c4e08",
            "journey_id": str(Journey.create_id(SEASON, SECOND_PILGRIM)), "occurred_at": "2025-05-02T09:00:00Z",
        },
    ]
}  # fmt: skip

# Each path parameter's example: the story's own aggregates.
PATH_EXAMPLES: dict[str, Any] = {
    "journey_id": str(JOURNEY),
    "trip_id": str(TRIP),
    "offer_id": str(OFFER),
    "contract_id": str(CONTRACT),
    "building_id": str(BUILDING),
    "season": SEASON,
}
