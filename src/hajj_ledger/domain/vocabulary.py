"""The ledger's vocabulary: roles, stages, ports, sites and modes, and who recorded a fact when.

Every enumeration the domain uses lives here, so that the catalogue, the commands, the read models and the
HTTP API all spell a port or a role the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

SIMULATED_SEASON = 1446  # the season (Hijri year) the simulator and the demo simulate when none is given
SEASONS = range(1400, 1601)  # the seasons (Hijri years) a command may name


class Role(StrEnum):
    """The agencies of `domain.md`; an agency acts in exactly one role."""

    MISSION = "mission"
    COMPANY = "company"
    MOFA = "mofa"
    GACA = "gaca"
    JAWAZAT = "jawazat"
    CUSTOMS = "customs"
    WUKALA = "wukala"
    NAQABA = "naqaba"
    MOH = "moh"
    MINISTRY = "ministry"
    AUDITOR = "auditor"
    ANALYST = "analyst"
    AMANAH = "amanah"  # the municipality (of Makkah, of Madinah): licenses pilgrim housing
    CIVIL_DEFENCE = "civil_defence"  # inspects buildings
    ROAD_SECURITY = "road_security"  # traffic and road security: the checkpoints between the cities


class Mode(StrEnum):
    """How a pilgrim crosses the border."""

    AIR = "air"
    LAND = "land"
    SEA = "sea"


class Port(StrEnum):
    """Ports of entry and exit used by pilgrims."""

    JED_HAJJ_TERMINAL = "JED-HAJJ"
    JED_NORTH_TERMINAL = "JED-NORTH"
    MED_AIRPORT = "MED"
    TAIF_AIRPORT = "TIF"
    YANBU_AIRPORT = "YNB"
    JEDDAH_SEA_PORT = "JED-SEA"
    AL_HADITHA = "HADITHA"
    AL_BATHA = "BATHA"
    AL_RAQI = "RAQI"
    JADIDAT_ARAR = "ARAR"
    AL_WADIAH = "WADIAH"
    KING_FAHD_CAUSEWAY = "CAUSEWAY"

    @property
    def mode(self) -> Mode:
        return PORT_MODES[self]


PORT_MODES: dict[Port, Mode] = {
    Port.JED_HAJJ_TERMINAL: Mode.AIR,
    Port.JED_NORTH_TERMINAL: Mode.AIR,
    Port.MED_AIRPORT: Mode.AIR,
    Port.TAIF_AIRPORT: Mode.AIR,
    Port.YANBU_AIRPORT: Mode.AIR,
    Port.JEDDAH_SEA_PORT: Mode.SEA,
    Port.AL_HADITHA: Mode.LAND,
    Port.AL_BATHA: Mode.LAND,
    Port.AL_RAQI: Mode.LAND,
    Port.JADIDAT_ARAR: Mode.LAND,
    Port.AL_WADIAH: Mode.LAND,
    Port.KING_FAHD_CAUSEWAY: Mode.LAND,
}


class Site(StrEnum):
    """Cities and holy sites a pilgrim stays at or passes through."""

    MAKKAH = "makkah"
    MADINAH = "madinah"
    JEDDAH = "jeddah"
    MINA = "mina"
    ARAFAT = "arafat"
    MUZDALIFAH = "muzdalifah"


# The regions the season's statistics (GASTAT) group pilgrims' countries (ISO 3166 alpha-3) by: the season funnel
# counts by them, the simulator draws countries within them.
REGIONS: dict[str, tuple[str, ...]] = {
    "asia": ("IDN", "PAK", "IND", "BGD", "IRN", "TUR", "MYS", "AFG", "UZB", "CHN", "PHL"),
    "arab": ("EGY", "DZA", "IRQ", "MAR", "SDN", "YEM", "SYR", "JOR", "KWT", "ARE", "OMN", "BHR", "LBN", "QAT"),
    "africa": ("NGA", "SEN", "MLI", "NER", "ETH", "TZA"),
    "europe_americas_oceania": ("GBR", "FRA", "USA", "DEU", "AUS"),
}
REGION_OF = {country: region for region, countries in REGIONS.items() for country in countries}

# Where a bus goes from or to: a city or holy site, or a port.
Place = Site | Port


def parse_place(value: str) -> Place:
    """A site or a port from its code; ValueError names both lists when it is neither."""
    for kind in (Site, Port):
        try:
            return kind(value)
        except ValueError:
            continue
    known = ", ".join([*Site, *Port])
    raise ValueError(f"{value!r} is neither a site nor a port (known: {known})")


class Direction(StrEnum):
    ARRIVAL = "arrival"
    DEPARTURE = "departure"


class CancellationReason(StrEnum):
    NO_SHOW = "no_show"
    WITHDRAWN = "withdrawn"
    VISA_REFUSED = "visa_refused"
    QUOTA = "quota"
    OTHER = "other"


class Stage(StrEnum):
    """Where a journey stands; hospital and missing are states beside the stage, not stages."""

    REGISTERED = "registered"
    CONTRACTED = "contracted"
    VISA_REQUESTED = "visa_requested"
    VISA_ISSUED = "visa_issued"
    VISA_REJECTED = "visa_rejected"
    VISA_REVOKED = "visa_revoked"
    ARRIVED = "arrived"
    ENTRY_CLEARED = "entry_cleared"
    CUSTOMS_CLEARED = "customs_cleared"
    RECEIVED = "received"
    BUS_ASSIGNED = "bus_assigned"
    BOARDED = "boarded"
    TRANSFERRED = "transferred"
    HOUSED = "housed"
    CHECKED_OUT = "checked_out"
    AT_SITE = "at_site"
    EXIT_CLEARED = "exit_cleared"
    DEPARTED = "departed"
    CANCELLED = "cancelled"
    DECEASED = "deceased"


ENDED = frozenset({Stage.DEPARTED, Stage.CANCELLED, Stage.DECEASED})


class TripStage(StrEnum):
    """Where a bus trip stands (the trip_manifest view calls it the trip's status)."""

    SCHEDULED = "scheduled"
    DEPARTED = "departed"
    ARRIVED = "arrived"
    CANCELLED = "cancelled"


class OfferKind(StrEnum):
    """What a hospitality company offers missions for a season."""

    MAKKAH_HOUSING = "makkah_housing"
    MADINAH_HOUSING = "madinah_housing"
    MASHAER_CAMP = "mashaer_camp"  # the camps of Mina and Arafat
    TRANSPORT = "transport"
    CATERING = "catering"


class OfferSite(StrEnum):
    """Where an offer is served: a city or a holy site."""

    MAKKAH = "makkah"
    MADINAH = "madinah"
    MINA = "mina"
    ARAFAT = "arafat"
    MUZDALIFAH = "muzdalifah"
    JEDDAH = "jeddah"


class City(StrEnum):
    """The cities whose municipalities license pilgrim housing."""

    MAKKAH = "makkah"
    MADINAH = "madinah"


# The codes agencies usually give where a step takes a short snake_case code (a reason, a finding, a hold), by
# event and field. Any such code is recorded as given (a code, never free text: no personal data slips in); these
# are the ones the API's document lists and its examples use, and the simulator draws from.
USUAL_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("InspectionPassed", "findings"): ("compliant", "compliant_with_remarks"),
    ("InspectionFailed", "findings"): ("fire_exits_blocked", "alarms_faulty", "extinguishers_expired"),
    ("LicenceSuspended", "reason"): ("inspection_failed", "overcrowded", "licence_conditions_breached"),
    ("VisaRejected", "reason"): ("requirements_not_met", "documents_incomplete", "quota_exceeded"),
    ("VisaRevoked", "reason"): ("security_review", "documents_invalid", "package_cancelled"),
    ("BusAssignmentCancelled", "reason"): ("bus_breakdown", "pilgrim_unwell", "rerouted"),
    ("TripCancelled", "reason"): ("bus_breakdown", "road_closed", "rerouted"),
    ("OfferWithdrawn", "reason"): ("buildings_unavailable", "season_full", "company_decision"),
    ("ContractTerminated", "reason"): ("mission_withdrew", "company_default", "mutual_agreement"),
    ("IdentityErased", "reason"): ("pilgrim_request", "retention_expired", "registered_in_error"),
    ("SeasonIdentitiesErased", "reason"): ("retention_expired", "pilgrim_request"),
    ("LegalHoldPlaced", "hold"): ("overstay_investigation", "death_identification"),
    ("LegalHoldLifted", "hold"): ("overstay_investigation", "death_identification"),
    ("*", "late_correction"): ("device_offline", "paper_record", "clock_fault"),
}

# The housing kinds, and the city of their buildings: only they name buildings.
HOUSING: dict[OfferKind, City] = {OfferKind.MAKKAH_HOUSING: City.MAKKAH, OfferKind.MADINAH_HOUSING: City.MADINAH}
# Where each kind may be served.
OFFER_SITES: dict[OfferKind, frozenset[OfferSite]] = {
    OfferKind.MAKKAH_HOUSING: frozenset({OfferSite.MAKKAH}),
    OfferKind.MADINAH_HOUSING: frozenset({OfferSite.MADINAH}),
    OfferKind.MASHAER_CAMP: frozenset({OfferSite.MINA, OfferSite.ARAFAT, OfferSite.MUZDALIFAH}),
    OfferKind.TRANSPORT: frozenset(OfferSite),
    OfferKind.CATERING: frozenset(OfferSite),
}


class OfferStage(StrEnum):
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


class ContractStage(StrEnum):
    PROPOSED = "proposed"
    SIGNED = "signed"
    TERMINATED = "terminated"


class SeasonStage(StrEnum):
    """Where a season stands. Open until its first arrival day, then running (by the calendar and the business
    clock, no event marks it); closing, closed and archived as the ministry records them."""

    OPEN = "open"
    RUNNING = "running"
    CLOSING = "closing"  # no command for its journeys is accepted any more
    CLOSED = "closed"  # its archive written and verified
    ARCHIVED = "archived"  # taken out of the hot store (restored: closed again)


class BuildingStage(StrEnum):
    """A building's licence: a suspended one takes no new pilgrims."""

    LICENSED = "licensed"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Actor:
    """The agency asking for a step to be recorded."""

    agency_id: str
    role: Role


@dataclass(frozen=True)
class Stamp:
    """Who recorded an event, when it happened by their account, and which command carried it.

    When the ledger recorded it is the event's own `timestamp` (`recorded_at`).
    """

    agency_id: str
    role: Role
    occurred_at: datetime
    command_id: UUID
    correlation_id: UUID | None = None
    late_reason: str | None = None  # a late correction's reason (catalogue.check_time); stored only when given


def _written(value: object) -> object:
    """Times and dates are written out (ISO 8601): a bare number would silently be read as seconds since 1970."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and not re.match(r"^\d{4}-\d\d-\d\d", value)):
        raise ValueError("expected an ISO 8601 date or time, such as 2025-06-05 or 2025-06-05T08:30:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once in UTC") from None


if TYPE_CHECKING:  # what they are to a type checker; pydantic's input types below
    Moment = datetime
    Day = date


def __getattr__(name: str) -> Any:
    """Moment (a time with its zone, as UTC) and Day: pydantic's input types, made on first use, so that naming a
    role or a port (the command line does, to start) does not import pydantic."""
    if name not in ("Moment", "Day"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pydantic import AfterValidator, AwareDatetime, BeforeValidator

    made = {
        "Moment": Annotated[AwareDatetime, BeforeValidator(_written), AfterValidator(_in_utc)],
        "Day": Annotated[date, BeforeValidator(_written)],
    }
    globals().update(made)  # each made once
    return made[name]


# A day, wherever the ledger counts or shows one, is the day in Makkah: Asia/Riyadh, UTC+3 all year (no daylight
# saving). An arrival at 22:30 UTC is the next day there, and on that day's reports.
MAKKAH_TIME = timezone(timedelta(hours=3), "AST")


def makkah_day(moment: datetime) -> date:
    """The day in Makkah of an instant."""
    return moment.astimezone(MAKKAH_TIME).date()


def hijri(day: date) -> str:
    """A day as people say it, by the Umm al-Qura calendar: `9 Dhu al-Hijjah 1446`; '' outside its range
    (1343-1500 AH)."""
    from hijridate import Gregorian  # only where a day is shown to a person

    try:
        found = Gregorian(day.year, day.month, day.day).to_hijri()
    except OverflowError:
        return ""
    return f"{found.day} {found.month_name()} {found.year}"
