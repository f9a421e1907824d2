"""One handler per command, registered by the command's type (`HANDLERS`), as a message bus registers them.

A handler loads what its command needs from the unit of work, checks every step the command records against the
catalogue (`domain/catalogue.py`, each rule once, with the other aggregates its rules read), and only then records
them: a refused command changes nothing. The rules that span aggregates (a contract's place, a bed, a seat, the
season's calendar) are the handlers'; a step's own rules are the catalogue's.

A command with no handler of its own records its one step on its one aggregate (`_plain`): a new step needs its
event, its catalogue row and its command, and no handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import JOURNEY_STEPS, check_season, check_step
from hajj_ledger.domain.command_base import (
    BuildingCommand,
    CommandBase,
    ContractCommand,
    JourneyCommand,
    OfferCommand,
    SeasonCommand,
    TripCommand,
)
from hajj_ledger.domain.commands import (
    COMMANDS,
    AmendContract,
    AmendOffer,
    ArriveAtPort,
    AssignBus,
    Board,
    Cancel,
    CancelBusAssignment,
    CheckInHousing,
    CheckOutHousing,
    Command,
    CompleteTransfer,
    ContractPackage,
    CorrectIdentity,
    EraseIdentity,
    LicenseBuilding,
    ProposeContract,
    PublishOffer,
    RecordIdentity,
    Register,
    ScheduleTrip,
    SignContract,
    TerminateContract,
)
from hajj_ledger.domain.errors import ConflictError, DuplicateRegistrationError, ValidationError
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.season import Calendar, Season
from hajj_ledger.domain.season_commands import EraseSeasonIdentities, OpenSeason
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import ENDED, Stamp
from hajj_ledger.unit_of_work import UnitOfWork

Decide = Callable[[Any, Stamp, UnitOfWork], list[Aggregate]]
Ids = Callable[[Any], tuple[UUID, ...]]


@dataclass(frozen=True)
class Handler:
    decide: Decide  # runs the command on the unit's aggregates: those it changed, its subject first
    reads: Ids  # the aggregates it reads first, loaded with the batch's; what they lead to is loaded when reached
    creates: Ids  # the one it creates, if any


HANDLERS: dict[type[CommandBase], Handler] = {}


def _nothing(command: Any) -> tuple[UUID, ...]:
    return ()


def handles(*kinds: type[CommandBase], reads: Ids = _nothing, creates: Ids = _nothing) -> Callable[[Decide], Decide]:
    def register(decide: Decide) -> Decide:
        for kind in kinds:
            HANDLERS[kind] = Handler(decide, reads, creates)
        return decide

    return register


def decide(command: Command, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Run one command on the unit's aggregates; returns those it changed, its subject first."""
    if isinstance(command, JourneyCommand):
        _in_open_season(command.event, command.journey_id, unit)
    return HANDLERS[type(command)].decide(command, stamp, unit)


def subjects(command: Command, creations: bool) -> tuple[UUID, ...]:
    """The aggregates a command reads first and, if asked, the one it creates."""
    handler = HANDLERS[type(command)]
    return (*handler.reads(command), *handler.creates(command)) if creations else handler.reads(command)


# Checking and recording a step.


def step(
    aggregate: Aggregate,
    event: type[RecordedEvent],
    stamp: Stamp,
    context: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Callable[[], None]:
    """Check `event` on `aggregate` against the catalogue now (with `context`: the other aggregates its rules read),
    and return the change, to be made once every step of the command has been checked."""
    check_step(event.steps, event.__name__, aggregate, {"stamp": stamp, **fields, **(context or {})})
    # The library's trigger, not the aggregate's own (which checks the step again, for callers that did not).
    return partial(Aggregate.trigger_event, aggregate, event, stamp=stamp, **fields)


def _in_open_season(event: str, journey_id: UUID, unit: UnitOfWork) -> None:
    """Every step of a journey is refused once its season is closing or later."""
    journey = unit.get(journey_id, Journey)
    check_season(event, journey.season, unit.find(Season.create_id(journey.season), Season))


# A command with no handler of its own: one step on the aggregate it names.

TARGETS: dict[type[CommandBase], tuple[type[Aggregate], Callable[[Any], UUID]]] = {
    JourneyCommand: (Journey, lambda c: c.journey_id),
    TripCommand: (Trip, lambda c: c.trip_id),
    OfferCommand: (ServiceOffer, lambda c: c.offer_id),
    ContractCommand: (Contract, lambda c: c.contract_id),
    BuildingCommand: (Building, lambda c: c.building_id),
    SeasonCommand: (Season, lambda c: Season.create_id(c.season)),
}
# Each targeted command's aggregate and event class, found once (by the name of the event the command records).
TARGET_OF = {kind: target for kind in COMMANDS.values() for base, target in TARGETS.items() if issubclass(kind, base)}
EVENTS: dict[type[CommandBase], type[RecordedEvent]] = {
    kind: getattr(TARGET_OF[kind][0], event) for event, kind in COMMANDS.items() if kind in TARGET_OF
}


def _target(command: CommandBase) -> tuple[UUID, ...]:
    return (TARGET_OF[type(command)][1](command),)


def _plain(command: Any, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    aggregate_kind, target = TARGET_OF[type(command)]
    aggregate = unit.get(target(command), cast(Any, aggregate_kind))
    step(aggregate, EVENTS[type(command)], stamp, **command.arguments())()
    return [aggregate]


# Journeys.


@handles(Register, creates=lambda c: (Journey.create_id(c.season, c.pilgrim_id),))
def register(command: Register, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    journey_id = Journey.create_id(command.season, command.pilgrim_id)
    if unit.exists(journey_id):
        raise DuplicateRegistrationError(
            f"pilgrim {command.pilgrim_id} already has a journey in season {command.season}: {journey_id}"
        )
    calendar = unit.find(Season.create_id(command.season), Season)
    arguments = command.arguments()
    del arguments["identity"]
    # Sealed first (ahead, for the whole batch): without a master key the command is refused before anything has
    # changed. The Registered event itself says the identity was given (its digest): one event, as it is one act.
    sealed = None if command.identity is None else unit.seal(command, journey_id, stamp.agency_id)
    digest = None if sealed is None else sealed.fingerprint
    journey = unit.add(Journey.register(stamp, **arguments, identity_digest=digest, calendar=calendar))
    if sealed is not None:
        unit.vault.append((journey.id, sealed))
    return [journey]


@handles(ArriveAtPort, reads=lambda c: (c.journey_id,))
def arrive_at_port(command: ArriveAtPort, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Within its season's arrivals window."""
    journey = unit.get(command.journey_id, Journey)
    calendar = unit.find(Season.create_id(journey.season), Season)
    step(journey, Journey.ArrivedAtPort, stamp, {"calendar": calendar}, **command.arguments())()
    return [journey]


@handles(ContractPackage, reads=lambda c: (c.journey_id, c.contract_id))
def contract_package(command: ContractPackage, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """A place taken on the contract."""
    journey, contract = unit.get(command.journey_id, Journey), unit.get(command.contract_id, Contract)
    fields = {"company_id": contract.company_id, "package_id": command.package_id, "contract_id": contract.id}
    contracted = step(journey, Journey.PackageContracted, stamp, {"contract": contract}, **fields)
    step(contract, Contract.PlaceTaken, stamp, journey_id=journey.id)()
    contracted()
    return [journey, contract]


@handles(CheckInHousing, reads=lambda c: (c.journey_id, c.building_id))
def check_in_housing(command: CheckInHousing, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """A bed taken in a building the contract's offer names, unless the journey comes back to its own."""
    journey, building = unit.get(command.journey_id, Journey), unit.get(command.building_id, Building)
    context = {"offer": _offer_of(journey, unit), "house": building}
    checked_in = step(journey, Journey.HousingCheckedIn, stamp, context, **command.arguments())
    returning = journey.building_id == building.id  # back from the holy sites to its own bed
    if not returning:
        step(building, Building.BedTaken, stamp, journey_id=journey.id)()
    checked_in()
    return [journey] if returning else [journey, building]


def _offer_of(journey: Journey, unit: UnitOfWork) -> ServiceOffer | None:
    """The offer the journey is contracted under (None before contracts)."""
    if journey.contract_id is None:
        return None
    return unit.get(unit.get(journey.contract_id, Contract).offer_id, ServiceOffer)


@handles(AssignBus, reads=lambda c: (c.journey_id, c.trip_id))
def assign_bus(command: AssignBus, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """A seat reserved on the trip."""
    journey, trip = unit.get(command.journey_id, Journey), unit.get(command.trip_id, Trip)
    assigned = step(journey, Journey.BusAssigned, stamp, trip_id=trip.id, destination=trip.destination)
    step(trip, Trip.SeatReserved, stamp, journey_id=journey.id)()
    assigned()
    return [journey, trip]


@handles(CancelBusAssignment, reads=lambda c: (c.journey_id, c.trip_id))
def cancel_bus_assignment(command: CancelBusAssignment, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """The seat released."""
    journey, trip = unit.get(command.journey_id, Journey), unit.get(command.trip_id, Trip)
    cancelled = step(journey, Journey.BusAssignmentCancelled, stamp, **command.arguments())
    released = step(trip, Trip.SeatReleased, stamp, journey_id=journey.id)
    cancelled()
    released()
    return [journey, trip]


@handles(Board, CompleteTransfer, reads=lambda c: (c.journey_id, c.trip_id))
def ride(command: Board | CompleteTransfer, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Checked against the trip the journey was assigned to (whether it has left), which does not change."""
    journey = unit.get(command.journey_id, Journey)
    context = {} if journey.trip_id is None else {"trip": unit.get(journey.trip_id, Trip)}
    step(journey, EVENTS[type(command)], stamp, context, **command.arguments())()
    return [journey]


# The steps that end a journey, as the catalogue says, free what it held with it.
ENDING = [
    kind for kind, event in EVENTS.items() if event.steps is JOURNEY_STEPS and JOURNEY_STEPS[event.__name__].to in ENDED
]


@handles(CheckOutHousing, *ENDING, reads=lambda c: (c.journey_id,))
def leave(command: JourneyCommand, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """A bed freed at check-out or the journey's end; a contract's place freed when it is cancelled."""
    journey = unit.get(command.journey_id, Journey)
    held: list[Aggregate] = []
    changes = [step(journey, EVENTS[type(command)], stamp, **command.arguments())]
    if journey.building_id is not None:
        held.append(building := unit.get(journey.building_id, Building))
        changes.append(step(building, Building.BedFreed, stamp, journey_id=journey.id))
    if journey.contract_id is not None and isinstance(command, Cancel):
        held.append(contract := unit.get(journey.contract_id, Contract))
        changes.append(step(contract, Contract.PlaceFreed, stamp, journey_id=journey.id))
    for change in changes:
        change()
    return [journey, *held]


@handles(RecordIdentity, CorrectIdentity, reads=lambda c: (c.journey_id,))
def keep_identity(command: RecordIdentity | CorrectIdentity, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """The identity sealed into the vault, once the step is allowed; the event keeps its digest."""
    journey, event = unit.get(command.journey_id, Journey), EVENTS[type(command)]
    check_step(JOURNEY_STEPS, event.__name__, journey, {"stamp": stamp})
    sealed = unit.source.keys.seal(journey.id, command.identity, scope=journey.mission_id)
    Aggregate.trigger_event(journey, event, stamp=stamp, ciphertext_digest=sealed.fingerprint)
    unit.vault.append((journey.id, sealed))
    return [journey]


@handles(EraseIdentity, reads=lambda c: (c.journey_id,))
def erase_identity(command: EraseIdentity, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    journey = unit.get(command.journey_id, Journey)
    step(journey, Journey.IdentityErased, stamp, reason=command.reason)()
    unit.vault.append((journey.id, None))
    return [journey]


# What a command creates, named by the caller or derived from its command id: the field and the namespace.
TRIP_NAMESPACE = uuid5(NAMESPACE_URL, "https://hajj-ledger.example/trip")
CREATED: dict[type[CommandBase], tuple[str, UUID]] = {
    ScheduleTrip: ("trip_id", TRIP_NAMESPACE),
    PublishOffer: ("offer_id", uuid5(NAMESPACE_URL, "https://hajj-ledger.example/offer")),
    ProposeContract: ("contract_id", uuid5(NAMESPACE_URL, "https://hajj-ledger.example/contract")),
    LicenseBuilding: ("building_id", uuid5(NAMESPACE_URL, "https://hajj-ledger.example/building")),
}
Creating = ScheduleTrip | PublishOffer | ProposeContract | LicenseBuilding


def created_id(command: Creating) -> UUID:
    name, namespace = CREATED[type(command)]
    given: UUID | None = getattr(command, name)
    return given or uuid5(namespace, command.command_id.hex)


def _creates(command: Creating) -> tuple[UUID, ...]:
    return (created_id(command),)


def _new_id(command: Creating, unit: UnitOfWork) -> UUID:
    created = created_id(command)
    if unit.exists(created):
        raise ConflictError(f"{CREATED[type(command)][0].removesuffix('_id')} {created} already exists")
    return created


@handles(ScheduleTrip, creates=_creates)
def schedule_trip(command: ScheduleTrip, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    return [unit.add(Trip.schedule(stamp, **{**command.arguments(), "trip_id": _new_id(command, unit)}))]


@handles(LicenseBuilding, creates=_creates)
def license_building(command: LicenseBuilding, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    return [unit.add(Building.license(stamp, **{**command.arguments(), "building_id": _new_id(command, unit)}))]


# The market.


@handles(PublishOffer, reads=lambda c: c.building_ids, creates=_creates)
def publish_offer(command: PublishOffer, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Its buildings operated by its company."""
    arguments = {**command.arguments(), "offer_id": _new_id(command, unit)}
    buildings = [unit.get(b, Building) for b in command.building_ids]
    return [unit.add(ServiceOffer.publish(stamp, **arguments, buildings=buildings))]


@handles(AmendOffer, reads=lambda c: (c.offer_id, *(c.building_ids or ())))
def amend_offer(command: AmendOffer, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Its buildings operated by its company."""
    offer = unit.get(command.offer_id, ServiceOffer)
    buildings = [unit.get(b, Building) for b in command.building_ids or ()]
    step(offer, ServiceOffer.OfferAmended, stamp, {"buildings": buildings}, **command.arguments())()
    return [offer]


@handles(ProposeContract, reads=lambda c: (c.offer_id,), creates=_creates)
def propose_contract(command: ProposeContract, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Noted on its offer."""
    offer = unit.get(command.offer_id, ServiceOffer)
    contract_id = _new_id(command, unit)
    noted = step(offer, ServiceOffer.ContractNoted, stamp, contract_id=contract_id)
    contract = unit.add(Contract.propose(stamp, contract_id, offer, command.places))
    noted()
    return [contract, offer]


def _contract(command: ContractCommand) -> tuple[UUID, ...]:
    return (command.contract_id,)


@handles(SignContract, reads=_contract)
def sign_contract(command: SignContract, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """The offer reserves the contract's places."""
    contract, offer = _with_offer(command, unit)
    signed = step(contract, Contract.ContractSigned, stamp)
    step(offer, ServiceOffer.PlacesReserved, stamp, contract_id=contract.id, places=contract.places)()
    signed()
    return [contract, offer]


@handles(AmendContract, reads=_contract)
def amend_contract(command: AmendContract, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """The offer reserves or releases the difference."""
    contract, offer = _with_offer(command, unit)
    amended = step(contract, Contract.ContractAmended, stamp, places=command.places)
    change = command.places - contract.places
    if change > 0:
        step(offer, ServiceOffer.PlacesReserved, stamp, contract_id=contract.id, places=change)()
    elif change < 0:
        step(offer, ServiceOffer.PlacesReleased, stamp, contract_id=contract.id, places=-change)()
    amended()
    return [contract, offer]


@handles(TerminateContract, reads=_contract)
def terminate_contract(command: TerminateContract, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """The offer releases every place the contract held."""
    contract, offer = _with_offer(command, unit)
    terminated = step(contract, Contract.ContractTerminated, stamp, reason=command.reason)
    held = offer.reserved.get(contract.id, 0)
    step(offer, ServiceOffer.PlacesReleased, stamp, contract_id=contract.id, places=held)()
    terminated()
    return [contract, offer]


def _with_offer(command: ContractCommand, unit: UnitOfWork) -> tuple[Contract, ServiceOffer]:
    contract = unit.get(command.contract_id, Contract)
    return contract, unit.get(contract.offer_id, ServiceOffer)


# Seasons.


@handles(OpenSeason, creates=lambda c: (Season.create_id(c.season),))
def open_season(command: OpenSeason, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    arguments = command.arguments()
    season = arguments.pop("season")
    if unit.exists(Season.create_id(season)):
        raise ConflictError(f"season {season} was opened already")
    return [unit.add(Season.open(stamp, season, Calendar.of(season, **arguments)))]


@handles(EraseSeasonIdentities, reads=lambda c: (Season.create_id(c.season),))
def erase_season_identities(command: EraseSeasonIdentities, stamp: Stamp, unit: UnitOfWork) -> list[Aggregate]:
    """Only of journeys no longer in the hot store (there, erasure is the journey's own IdentityErased)."""
    season = unit.get(Season.create_id(command.season), Season)
    journey_ids = [str(j) for j in command.journey_ids]
    erased = step(season, Season.SeasonIdentitiesErased, stamp, journey_ids=journey_ids, reason=command.reason)
    if live := sorted(map(str, unit.in_store(command.journey_ids))):
        raise ValidationError("journey_ids", f"in the hot store, not archived: {', '.join(live[:5])}")
    erased()
    unit.vault.extend((journey_id, None) for journey_id in command.journey_ids)
    return [season]


for _kind in EVENTS:
    HANDLERS.setdefault(_kind, Handler(_plain, _target, _nothing))
assert set(HANDLERS) == set(COMMANDS.values()), "a command without a handler"
