"""The event catalogue: every step the ledger records, who may record it, and from where.

This one table is the journey's rules and the permissions both. The aggregates enforce it before they create any
event (`Journey.trigger_event`, `Trip.trigger_event`); docs/journey.md and the API docs render it
(`catalogue_doc.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hajj_ledger.domain.errors import (
    BuildingFullError,
    ContractFullError,
    IllegalStepError,
    LedgerError,
    OccurredTooEarlyError,
    OfferFullError,
    OutsideSeasonError,
    PermissionDeniedError,
    TripFullError,
)
from hajj_ledger.domain.vocabulary import (
    ENDED,
    HOUSING,
    BuildingStage,
    ContractStage,
    Direction,
    OfferStage,
    Role,
    SeasonStage,
    Stage,
    Stamp,
    TripStage,
    makkah_day,
)

PRE_ARRIVAL = frozenset(
    {
        Stage.REGISTERED,
        Stage.CONTRACTED,
        Stage.VISA_REQUESTED,
        Stage.VISA_ISSUED,
        Stage.VISA_REJECTED,
        Stage.VISA_REVOKED,
    }
)
AT_ARRIVAL_PORT = frozenset({Stage.ARRIVED, Stage.ENTRY_CLEARED, Stage.CUSTOMS_CLEARED, Stage.RECEIVED})
ON_BUS = frozenset({Stage.BUS_ASSIGNED, Stage.BOARDED})
SETTLED = frozenset({Stage.TRANSFERRED, Stage.HOUSED, Stage.CHECKED_OUT, Stage.AT_SITE})
IN_KINGDOM = AT_ARRIVAL_PORT | ON_BUS | SETTLED | {Stage.EXIT_CLEARED}


@dataclass(frozen=True)
class Condition:
    """A rule beyond the stage, about the aggregate and the new event's fields."""

    text: str
    holds: Callable[[Any, Mapping[str, Any]], bool]
    refusal: Callable[[Any, Mapping[str, Any]], LedgerError] | None = None  # None: an IllegalStepError naming the stage
    # Whether some new event could meet it, the aggregate as it stands: for the steps a refusal lists as allowed.
    # None: the condition is about the aggregate alone, so it is asked with no fields.
    possible: Callable[[Any], bool] | None = None

    def could_hold(self, aggregate: Any) -> bool:
        return self.possible(aggregate) if self.possible is not None else self.holds(aggregate, {})


def _stamp(fields: Mapping[str, Any]) -> Stamp:
    stamp = fields["stamp"]
    assert isinstance(stamp, Stamp)
    return stamp


MISSION_ID = re.compile(r"mission-([A-Z]{3})-[A-Za-z0-9-]+")


def mission_country(agency_id: str) -> str | None:
    """A mission's country, from the id its journeys carry: `mission-IDN-00007` is Indonesia's (ISO 3166-1
    alpha-3); None when the id names none."""
    found = MISSION_ID.fullmatch(agency_id)
    return found.group(1) if found else None


def _foreign_pilgrim(journey: None, fields: Mapping[str, Any]) -> LedgerError:
    mission, country = _stamp(fields).agency_id, fields["country"]
    own = mission_country(mission)
    why = (
        f"mission {mission} registers pilgrims of {own} only, not {country}"
        if own
        else f"the mission id {mission} names no country (a mission's id reads mission-<ISO alpha-3>-<number>)"
    )
    return PermissionDeniedError(Role.MISSION, "Registered", why)


OWN_COUNTRY = Condition(
    "a pilgrim of the mission's own country",
    lambda j, f: mission_country(_stamp(f).agency_id) == f["country"],
    refusal=_foreign_pilgrim,
)
PRESENT = Condition("not in hospital and not missing", lambda j, f: j.hospital is None and not j.missing)
NOT_IN_HOSPITAL = Condition("not in hospital", lambda j, f: j.hospital is None)
IN_HOSPITAL = Condition("in hospital", lambda j, f: j.hospital is not None)
NOT_MISSING = Condition("not reported missing", lambda j, f: not j.missing)
MISSING = Condition("reported missing", lambda j, f: j.missing)
VISA_VALID = Condition(
    "visa valid when it happened",
    lambda j, f: j.visa_valid_until is not None and _stamp(f).occurred_at <= j.visa_valid_until,
    possible=lambda j: j.visa_valid_until is not None,
)
FLIGHT_FITS = Condition(
    "arrival flights before arrival, departure flights once in the Kingdom",
    lambda j, f: (f["direction"] == Direction.ARRIVAL) == (j.stage in PRE_ARRIVAL),
    possible=lambda j: True,  # one direction or the other fits
)
NO_IDENTITY = Condition("no identity recorded yet", lambda j, f: j.identity == "none")
HAS_IDENTITY = Condition("an identity in the vault", lambda j, f: j.identity == "recorded")
NO_LEGAL_HOLD = Condition(
    "no legal hold",
    lambda j, f: not j.holds,
    refusal=lambda j, f: IllegalStepError(
        "IdentityErased",
        j.stage,
        allowed_now(JOURNEY_STEPS, j),
        reason=f"refused while under legal hold: {', '.join(sorted(j.holds))}",
    ),
)
HOLD_NOT_PLACED = Condition(
    "that hold not already placed", lambda j, f: f["hold"] not in j.holds, possible=lambda j: True
)
HOLD_PLACED = Condition("that hold placed", lambda j, f: f["hold"] in j.holds, possible=lambda j: bool(j.holds))
HOLDERS = [Role.JAWAZAT, Role.MOH, Role.MINISTRY]  # an overstay under investigation, a death being identified
ON_ASSIGNED_TRIP = Condition(
    "the trip it was assigned to", lambda j, f: f["trip_id"] == j.trip_id, possible=lambda j: j.trip_id is not None
)
SEAT_FREE = Condition(
    "a free seat",
    lambda t, f: len(t.seats) < t.capacity,
    refusal=lambda t, f: TripFullError(f"trip {t.id} is full: {len(t.seats)} of {t.capacity} seats taken"),
)
SEAT_HELD = Condition(
    "the journey to hold a seat", lambda t, f: f["journey_id"] in t.seats, possible=lambda t: bool(t.seats)
)
NO_SEAT_HELD = Condition("no seat held", lambda t, f: not t.seats)
AFTER_DEPARTURE = Condition(
    "not before its departure",
    lambda t, f: _stamp(f).occurred_at >= t.departed_at,
    refusal=lambda t, f: _before_departure_of(t, f),
    possible=lambda t: True,
)


def _before_departure_of(trip: Any, fields: Mapping[str, Any]) -> LedgerError:
    return OccurredTooEarlyError(
        f"{_stamp(fields).occurred_at.isoformat()} is before the departure of trip {trip.id}, at "
        f"{trip.departed_at.isoformat()}"
    )


def _with(name: str, test: Callable[[Any, Any, Mapping[str, Any]], bool]) -> Callable[[Any, Mapping[str, Any]], bool]:
    """A condition on another aggregate the ledger loaded with this one and passes in the fields as `name` (None
    when there is none). The ledger checks it before changing anything; the aggregate recording its own event
    afterwards has no other to ask, and the condition is not asked again."""
    return lambda a, f: name not in f or (f[name] is not None and test(a, f[name], f))


# A ride follows its trip. TripArrived is the bus reaching its destination, the trip's one event; TransferCompleted
# is a pilgrim handed over there, each pilgrim's. So a pilgrim boards a bus still waiting to leave, and its transfer
# completes on a bus that has left (arrived or not yet recorded so), never before it left.
def _trip_not(event: str, needs: str) -> Callable[[Any, Mapping[str, Any]], LedgerError]:
    def refusal(j: Any, f: Mapping[str, Any]) -> LedgerError:
        why = f"refused: trip {f['trip'].id} is {f['trip'].stage}; {event} needs it {needs}"
        return IllegalStepError(event, j.stage, allowed_now(JOURNEY_STEPS, j), reason=why)

    return refusal


def _before_departure(j: Any, f: Mapping[str, Any]) -> LedgerError:
    if f["trip"].departed_at is None:
        return _trip_not("TransferCompleted", "departed")(j, f)
    return _before_departure_of(f["trip"], f)


TRIP_BOARDING = Condition(
    "its trip not yet departed",
    _with("trip", lambda j, trip, f: trip.stage is TripStage.SCHEDULED),
    refusal=_trip_not("Boarded", "scheduled"),
)
TRIP_LEFT = Condition(
    "its trip departed, and not before it left",
    _with("trip", lambda j, trip, f: trip.departed_at is not None and _stamp(f).occurred_at >= trip.departed_at),
    refusal=_before_departure,
)

# The market: offers, contracts on them, and the places both count.
OFFERED_BUILDINGS = Condition(
    "buildings operated by the company",
    _with("buildings", lambda o, buildings, f: all(_operates(b, f) for b in buildings)),
    refusal=lambda o, f: PermissionDeniedError(
        _stamp(f).role,
        "OfferPublished" if o is None else "OfferAmended",
        "; ".join(f"building {b.id} is operated by {b.company_id}" for b in f["buildings"] if not _operates(b, f)),
    ),
    possible=lambda o: True,
)


def _operates(building: Any, fields: Mapping[str, Any]) -> bool:
    # Not by city: a journey has one contract, and a package houses its pilgrims in Makkah and in Madinah.
    return bool(building.company_id == _stamp(fields).agency_id)


BUILDINGS_FIT_KIND = Condition(
    "buildings named by housing offers only",
    lambda o, f: f.get("building_ids") is None or bool(f["building_ids"]) == (o.kind in HOUSING),
    possible=lambda o: True,
)
VALIDITY_AFTER_START = Condition(
    "a validity ending after it starts",
    lambda o, f: f.get("valid_until") is None or f["valid_until"] > o.valid_from,
    possible=lambda o: True,
)
NOT_BELOW_CONTRACTED = Condition(
    "places not below those contracted",
    lambda o, f: f.get("places") is None or f["places"] >= o.contracted,
    refusal=lambda o, f: IllegalStepError(
        "OfferAmended",
        o.stage,
        allowed_now(OFFER_STEPS, o),
        reason=f"refused: {f['places']} places is below the {o.contracted} places contracted",
    ),
    possible=lambda o: True,
)
NO_ACTIVE_CONTRACT = Condition(
    "no contract proposed or signed on it",
    lambda o, f: not o.active_contracts,
    refusal=lambda o, f: IllegalStepError(
        "OfferWithdrawn",
        o.stage,
        allowed_now(OFFER_STEPS, o),
        reason=f"refused: {len(o.active_contracts)} contracts are proposed or signed on it",
    ),
)
OFFER_VALID = Condition(
    "the offer valid when it happened",
    lambda o, f: o.valid_from <= _stamp(f).occurred_at <= o.valid_until,
    possible=lambda o: True,
)
PLACES_FREE = Condition(
    "as many free places",
    lambda o, f: f["places"] <= o.free,
    refusal=lambda o, f: OfferFullError(
        f"offer {o.id} has {o.free} free places of {o.places} ({o.contracted} contracted): {f['places']} asked"
    ),
    possible=lambda o: o.free > 0,
)
CONTRACT_NOTED = Condition(
    "a contract noted on it", lambda o, f: f["contract_id"] in o.reserved, possible=lambda o: bool(o.reserved)
)
PLACES_HELD = Condition(
    "as many places reserved by the contract",
    lambda o, f: f["contract_id"] in o.reserved and f["places"] <= o.reserved[f["contract_id"]],
    possible=lambda o: bool(o.reserved),
)
PLACES_OFFERED = Condition(
    "places within the offer's free places",
    _with("offer", lambda c, offer, f: f["places"] <= offer.free),
    refusal=lambda c, f: OfferFullError(
        f"offer {f['offer'].id} has {f['offer'].free} free places of {f['offer'].places}: {f['places']} asked"
    ),
)
NOT_BELOW_USED = Condition(
    "places not below those used",
    lambda c, f: f["places"] >= len(c.used),
    refusal=lambda c, f: IllegalStepError(
        "ContractAmended",
        c.stage,
        allowed_now(CONTRACT_STEPS, c),
        reason=f"refused: {f['places']} places is below the {len(c.used)} places used",
    ),
    possible=lambda c: True,
)
NO_PLACE_USED = Condition(
    "no place used",
    lambda c, f: not c.used,
    refusal=lambda c, f: IllegalStepError(
        "ContractTerminated",
        c.stage,
        allowed_now(CONTRACT_STEPS, c),
        reason=f"refused: {len(c.used)} places are used by journeys",
    ),
)
PLACE_FREE = Condition(
    "a free place",
    lambda c, f: len(c.used) < c.places,
    refusal=lambda c, f: ContractFullError(f"contract {c.id} is full: {len(c.used)} of {c.places} places used"),
)
PLACE_HELD = Condition(
    "the journey to hold a place", lambda c, f: f["journey_id"] in c.used, possible=lambda c: bool(c.used)
)
SAME_SEASON = Condition(
    "a contract of the journey's season",
    _with("contract", lambda j, contract, f: contract.season == j.season),
    refusal=lambda j, f: IllegalStepError(
        "PackageContracted",
        j.stage,
        allowed_now(JOURNEY_STEPS, j),
        reason=f"refused: the contract is for season {f['contract'].season}, the journey {j.season}",
    ),
)

# Housing: licensed by the municipality, inspected by Civil Defence, a bed per pilgrim.
LICENCE_VALID = Condition(
    "a licence valid when it happened",
    lambda b, f: _stamp(f).occurred_at <= b.licence_valid_until,
    possible=lambda b: True,
)
RENEWED_AHEAD = Condition(
    "a licence valid after it happened",
    lambda b, f: f["licence_valid_until"] > _stamp(f).occurred_at,
    possible=lambda b: True,
)
INSPECTION_PASSED = Condition("its latest inspection passed", lambda b, f: b.inspected is True)
BED_FREE = Condition(
    "a free bed",
    lambda b, f: len(b.occupants) < b.beds,
    refusal=lambda b, f: BuildingFullError(f"building {b.id} is full: {len(b.occupants)} of {b.beds} beds taken"),
)
BED_HELD = Condition(
    "the journey to hold a bed", lambda b, f: f["journey_id"] in b.occupants, possible=lambda b: bool(b.occupants)
)
OF_THE_CONTRACT = Condition(
    "a building named by the offer of the journey's contract, in the site checked into",
    _with("offer", lambda j, offer, f: f["building_id"] in offer.building_ids and _in_site(f)),
    refusal=lambda j, f: IllegalStepError(
        "HousingCheckedIn",
        j.stage,
        allowed_now(JOURNEY_STEPS, j),
        reason=f"refused: building {f['building_id']} is not named by the offer of the journey's contract"
        if f["offer"] is None or f["building_id"] not in f["offer"].building_ids
        else f"refused: building {f['building_id']} is in {f['house'].city}, not {f['site']}",
    ),
)


def _in_site(fields: Mapping[str, Any]) -> bool:
    house = fields.get("house")  # the building the ledger loaded ("building" is the company's name for it)
    return house is None or house.city == fields["site"]


ONE_BED = Condition(
    "no bed held in another building",
    lambda j, f: j.building_id is None or j.building_id == f.get("building_id"),
    possible=lambda j: True,
)
HOUSE_OPEN = Condition(
    "the building licensed, its licence valid and its latest inspection passed, back to a bed held too",
    _with("house", lambda j, house, f: not _closed(house, f)),
    refusal=lambda j, f: IllegalStepError(
        "HousingCheckedIn",
        j.stage,
        allowed_now(JOURNEY_STEPS, j),
        reason=f"refused: building {f['house'].id} {' and '.join(_closed(f['house'], f))}",
    ),
)


def _closed(building: Any, fields: Mapping[str, Any]) -> list[str]:
    """What keeps a building from housing a pilgrim, in a bed taken or one kept: what a bed taken needs (its stage
    and conditions) but a free bed."""
    step = BUILDING_STEPS["BedTaken"]
    why = [] if building.stage in step.from_ else [f"is {building.stage}"]
    return why + [f"needs {c.text}" for c in step.conditions if c is not BED_FREE and not c.holds(building, fields)]


CHECKED_IN_THERE = Condition(
    "the site and building checked into",
    lambda j, f: j.housed_in == (f["site"], f["building"]),
    refusal=lambda j, f: IllegalStepError(
        "HousingCheckedOut",
        j.stage,
        allowed_now(JOURNEY_STEPS, j),
        reason=f"refused: the pilgrim is checked in at {j.housed_in[1]} (building {j.building_id}) in "
        f"{j.housed_in[0]}, not {f['building']} in {f['site']}",
    ),
    possible=lambda j: True,
)


# The season's calendar (domain/season.py): the ledger loads a journey's season and passes it as `calendar` (None:
# never opened). A registration needs its season open and the day in its registration window; an arrival, the day
# in its arrivals window; every step of a journey, its season not closing or later (`check_season`). Days are days
# in Makkah, of the business clock (`occurred_at`): a late report of a day within the window is still accepted.
def _in_window(window: str, event: str) -> Condition:
    def holds(j: Any, f: Mapping[str, Any]) -> bool:
        if "calendar" not in f:  # the aggregate recording its own event: the ledger asked already
            return True
        calendar = f["calendar"]
        if calendar is None:  # a season never opened takes no new journey; one recorded before seasons were keeps
            return j is not None  # its late corrections
        return bool(calendar.stage is SeasonStage.OPEN and calendar.within(window, _stamp(f).occurred_at))

    def refusal(j: Any, f: Mapping[str, Any]) -> LedgerError:
        calendar, season = f["calendar"], f["season"] if j is None else j.season
        if calendar is None:
            return OutsideSeasonError(event, season, None, f"season {season} has not been opened by the ministry")
        at = _stamp(f).occurred_at
        if calendar.stage is not SeasonStage.OPEN:
            return OutsideSeasonError(event, season, calendar.stage, "the season is no longer open")
        first, last = calendar.window(window)
        why = f"{makkah_day(at)} (in Makkah) is outside the season's {window} window, {first} to {last}"
        return OutsideSeasonError(event, season, calendar.stage_on(at), why)

    return Condition(
        f"its season open, and the day within its {window} window", holds, refusal=refusal, possible=lambda j: True
    )


IN_REGISTRATION_WINDOW = _in_window("registration", "Registered")
IN_ARRIVALS_WINDOW = _in_window("arrivals", "ArrivedAtPort")


def check_season(event: str, season: int, calendar: Any) -> None:
    """Refuse any step of a journey whose season is closing or later: its history is being archived."""
    if calendar is not None and calendar.stage is not SeasonStage.OPEN:
        raise past_opening(event, season, calendar.stage)


def past_opening(event: str, season: int, stage: str) -> OutsideSeasonError:
    """The refusal of a step of a season closing or later (as the ledger found it, or the store under its lock)."""
    return OutsideSeasonError(event, season, stage, "its journeys take no more steps once closing begins")


DEPARTURES_OVER = Condition(
    "the last day of departures and the grace period past",
    lambda s, f: makkah_day(_stamp(f).occurred_at) > s.closes_after,
    refusal=lambda s, f: IllegalStepError(
        "SeasonClosing",
        s.stage_on(_stamp(f).occurred_at),
        allowed_now(SEASON_STEPS, s),
        reason=f"refused: closing begins after {s.closes_after} (the last day of departures, {s.departures_until}, "
        f"and {s.CLOSING_GRACE.days} days' grace), not on {makkah_day(_stamp(f).occurred_at)}",
    ),
    possible=lambda s: True,
)


@dataclass(frozen=True)
class Step:
    event: str
    roles: frozenset[Role]
    from_: frozenset[Any]  # stages (a journey's or a trip's); empty for the first event
    to: Any = None  # the stage after it; None leaves it as it was
    conditions: tuple[Condition, ...] = ()
    note: str = ""


def _step(
    event: str,
    roles: Iterable[Role],
    from_: Iterable[Any],
    to: Any = None,
    *conditions: Condition,
    note: str = "",
) -> Step:
    return Step(event, frozenset(roles), frozenset(from_), to, conditions, note)


M, C, NQ = Role.MISSION, Role.COMPANY, Role.NAQABA

JOURNEY_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("Registered", [M], [], Stage.REGISTERED, OWN_COUNTRY, IN_REGISTRATION_WINDOW),
        _step(
            "PackageContracted",
            [M],
            [Stage.REGISTERED],
            Stage.CONTRACTED,
            SAME_SEASON,
            note="a place is taken on the signed contract",
        ),
        _step(
            "VisaRequested",
            [M],
            [Stage.CONTRACTED, Stage.VISA_REJECTED, Stage.VISA_REVOKED],
            Stage.VISA_REQUESTED,
        ),
        _step("VisaIssued", [Role.MOFA], [Stage.VISA_REQUESTED], Stage.VISA_ISSUED),
        _step("VisaRejected", [Role.MOFA], [Stage.VISA_REQUESTED], Stage.VISA_REJECTED),
        _step("VisaRevoked", [Role.MOFA], [Stage.VISA_ISSUED], Stage.VISA_REVOKED),
        _step("FlightBooked", [M], PRE_ARRIVAL | SETTLED, None, FLIGHT_FITS),
        _step(
            "ArrivedAtPort",
            [Role.GACA, Role.JAWAZAT],
            [Stage.VISA_ISSUED],
            Stage.ARRIVED,
            VISA_VALID,
            IN_ARRIVALS_WINDOW,
        ),
        _step("EntryCleared", [Role.JAWAZAT], [Stage.ARRIVED], Stage.ENTRY_CLEARED),
        _step("CustomsCleared", [Role.CUSTOMS], [Stage.ENTRY_CLEARED], Stage.CUSTOMS_CLEARED),
        _step("ReceivedAtPort", [Role.WUKALA], [Stage.CUSTOMS_CLEARED], Stage.RECEIVED),
        _step(
            "BusAssigned",
            [NQ],
            {Stage.RECEIVED} | SETTLED,
            Stage.BUS_ASSIGNED,
            note="and a seat is reserved on the trip",
        ),
        _step(
            "BusAssignmentCancelled",
            [NQ],
            [Stage.BUS_ASSIGNED],
            None,
            ON_ASSIGNED_TRIP,
            note="back to the stage before the bus; the seat is released",
        ),
        _step("Boarded", [NQ], [Stage.BUS_ASSIGNED], Stage.BOARDED, ON_ASSIGNED_TRIP, PRESENT, TRIP_BOARDING),
        _step(
            "TransferCompleted",
            [NQ],
            [Stage.BOARDED],
            Stage.TRANSFERRED,
            ON_ASSIGNED_TRIP,
            TRIP_LEFT,
            note="the pilgrim handed over at the destination (the bus's own arrival is TripArrived)",
        ),
        _step(
            "HousingCheckedIn",
            [C],
            [Stage.TRANSFERRED, Stage.CHECKED_OUT, Stage.AT_SITE],
            Stage.HOUSED,
            PRESENT,
            OF_THE_CONTRACT,
            ONE_BED,
            HOUSE_OPEN,
            note="and a bed is taken in the building",
        ),
        _step("HousingCheckedOut", [C], [Stage.HOUSED], Stage.CHECKED_OUT, CHECKED_IN_THERE, note="the bed is freed"),
        _step("MovedToSite", [C], SETTLED, Stage.AT_SITE, PRESENT),
        _step("HospitalAdmitted", [Role.MOH], IN_KINGDOM, None, NOT_IN_HOSPITAL),
        _step("HospitalDischarged", [Role.MOH], IN_KINGDOM, None, IN_HOSPITAL),
        _step("ReportedMissing", [C], IN_KINGDOM, None, NOT_MISSING),
        _step("Found", [C], IN_KINGDOM, None, MISSING),
        _step("DeathRecorded", [Role.MOH], IN_KINGDOM, Stage.DECEASED, note="ends the journey; frees a bed held"),
        _step("Cancelled", [M], PRE_ARRIVAL, Stage.CANCELLED, note="ends the journey; frees its contract's place"),
        _step("ExitCleared", [Role.JAWAZAT], SETTLED, Stage.EXIT_CLEARED, PRESENT),
        _step(
            "Departed",
            [Role.GACA, Role.JAWAZAT],
            [Stage.EXIT_CLEARED],
            Stage.DEPARTED,
            PRESENT,
            note="ends the journey; frees a bed held",
        ),
        # Identity: the fact that it was given, corrected or erased; the content lives in the vault. Correction
        # and erasure stay possible after the end: they are the pilgrim's rights, and retention erases then.
        _step("IdentityRecorded", [M], set(Stage) - ENDED, None, NO_IDENTITY, note="or with registration"),
        _step("IdentityCorrected", [M], Stage, None, HAS_IDENTITY, note="also after the end"),
        _step(
            "IdentityErased", [M, Role.MINISTRY], Stage, None, HAS_IDENTITY, NO_LEGAL_HOLD, note="also after the end"
        ),
        _step("LegalHoldPlaced", HOLDERS, Stage, None, HOLD_NOT_PLACED, note="keeps the identity from erasure"),
        _step("LegalHoldLifted", HOLDERS, Stage, None, HOLD_PLACED),
    )
}
IDENTITY_STEPS = frozenset(
    {"IdentityRecorded", "IdentityCorrected", "IdentityErased", "LegalHoldPlaced", "LegalHoldLifted"}
)

TRIP_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("TripScheduled", [NQ], [], TripStage.SCHEDULED),
        _step("SeatReserved", [NQ], [TripStage.SCHEDULED], None, SEAT_FREE),
        _step("SeatReleased", [NQ], [TripStage.SCHEDULED, TripStage.DEPARTED], None, SEAT_HELD),
        _step("TripDeparted", [NQ], [TripStage.SCHEDULED], TripStage.DEPARTED),
        _step("TripArrived", [NQ], [TripStage.DEPARTED], TripStage.ARRIVED, AFTER_DEPARTURE),
        _step("TripCancelled", [NQ], [TripStage.SCHEDULED], TripStage.CANCELLED, NO_SEAT_HELD),
        _step(
            "CheckpointPassed", [Role.ROAD_SECURITY], [TripStage.DEPARTED], None, AFTER_DEPARTURE, note="on the road"
        ),
    )
}

# Who ends a journey: they free what it held (a contract's place, a building's bed) in the same transaction.
_ENDERS = frozenset(role for s in JOURNEY_STEPS.values() if s.to in ENDED for role in s.roles)
_PARTIES = [M, C]  # a contract's two parties
PUBLISHED = [OfferStage.PUBLISHED]

OFFER_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("OfferPublished", [C], [], OfferStage.PUBLISHED, OFFERED_BUILDINGS),
        _step(
            "OfferAmended",
            [C],
            PUBLISHED,
            None,
            NOT_BELOW_CONTRACTED,
            VALIDITY_AFTER_START,
            BUILDINGS_FIT_KIND,
            OFFERED_BUILDINGS,
        ),
        _step("OfferWithdrawn", [C], PUBLISHED, OfferStage.WITHDRAWN, NO_ACTIVE_CONTRACT),
        _step("ContractNoted", [M], PUBLISHED, None, OFFER_VALID, note="by a contract's proposal"),
        _step(
            "PlacesReserved",
            _PARTIES,
            PUBLISHED,
            None,
            CONTRACT_NOTED,
            PLACES_FREE,
            note="by a contract's signing or amendment",
        ),
        _step(
            "PlacesReleased",
            _PARTIES,
            PUBLISHED,
            None,
            PLACES_HELD,
            note="by a contract's amendment or termination (which releases all and forgets it)",
        ),
    )
}

CONTRACT_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("ContractProposed", [M], [], ContractStage.PROPOSED, PLACES_OFFERED, note="noted on the offer"),
        _step(
            "ContractSigned",
            [C],
            [ContractStage.PROPOSED],
            ContractStage.SIGNED,
            note="the offer reserves its places",
        ),
        _step("ContractAmended", _PARTIES, [ContractStage.SIGNED], None, NOT_BELOW_USED, note="the offer follows"),
        _step(
            "ContractTerminated",
            _PARTIES,
            [ContractStage.PROPOSED, ContractStage.SIGNED],
            ContractStage.TERMINATED,
            NO_PLACE_USED,
            note="the offer releases its places",
        ),
        _step("PlaceTaken", [M], [ContractStage.SIGNED], None, PLACE_FREE, note="by a journey's PackageContracted"),
        _step(
            "PlaceFreed",
            JOURNEY_STEPS["Cancelled"].roles,
            [ContractStage.SIGNED],
            None,
            PLACE_HELD,
            note="by a journey's cancellation",
        ),
    )
}

A, CD = Role.AMANAH, Role.CIVIL_DEFENCE
EITHER_LICENCE = [BuildingStage.LICENSED, BuildingStage.SUSPENDED]
BUILDING_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("BuildingLicensed", [A], [], BuildingStage.LICENSED),
        _step("LicenceSuspended", [A], [BuildingStage.LICENSED], BuildingStage.SUSPENDED),
        _step("LicenceRenewed", [A], EITHER_LICENCE, BuildingStage.LICENSED, RENEWED_AHEAD),
        _step("InspectionPassed", [CD], EITHER_LICENCE),
        _step("InspectionFailed", [CD], EITHER_LICENCE, note="no check-in until a later one passes"),
        _step(
            "BedTaken",
            [C],
            [BuildingStage.LICENSED],
            None,
            LICENCE_VALID,
            INSPECTION_PASSED,
            BED_FREE,
            note="by a journey's HousingCheckedIn",
        ),
        _step("BedFreed", {C} | _ENDERS, EITHER_LICENCE, None, BED_HELD, note="by a check-out or a journey's end"),
    )
}

# A season, as the ministry opens it with its calendar and closes it once its journeys are over (domain/season.py).
MIN = [Role.MINISTRY]
SEASON_STEPS: dict[str, Step] = {
    s.event: s
    for s in (
        _step("SeasonOpened", MIN, [], SeasonStage.OPEN, note="with its calendar; running from its first arrival day"),
        _step(
            "SeasonClosing",
            MIN,
            [SeasonStage.OPEN, SeasonStage.RUNNING],
            SeasonStage.CLOSING,
            DEPARTURES_OVER,
            note="no step of its journeys is accepted from then on",
        ),
        _step("SeasonClosed", MIN, [SeasonStage.CLOSING], SeasonStage.CLOSED, note="its archive written and verified"),
        _step("SeasonArchived", MIN, [SeasonStage.CLOSED], SeasonStage.ARCHIVED, note="taken out of the hot store"),
        _step(
            "SeasonRestored",
            MIN,
            [SeasonStage.ARCHIVED],
            SeasonStage.CLOSED,
            note="back from the archive into the hot store",
        ),
        _step(
            "SeasonIdentitiesErased",
            MIN,
            [SeasonStage.ARCHIVED],
            SeasonStage.ARCHIVED,
            note="identities of its archived journeys erased from the vault (retention, a pilgrim's right)",
        ),
    )
}

STEPS: dict[str, Step] = {
    **JOURNEY_STEPS, **TRIP_STEPS, **OFFER_STEPS, **CONTRACT_STEPS, **BUILDING_STEPS, **SEASON_STEPS
}  # fmt: skip
# Each kind of aggregate's steps, for docs/journey.md, the command line and the API docs.
TABLES: dict[str, Mapping[str, Step]] = {
    "Journey steps": JOURNEY_STEPS,
    "Trip steps": TRIP_STEPS,
    "Offer steps": OFFER_STEPS,
    "Contract steps": CONTRACT_STEPS,
    "Building steps": BUILDING_STEPS,
    "Season steps": SEASON_STEPS,
}

# Roles that act only on their own journeys: the journey attribute naming the owner, and the refusal.
SCOPE: dict[Role, tuple[str, str]] = {
    Role.MISSION: ("mission_id", "the journey was registered by another mission"),
    Role.COMPANY: ("company_id", "the journey is not contracted to this company"),
}
# And on their own offers, contracts and buildings (a mission contracts on any company's offer).
SCOPES: dict[str, dict[Role, tuple[str, str]]] = {
    "Journey": SCOPE,
    "Trip": {},
    "ServiceOffer": {Role.COMPANY: ("company_id", "the offer is another company's")},
    "Contract": {
        Role.MISSION: ("mission_id", "the contract is another mission's"),
        Role.COMPANY: ("company_id", "the contract is on another company's offer"),
    },
    "Building": {Role.COMPANY: ("company_id", "the building is operated by another company")},
    "Season": {},
}

# Who reads what, and why: domain/access.py. Who records anything (the batch route's roles):
RECORDERS = frozenset(role for step in STEPS.values() for role in step.roles)

# Each event's scopes: those of its aggregate's kind.
EVENT_SCOPES: dict[str, dict[Role, tuple[str, str]]] = {
    event: SCOPES[kind]
    for kind, steps in (
        ("Journey", JOURNEY_STEPS),
        ("Trip", TRIP_STEPS),
        ("ServiceOffer", OFFER_STEPS),
        ("Contract", CONTRACT_STEPS),
        ("Building", BUILDING_STEPS),
        ("Season", SEASON_STEPS),
    )
    for event in steps
}


def may_record(role: Role, event: str) -> bool:
    return role in STEPS[event].roles


def allowed_from(steps: Mapping[str, Step], stage: Any) -> list[str]:
    return [name for name, step in steps.items() if stage in step.from_]


def allowed_now(steps: Mapping[str, Step], aggregate: Any) -> list[str]:
    """The steps `check_step` would accept next on `aggregate`, by some agency with fitting fields: its stage and
    every condition (not in hospital, the trip it was assigned to, ...), asked of the aggregate as it stands."""
    return [
        name
        for name, step in steps.items()
        if aggregate.stage in step.from_ and all(c.could_hold(aggregate) for c in step.conditions)
    ]


# Business time. A step may be reported after a later one of the same journey, or the same trip: port offices sync
# their handheld devices once a shift (up to about 6 hours behind), and a device's clock may be some minutes off.
# Beyond that the report is a late correction, said so with a reason, by the agencies working in the field; before
# registration nothing happens to a journey (nor on the road before a trip's departure: AFTER_DEPARTURE).
LATE_TOLERANCE = timedelta(hours=6)
LATE_REPORTERS = frozenset(
    {Role.GACA, Role.JAWAZAT, Role.CUSTOMS, Role.WUKALA, Role.NAQABA, Role.ROAD_SECURITY, Role.COMPANY, Role.MOH}
)
TIMED = ("Journey", "Trip")  # the kinds whose steps keep business time


def check_time(event: str, aggregate: Any, stamp: Stamp) -> None:
    """Refuse a step that happened before the journey's registration, or more than LATE_TOLERANCE before the
    journey's (or the trip's) latest step, unless it is a late correction by an agency in the field."""
    at = stamp.occurred_at  # spelled out only in a refusal: checked for every step of a journey or a trip
    if type(aggregate).__name__ == "Journey" and at < aggregate.registered_at:
        raise OccurredTooEarlyError(
            f"{at.isoformat()} is before the journey's registration at {aggregate.registered_at.isoformat()}"
        )
    if stamp.late_reason is None and at < aggregate.last_occurred_at - LATE_TOLERANCE:
        kind = type(aggregate).__name__.lower()
        raise OccurredTooEarlyError(
            f"{at.isoformat()} is {aggregate.last_occurred_at - at} before the {kind}'s latest step, at "
            f"{aggregate.last_occurred_at.isoformat()}; a report more than {LATE_TOLERANCE} late is recorded as a "
            "late correction (late_correction: its reason)"
        )


def check_step(steps: Mapping[str, Step], event: str, aggregate: Any, fields: Mapping[str, Any]) -> None:
    """Refuse `event` on `aggregate` unless the role, the stage, every condition and (journeys, trips) the time allow
    it."""
    step = steps[event]
    stamp = _stamp(fields)
    if stamp.role not in step.roles:
        raise PermissionDeniedError(stamp.role, event)
    if stamp.late_reason is not None and stamp.role not in LATE_REPORTERS:
        raise PermissionDeniedError(
            stamp.role, f"{event} as a late correction", "late corrections are for the agencies in the field"
        )
    scope = SCOPES[type(aggregate).__name__].get(stamp.role) if aggregate is not None else None
    if scope is not None and getattr(aggregate, scope[0]) != stamp.agency_id:
        raise PermissionDeniedError(stamp.role, event, scope[1])
    if aggregate is None:
        assert not step.from_, f"{event} needs an existing aggregate"
    elif aggregate.stage not in step.from_:
        raise IllegalStepError(event, aggregate.stage, allowed_now(steps, aggregate))
    for condition in step.conditions:
        if not condition.holds(aggregate, fields):
            if condition.refusal is not None:
                raise condition.refusal(aggregate, fields)
            raise IllegalStepError(
                event,
                aggregate.stage,
                allowed_now(steps, aggregate),
                reason=f"refused: needs {condition.text}",
            )
    if aggregate is not None and type(aggregate).__name__ in TIMED:
        check_time(event, aggregate, stamp)
