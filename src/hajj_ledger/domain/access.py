"""Who reads what, and why: every read the ledger serves (each view, a journey's history, identities, the audit
trail, exports, the summary, the feed, ...), the HTTP routes that serve it, and each role granted it with the duty
that grant serves. Need-to-know (the PDPL): a role reads only what one of its duties needs.

This one table decides every read: the routes declare their roles from it (`api/routes/`), the views' index and the
summary count from it, and docs/access.md's roles tables are rendered from it (`render_markdown`). Who records
what is the event catalogue's (`catalogue.py`). Who is told of which event (`FEED_EVENTS`, `may_follow`) and who
reads identities (`IDENTITY_READERS`, `NAME_SEARCHERS`) are kept here too, where the feed and the vault check them
event by event and journey by journey, and their grants below are made from them.

A scoped role (SCOPE: a mission, a company) reads only its own rows of a view, by the view's column of that name, so
only views with that column are granted to it; `whole` names the scoped roles that read a view's every row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hajj_ledger.domain.catalogue import (
    BUILDING_STEPS,
    CONTRACT_STEPS,
    EVENT_SCOPES,
    JOURNEY_STEPS,
    OFFER_STEPS,
    SCOPE,
    STEPS,
    TRIP_STEPS,
)
from hajj_ledger.domain.errors import PermissionDeniedError
from hajj_ledger.domain.vocabulary import Role

M, C = Role.MISSION, Role.COMPANY

# Who may read a pilgrim's identity, and how far. Auditors see that it was recorded and erased (the events), never
# what it was; analysts never. Scoped roles read only their own journeys (SCOPE, the catalogue's).
IDENTITY_READERS: dict[Role, str] = {
    Role.MISSION: "its own pilgrims",
    Role.COMPANY: "the pilgrims contracted to it",
    Role.JAWAZAT: "every pilgrim (passport control)",
    Role.MOH: "every pilgrim (patients)",
    Role.MINISTRY: "every pilgrim",
}


# Who may search identities by name: only inside the caller's own scope (the vault's name index is keyed by it),
# where one Arabic name's many Latin spellings all match. Others find a pilgrim by passport.
NAME_SEARCHERS: dict[Role, str] = {Role.MISSION: "its own pilgrims"}


def check_name_searcher(role: Role) -> None:
    if role not in NAME_SEARCHERS:
        raise PermissionDeniedError(
            role, "names", "only a mission searches names, among its own pilgrims", verb="search"
        )


def check_identity_reader(role: Role, agency_id: str, journey: Any) -> None:
    if role not in IDENTITY_READERS:
        raise PermissionDeniedError(role, "identity", "this role never reads identities", verb="read")
    if role in SCOPE and journey is not None:  # None: before a journey is known (a lookup filters by scope)
        owner, refusal = SCOPE[role]
        if getattr(journey, owner) != agency_id:
            raise PermissionDeniedError(role, "identity", refusal, verb="read")


# Who is told of which events as they are recorded (the change feed, `GET /v1/feed`, and the relay's subjects): each
# agency what it acts on. A role scoped on an aggregate's kind (SCOPES, as when recording) hears only of its own: a
# company of its offers, contracts, buildings and journeys (from the contract on), a mission of its contracts and
# journeys; where SCOPES does not scope it, of every one (a mission hears of every company's offers, the market).
# Events are rendered as the trail renders them, with no personal data. Auditors follow the log, analysts never an
# aggregate.
_VISA = frozenset({"VisaRequested", "VisaIssued", "VisaRejected", "VisaRevoked", "Cancelled"})
_ARRIVAL = frozenset({"FlightBooked", "ArrivedAtPort", "EntryCleared", "CustomsCleared", "ReceivedAtPort"})
_TRANSPORT = frozenset({"ReceivedAtPort", "BusAssigned", "BusAssignmentCancelled", "Boarded", "TransferCompleted"})
_HEALTH = frozenset({"HospitalAdmitted", "HospitalDischarged", "DeathRecorded"})
_WHEREABOUTS = frozenset({"ReportedMissing", "Found", "DeathRecorded"})
_EXIT = frozenset({"ExitCleared", "Departed", "LegalHoldPlaced", "LegalHoldLifted"})
_MARKET = frozenset({"OfferPublished", "OfferAmended", "OfferWithdrawn"})
_LICENSING = frozenset({"BuildingLicensed", "LicenceSuspended", "LicenceRenewed"})
_ON_THE_ROAD = frozenset({"TripDeparted", "CheckpointPassed", "TripArrived"})
FEED_EVENTS: dict[Role, frozenset[str]] = {
    Role.MISSION: frozenset({**JOURNEY_STEPS, **CONTRACT_STEPS}) | _MARKET,
    Role.COMPANY: frozenset({**JOURNEY_STEPS, **OFFER_STEPS, **CONTRACT_STEPS, **BUILDING_STEPS}),
    Role.MOFA: _VISA,
    Role.GACA: _ARRIVAL | {"Departed"},
    Role.JAWAZAT: _ARRIVAL | {"VisaIssued", "VisaRevoked"} | _WHEREABOUTS | _EXIT,
    Role.CUSTOMS: _ARRIVAL,
    Role.WUKALA: _ARRIVAL | _TRANSPORT | frozenset(TRIP_STEPS),
    Role.NAQABA: _TRANSPORT | frozenset(TRIP_STEPS),
    Role.MOH: _HEALTH | {"LegalHoldPlaced", "LegalHoldLifted"},
    Role.AMANAH: _LICENSING,
    Role.CIVIL_DEFENCE: frozenset({"InspectionPassed", "InspectionFailed"}),
    Role.ROAD_SECURITY: _ON_THE_ROAD,
    Role.MINISTRY: frozenset(STEPS),
    Role.AUDITOR: frozenset(STEPS),
}


def may_follow(role: Role, agency_id: str, event: str, owners: Mapping[str, str | None] | None) -> bool:
    """Whether an agency is told of `event`: its role hears of that event, and a role scoped on the event's kind of
    aggregate only of its own (`owners`: the aggregate's SCOPES columns as of the event; None when unknown)."""
    if event not in FEED_EVENTS.get(role, ()):
        return False
    scope = EVENT_SCOPES[event].get(role)
    if scope is None:
        return True
    return owners is not None and owners.get(scope[0]) == agency_id


@dataclass(frozen=True)
class Read:
    """One thing agencies read, where it is served, and who may read it, each grant with its reason."""

    what: str
    routes: tuple[str, ...]  # "METHOD /path", as the OpenAPI document names them
    grants: Mapping[Role, str]  # each reader, and the duty it reads it for
    whole: frozenset[Role] = field(default_factory=frozenset)  # scoped roles that read every agency's rows

    @property
    def readers(self) -> frozenset[Role]:
        return frozenset(self.grants)


EVERY_AGENCY = frozenset(Role)
OVERSIGHT = "oversight of the whole season: it reads everything"
# The agencies in the field record steps of any pilgrim's journey (catalogue.py): they find the journeys at the stage
# they act on, and read what was recorded before their step.
IN_THE_FIELD = (Role.MOFA, Role.GACA, Role.JAWAZAT, Role.CUSTOMS, Role.WUKALA, Role.NAQABA, Role.MOH)
BEFORE_ITS_STEP = "a journey it records a step of: what was recorded before, when and by whom"


def _every_agency(why: str) -> dict[Role, str]:
    return dict.fromkeys(Role, why)


VIEWS: dict[str, Read] = {
    "journey_status": Read(
        "one row per journey: its stage, where the pilgrim is, hospital, missing or deceased, the visa's end",
        ("GET /v1/views/journey_status", "GET /v1/journeys/{journey_id}"),
        {
            M: "its own pilgrims, every stage: it registers them, contracts their package, asks their visas",
            C: "the pilgrims contracted to it: it houses them, moves them between sites, reports them missing",
            Role.MOFA: "the journeys awaiting its visa decision, and the visas it issued (to revoke one)",
            Role.GACA: "the journeys arriving (visa issued) and leaving (exit cleared) whose flights it records",
            Role.JAWAZAT: "the journeys arrived and leaving, whose entry and exit it clears",
            Role.CUSTOMS: "the journeys cleared for entry, whose customs clearance it records",
            Role.WUKALA: "the journeys through customs, which it receives at the port",
            Role.NAQABA: "the journeys received or settled, which it assigns to buses, boards and transfers",
            Role.MOH: "any pilgrim in the Kingdom, whose admission, discharge or death it records",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "port_arrivals": Read(
        "per port, flight and day: booked, arrived, entry cleared, customs cleared, received",
        ("GET /v1/views/port_arrivals",),
        {
            Role.GACA: "flights against terminal capacity",
            Role.JAWAZAT: "expected arrivals per flight and port, entries per day",
            Role.CUSTOMS: "arrivals per port",
            Role.WUKALA: "the arrival queue per terminal",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "awaiting_transport": Read(
        "pilgrims received at a port and not yet on a bus, since when, the trip assigned",
        ("GET /v1/views/awaiting_transport",),
        {
            Role.NAQABA: "cleared pilgrims still waiting for a bus, with the waiting time: its worklist",
            Role.WUKALA: "the pilgrims it received, until a bus takes them from the port",
            Role.JAWAZAT: "pilgrims it cleared in who are still at the port",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "trip_manifest": Read(
        "per bus trip: capacity, seats assigned and boarded, status",
        ("GET /v1/views/trip_manifest",),
        {
            Role.NAQABA: "the trip manifests of the buses it schedules",
            Role.WUKALA: "the buses the pilgrims it received leave the port on",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "site_headcount": Read(
        "per company, site and building: pilgrims present now",
        ("GET /v1/views/site_headcount",),
        {
            C: "headcounts of its own pilgrims per building and camp",
            Role.MOH: "how many pilgrims each site holds: its medical cover there",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "health_cases": Read(
        "admissions, discharges and deaths per season, facility and nationality",
        ("GET /v1/views/health_cases",),
        {Role.MOH: "the health cases it records", Role.MINISTRY: OVERSIGHT},
    ),
    "missing_persons": Read(
        "pilgrims reported missing and not yet found, since when, where last known",
        ("GET /v1/views/missing_persons",),
        {
            M: "its own pilgrims who are missing",
            C: "the pilgrims contracted to it that it reported missing, until it records them found",
            Role.JAWAZAT: "missing pilgrims, who may leave or overstay unseen",
            Role.MOH: "missing pilgrims, sought among the unidentified in its hospitals",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "overstay_watch": Read(
        "pilgrims in the Kingdom with their visa's end (past it: overstays)",
        ("GET /v1/views/overstay_watch",),
        {
            M: "its own pilgrims past their visa: it answers for their departure",
            Role.JAWAZAT: "overstays",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "season_funnel": Read(
        "journeys of each season reaching each stage per day, nationality, region and port (counts only)",
        ("GET /v1/views/season_funnel",),
        {
            Role.MINISTRY: "the season funnel and the daily city reports",
            Role.ANALYST: "the season's counts, for statistics and planning (never a single journey)",
            Role.AUDITOR: "the season's counts, to check against the log",
        },
    ),
    "service_offers": Read(
        "the market: per offer its company, kind, site, places contracted and free, price, validity, status",
        ("GET /v1/views/service_offers",),
        {
            M: "the market, every company's offers, which it contracts on",
            C: "its own offers",
            Role.MINISTRY: OVERSIGHT,
        },
        whole=frozenset({M}),
    ),
    "contracts": Read(
        "per contract: mission, company, offer, places contracted, used and free, status",
        ("GET /v1/views/contracts",),
        {M: "its own contracts", C: "the contracts on its offers", Role.MINISTRY: OVERSIGHT},
    ),
    "building_occupancy": Read(
        "per licensed building: company, city, beds occupied and free, licence, latest inspection",
        ("GET /v1/views/building_occupancy",),
        {
            Role.AMANAH: "the buildings it licenses: licences, beds",
            Role.CIVIL_DEFENCE: "the buildings it inspects: their latest inspection, how many sleep there",
            C: "the buildings it operates",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "trips_on_road": Read(
        "per bus trip that has left: route, last checkpoint and when, status, overdue",
        ("GET /v1/views/trips_on_road",),
        {
            Role.ROAD_SECURITY: "the buses between its checkpoints, and those overdue",
            Role.NAQABA: "its buses on the road, and those overdue",
            Role.MINISTRY: OVERSIGHT,
        },
    ),
    "seasons": Read(
        "per season the ministry opened: its calendar (registration, arrivals, the days of the Hajj, departures), its "
        "stage, its archive once closed; which is the current season",
        ("GET /v1/views/seasons", "GET /v1/seasons"),
        _every_agency("the season's calendar: when it registers, arrives, moves or leaves pilgrims"),
        whole=frozenset({M, C}),
    ),
}

# The views the season at a glance counts in (`GET /v1/summary`): each figure for the roles that read its view, once
# those the caller reads have reached `min_position`.
SUMMARY_VIEWS = (
    "season_funnel", "port_arrivals", "journey_status", "trip_manifest", "overstay_watch", "service_offers",
    "contracts", "building_occupancy", "trips_on_road",
)  # fmt: skip


def _summary() -> dict[Role, str]:
    counted = {role: [name for name in SUMMARY_VIEWS if role in VIEWS[name].grants] for role in Role}
    return {role: f"the figures of the views it reads: {', '.join(names)}" for role, names in counted.items() if names}


READS: dict[str, Read] = {
    **VIEWS,
    "journey history": Read(
        "every event of one journey, both clocks, who recorded each",
        ("GET /v1/journeys/{journey_id}/history",),
        {
            M: "its own pilgrims' journeys, as recorded: what it corrects",
            C: "the journeys contracted to it, as recorded",
            **dict.fromkeys(IN_THE_FIELD, BEFORE_ITS_STEP),
            Role.MINISTRY: OVERSIGHT,
            Role.AUDITOR: "the full history of any journey",
        },
    ),
    "identity": Read(
        "who the pilgrim is (the vault), and the journeys of a passport",
        ("GET /v1/journeys/{journey_id}/identity", "GET /v1/identities/by-passport"),
        IDENTITY_READERS,  # above, which the vault enforces too
    ),
    "names": Read(
        "the journeys of a name, in any spelling, among the caller's own",
        ("GET /v1/identities/by-name",),
        NAME_SEARCHERS,
    ),
    "audit": Read(
        "the trail with both clocks, a journey and views as of the past, checkpoints sealed on demand, proofs",
        (
            "GET /v1/audit/events",
            "GET /v1/audit/journeys/{journey_id}",
            "GET /v1/audit/views/journey_status",
            "GET /v1/audit/views/season_funnel",
            "POST /v1/audit/checkpoints",
            "GET /v1/audit/proof",
        ),
        {Role.AUDITOR: "the full history, as-of state and integrity proofs", Role.MINISTRY: OVERSIGHT},
    ),
    "exports": Read(
        "pseudonymised snapshots of the whole ledger, their progress and files",
        ("POST /v1/exports", "GET /v1/exports/{export_id}", "GET /v1/exports/{export_id}/files/{name}"),
        {Role.ANALYST: "statistics and planning on pseudonymised data, in its own tools"},
    ),
    "summary": Read("the season at a glance", ("GET /v1/summary",), _summary()),
    "feed": Read(
        "the events it is told of as they are recorded (FEED_EVENTS, scoped as recording is)",
        ("GET /v1/feed",),
        dict.fromkeys(FEED_EVENTS, "the events of its duties, as they are recorded"),
    ),
    "views index": Read(
        "which views there are, their columns and who reads each (no rows)",
        ("GET /v1/views",),
        _every_agency("knowing what it may read"),
    ),
    "agency": Read("who the key belongs to: agency, role, scope", ("GET /v1/agency",), _every_agency("its own key")),
    "checkpoints": Read(
        "the hash chain's signed checkpoints and the public keys that check them (no personal data)",
        ("GET /v1/audit/checkpoints", "GET /v1/audit/keys"),
        _every_agency("checking that what it was told was not altered since"),
    ),
}

# Each route's readers, by "METHOD /path".
ROUTE_READERS: dict[str, frozenset[Role]] = {route: read.readers for read in READS.values() for route in read.routes}

# The names the readers use.
VIEW_READERS: dict[str, frozenset[Role]] = {name: read.readers for name, read in VIEWS.items()}
WHOLE_VIEW_READERS: dict[str, frozenset[Role]] = {name: read.whole for name, read in VIEWS.items() if read.whole}
HISTORY_READERS = READS["journey history"].readers
AUDIT_READERS = READS["audit"].readers
EXPORTERS = READS["exports"].readers
SUMMARY_READERS = READS["summary"].readers
FEED_READERS = READS["feed"].readers


def check_role(role: Role, roles: Collection[str], action: str, *, verb: str = "record") -> None:
    """Refuse a role that is not one of `roles`: the one check of a caller's role, the same refusal wherever it is
    made, for a step (the catalogue's roles of it, `STEPS[event].roles`) or a route (the roles it serves, from the
    tables here or the catalogue's; `verb` its method, `action` its path)."""
    if role not in roles:
        raise PermissionDeniedError(role, action, verb=verb)


def _code(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def render_markdown() -> str:
    """Two tables as people read them (docs/access.md): each read and where it is served; each role's reads and why (the
    reads of one reason on one row; those every role reads for the same reason once, last)."""
    lines = ["| read | what it gives | over HTTP |", "|---|---|---|"]
    lines += [f"| {_code([name])} | {read.what} | {_code(read.routes)} |" for name, read in READS.items()]
    lines += ["", "| role | reads | for |", "|---|---|---|"]
    common = [n for n, read in READS.items() if read.readers == EVERY_AGENCY and len(set(read.grants.values())) == 1]
    for role in Role:
        reasons: dict[str, list[str]] = {}
        for name, read in READS.items():
            if role in read.grants and name not in common:
                whole = " (every agency's rows)" if role in read.whole else ""
                reasons.setdefault(read.grants[role], []).append(f"`{name}`{whole}")
        lines += [f"| `{role}` | {', '.join(names)} | {why} |" for why, names in reasons.items()]
    lines += [f"| every role | {_code([name])} | {READS[name].grants[M]} |" for name in common]
    return "\n".join(lines) + "\n"
