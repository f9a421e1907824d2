"""Journeys built step by step for the tests, straight on the aggregates (no store); the command line run in
process; free ports; a view's rows as the API reads them."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy.engine import Connection

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.routes.views import page
from hajj_ledger.cli import main
from hajj_ledger.domain.building import Building
from hajj_ledger.domain.catalogue import PRE_ARRIVAL, STEPS
from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import ConflictError, LedgerError
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.trip import Trip
from hajj_ledger.domain.vocabulary import (
    Actor,
    BuildingStage,
    CancellationReason,
    City,
    ContractStage,
    Direction,
    Mode,
    OfferKind,
    OfferSite,
    OfferStage,
    Port,
    Role,
    Site,
    Stage,
    Stamp,
)
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.projections import PROJECTIONS, projection
from hajj_ledger.projections.runner import Runner

# Starlette's test client names an anyio alias that anyio 4.16 deprecates (at import only); warnings are errors here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "The anyio.abc.BlockingPortal alias is deprecated", DeprecationWarning)
    from fastapi.testclient import TestClient as TestClient

# Ports for the servers tests start: each test process (each xdist worker) takes them from a block of its own, below
# the kernel's range for outgoing connections, so that neither another worker nor a client's ephemeral port takes
# one between the check here and the server binding it.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under xdist
_PORT_BLOCK = 20_000 + 1000 * (int(_WORKER.removeprefix("gw")) + 1 if _WORKER else 0)
_NEXT_PORT = itertools.count(random.randrange(1000))  # two runs without xdist at once start apart


def free_port() -> int:
    for _ in range(1000):
        port = _PORT_BLOCK + next(_NEXT_PORT) % 1000
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_PORT_BLOCK}-{_PORT_BLOCK + 999}")


EXECUTABLE = Path(sys.executable).parent / "hajj-ledger"


def eventually(condition: Callable[[], bool], within: float, what: str = "it") -> float:
    """Seconds until `condition` held; fails after `within`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        time.sleep(0.02)
    return time.monotonic() - started


def ready(base: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether the server at `base` answers `/readyz` with 200; fails, with its log, if its process has ended."""
    assert process.poll() is None, log.read_text()
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serving(env: Mapping[str, str], *logs: Path) -> Iterator[list[str]]:
    """`hajj-ledger serve`, a process for each log (its output), started together: their addresses once each is
    ready; SIGTERM after."""
    servers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for log in logs:
            port = free_port()
            with log.open("w") as output:
                command = [str(EXECUTABLE), "serve", "--port", str(port)]
                process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            servers.append((f"http://127.0.0.1:{port}", process, log))
        for server in servers:
            eventually(partial(ready, *server), 60, f"{server[0]} ready")
        yield [base for base, _, _ in servers]
    finally:
        for _, process, _ in servers:
            process.terminate()
        for _, process, _ in servers:
            process.wait(timeout=20)


@dataclass(frozen=True)
class Ran:
    """What a command said, as `subprocess.run` tells it."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: Mapping[str, str] | None = None, stdin: str = "") -> Ran:
    """`hajj-ledger ARGS` run in this process, as from `.venv/bin/hajj-ledger` but without starting a process (a
    second or more each), `env` set meanwhile. The tests that run it as a process are those about the process."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}  # `project` sets them
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.setattr(sys, "argv", [str(EXECUTABLE), *args])
        patch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as stopped:  # argparse's --help and usage errors
            code = stopped.code if isinstance(stopped.code, int) else int(stopped.code is not None)
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
    return Ran(code, out.getvalue(), err.getvalue())


T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
OPENED_AT = datetime(2024, 1, 1, tzinfo=UTC)  # when the tests' seasons are opened: before anything else
SEASON_OPENING = {"season": 1446, "occurred_at": OPENED_AT.isoformat()}  # `POST /v1/seasons`: 1446, its defaults
MISSION_ID = "mission-IDN-1"
COMPANY_ID = "company-1"
TRIP_ID = UUID("00000000-0000-4000-8000-0000000000aa")
CONTRACT_ID = UUID("00000000-0000-4000-8000-0000000000cc")
BUILDING_ID = UUID("00000000-0000-4000-8000-0000000000bb")
AGENCY = {Role.MISSION: MISSION_ID, Role.COMPANY: COMPANY_ID}


# One pilgrim's identity as a mission gives it (the vault and API tests share it).
NAMES = {
    "name_arabic": "عبد الرحمن بن محمد الأنصاري",
    "name_latin": "ABDULRAHMAN BIN MOHAMMED ALANSARI",
    "passport_number": "P9876543",
    "passport_country": "EGY",
    "nationality": "EGY",
    "date_of_birth": "1958-03-14",
    "gender": "male",
}


def registration(country: str = "EGY", identity: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A new pilgrim of season 1446, registered at T0, as the JSON `POST /v1/journeys` takes."""
    body = {"occurred_at": T0.isoformat(), "pilgrim_id": str(uuid4()), "season": 1446, "country": country, **fields}
    return body if identity is None else {**body, "identity": identity}


def registration_command(country: str = "EGY", **fields: Any) -> dict[str, Any]:
    """The same as a command (`hajj-ledger record`, a batch's item): with its event and a new command id."""
    return {"event": "Registered", "command_id": str(uuid4()), **registration(country, **fields)}


def season_command(season: int = 1446) -> str:
    """The opening of a season with its default calendar, as `hajj-ledger record --role ministry` takes it."""
    return json.dumps({"event": "SeasonOpened", "command_id": str(uuid4()), **SEASON_OPENING, "season": season})


def stamp(role: Role, agency_id: str | None = None, at: datetime = T0) -> Stamp:
    return Stamp(agency_id or AGENCY.get(role, f"{role}-1"), role, at, uuid4())


def actor(role: Role, agency_id: str | None = None) -> Actor:
    return Actor(agency_id or AGENCY.get(role, f"{role}-1"), role)


def register(pilgrim_id: UUID | None = None) -> Journey:
    return Journey.register(stamp(Role.MISSION), pilgrim_id or uuid4(), 1446, "IDN", False)


def _flight_direction(journey: Journey) -> Direction:
    return Direction.ARRIVAL if journey.stage in PRE_ARRIVAL else Direction.DEPARTURE


JED = Port.JED_HAJJ_TERMINAL

# For each journey step: the role that records it, and a call recording it with valid values.
STEP: dict[str, tuple[Role, Callable[[Journey, Stamp], None]]] = {
    "PackageContracted": (Role.MISSION, lambda j, s: j.contract_package(s, COMPANY_ID, "PKG-1", CONTRACT_ID)),
    "VisaRequested": (Role.MISSION, lambda j, s: j.request_visa(s)),
    "VisaIssued": (Role.MOFA, lambda j, s: j.issue_visa(s, T0 + timedelta(days=90))),
    "VisaRejected": (Role.MOFA, lambda j, s: j.reject_visa(s, "documents_incomplete")),
    "VisaRevoked": (Role.MOFA, lambda j, s: j.revoke_visa(s, "security")),
    "FlightBooked": (
        Role.MISSION,
        lambda j, s: j.book_flight(s, _flight_direction(j), "GA901", JED, T0),
    ),
    "ArrivedAtPort": (Role.GACA, lambda j, s: j.arrive_at_port(s, JED, Mode.AIR, "GA901")),
    "EntryCleared": (Role.JAWAZAT, lambda j, s: j.clear_entry(s, JED)),
    "CustomsCleared": (Role.CUSTOMS, lambda j, s: j.clear_customs(s, JED)),
    "ReceivedAtPort": (Role.WUKALA, lambda j, s: j.receive_at_port(s, JED)),
    "BusAssigned": (Role.NAQABA, lambda j, s: j.assign_bus(s, TRIP_ID, Site.MAKKAH)),
    "BusAssignmentCancelled": (
        Role.NAQABA,
        lambda j, s: j.cancel_bus_assignment(s, TRIP_ID, "bus_broken_down"),
    ),
    "Boarded": (Role.NAQABA, lambda j, s: j.board(s, TRIP_ID)),
    "TransferCompleted": (Role.NAQABA, lambda j, s: j.complete_transfer(s, TRIP_ID)),
    "HousingCheckedIn": (Role.COMPANY, lambda j, s: j.check_in_housing(s, Site.MAKKAH, "B-1", BUILDING_ID)),
    "HousingCheckedOut": (Role.COMPANY, lambda j, s: j.check_out_housing(s, Site.MAKKAH, "B-1")),
    "MovedToSite": (Role.COMPANY, lambda j, s: j.move_to_site(s, Site.MINA)),
    "HospitalAdmitted": (Role.MOH, lambda j, s: j.admit_to_hospital(s, "MINA-HOSPITAL")),
    "HospitalDischarged": (Role.MOH, lambda j, s: j.discharge_from_hospital(s, "MINA-HOSPITAL")),
    "ReportedMissing": (Role.COMPANY, lambda j, s: j.report_missing(s)),
    "Found": (Role.COMPANY, lambda j, s: j.record_found(s, Site.MINA)),
    "DeathRecorded": (Role.MOH, lambda j, s: j.record_death(s, "MINA-HOSPITAL")),
    "Cancelled": (Role.MISSION, lambda j, s: j.cancel(s, CancellationReason.WITHDRAWN)),
    "ExitCleared": (Role.JAWAZAT, lambda j, s: j.clear_exit(s, JED)),
    "Departed": (Role.GACA, lambda j, s: j.depart(s, JED, "GA902")),
    "IdentityRecorded": (Role.MISSION, lambda j, s: j.record_identity(s, "0f" * 16)),
    "IdentityCorrected": (Role.MISSION, lambda j, s: j.correct_identity(s, "1e" * 16)),
    "IdentityErased": (Role.MISSION, lambda j, s: j.erase_identity(s, "retention")),
    "LegalHoldPlaced": (Role.JAWAZAT, lambda j, s: j.place_legal_hold(s, "overstay_investigation")),
    "LegalHoldLifted": (Role.JAWAZAT, lambda j, s: j.lift_legal_hold(s, "overstay_investigation")),
}


JOURNEY_ID = UUID("00000000-0000-4000-8000-0000000000dd")  # the journey holding a place or a bed below

# The same for each step of an offer, a contract and a building (those recorded by a command of their own, and
# those the ledger records with a journey's or a contract's step).
MARKET_STEP: dict[str, tuple[Role, Callable[[Any, Stamp], None]]] = {
    "OfferAmended": (Role.COMPANY, lambda o, s: o.amend(s, None, 9500, None, None)),
    "OfferWithdrawn": (Role.COMPANY, lambda o, s: o.withdraw(s, "no_demand")),
    "ContractNoted": (Role.MISSION, lambda o, s: o.note_contract(s, CONTRACT_ID)),
    "PlacesReserved": (Role.COMPANY, lambda o, s: o.reserve_places(s, CONTRACT_ID, 1)),
    "PlacesReleased": (Role.COMPANY, lambda o, s: o.release_places(s, CONTRACT_ID, 1)),
    "ContractSigned": (Role.COMPANY, lambda c, s: c.sign(s)),
    "ContractAmended": (Role.MISSION, lambda c, s: c.amend(s, 3)),
    "ContractTerminated": (Role.MISSION, lambda c, s: c.terminate(s, "withdrawn")),
    "PlaceTaken": (Role.MISSION, lambda c, s: c.take_place(s, JOURNEY_ID)),
    "PlaceFreed": (Role.MISSION, lambda c, s: c.free_place(s, JOURNEY_ID)),
    "LicenceSuspended": (Role.AMANAH, lambda b, s: b.suspend_licence(s, "fire_risk")),
    "LicenceRenewed": (Role.AMANAH, lambda b, s: b.renew_licence(s, T0 + timedelta(days=400))),
    "InspectionPassed": (Role.CIVIL_DEFENCE, lambda b, s: b.pass_inspection(s, "compliant")),
    "InspectionFailed": (Role.CIVIL_DEFENCE, lambda b, s: b.fail_inspection(s, "alarms_faulty")),
    "BedTaken": (Role.COMPANY, lambda b, s: b.take_bed(s, JOURNEY_ID)),
    "BedFreed": (Role.COMPANY, lambda b, s: b.free_bed(s, JOURNEY_ID)),
}
# What a step needs recorded first, beyond its stage: a contract noted before its places are reserved, ...
BEFORE: dict[str, list[str]] = {
    "PlacesReserved": ["ContractNoted"],
    "PlacesReleased": ["ContractNoted", "PlacesReserved"],
    "PlaceFreed": ["PlaceTaken"],
    "BedTaken": ["InspectionPassed"],
    "BedFreed": ["InspectionPassed", "BedTaken"],
}


def record(aggregate: Any, event: str, role: Role | None = None, agency_id: str | None = None) -> None:
    default_role, call = STEP[event] if event in STEP else MARKET_STEP[event]
    call(aggregate, stamp(role or default_role, agency_id))


# How to reach each stage from a new journey: the main road, and the side roads.
PATH_TO: dict[Stage, list[str]] = {
    Stage.REGISTERED: [],
    Stage.CONTRACTED: ["PackageContracted"],
    Stage.VISA_REQUESTED: ["PackageContracted", "VisaRequested"],
    Stage.VISA_ISSUED: ["PackageContracted", "VisaRequested", "VisaIssued"],
    Stage.VISA_REJECTED: ["PackageContracted", "VisaRequested", "VisaRejected"],
    Stage.VISA_REVOKED: ["PackageContracted", "VisaRequested", "VisaIssued", "VisaRevoked"],
}
_ARRIVAL = ["PackageContracted", "VisaRequested", "VisaIssued", "ArrivedAtPort"]
PATH_TO[Stage.ARRIVED] = _ARRIVAL
PATH_TO[Stage.ENTRY_CLEARED] = [*_ARRIVAL, "EntryCleared"]
PATH_TO[Stage.CUSTOMS_CLEARED] = [*PATH_TO[Stage.ENTRY_CLEARED], "CustomsCleared"]
PATH_TO[Stage.RECEIVED] = [*PATH_TO[Stage.CUSTOMS_CLEARED], "ReceivedAtPort"]
PATH_TO[Stage.BUS_ASSIGNED] = [*PATH_TO[Stage.RECEIVED], "BusAssigned"]
PATH_TO[Stage.BOARDED] = [*PATH_TO[Stage.BUS_ASSIGNED], "Boarded"]
PATH_TO[Stage.TRANSFERRED] = [*PATH_TO[Stage.BOARDED], "TransferCompleted"]
PATH_TO[Stage.HOUSED] = [*PATH_TO[Stage.TRANSFERRED], "HousingCheckedIn"]
PATH_TO[Stage.CHECKED_OUT] = [*PATH_TO[Stage.HOUSED], "HousingCheckedOut"]
PATH_TO[Stage.AT_SITE] = [*PATH_TO[Stage.CHECKED_OUT], "MovedToSite"]
PATH_TO[Stage.EXIT_CLEARED] = [*PATH_TO[Stage.AT_SITE], "ExitCleared"]
PATH_TO[Stage.DEPARTED] = [*PATH_TO[Stage.EXIT_CLEARED], "Departed"]
PATH_TO[Stage.CANCELLED] = ["PackageContracted", "Cancelled"]
PATH_TO[Stage.DECEASED] = [*_ARRIVAL, "DeathRecorded"]


def journey_at(stage: Stage, *, identity: bool = False) -> Journey:
    journey = register()
    if identity:
        record(journey, "IdentityRecorded")
    for event in PATH_TO[stage]:
        record(journey, event)
    assert journey.stage == stage
    return journey


def offer(places: int = 10) -> ServiceOffer:
    return ServiceOffer.publish(
        stamp(Role.COMPANY), uuid4(), 1446, OfferKind.MAKKAH_HOUSING, OfferSite.MAKKAH, places, 9000, OFFER_OPENS,
        OFFER_CLOSES, (BUILDING_ID,),
    )  # fmt: skip


def contract(places: int = 2) -> Contract:
    return Contract.propose(stamp(Role.MISSION), uuid4(), offer(), places)


def building(beds: int = 2) -> Building:
    return Building.license(
        stamp(Role.AMANAH), uuid4(), COMPANY_ID, City.MAKKAH, "Aziziyah", beds, T0 + timedelta(days=365)
    )


# How to reach each stage of an offer, a contract and a building: a new one, and the steps after.
MARKET_PATH_TO: dict[Any, tuple[Callable[[], Any], list[str]]] = {
    OfferStage.PUBLISHED: (offer, []),
    OfferStage.WITHDRAWN: (offer, ["OfferWithdrawn"]),
    ContractStage.PROPOSED: (contract, []),
    ContractStage.SIGNED: (contract, ["ContractSigned"]),
    ContractStage.TERMINATED: (contract, ["ContractTerminated"]),
    BuildingStage.LICENSED: (building, []),
    BuildingStage.SUSPENDED: (building, ["LicenceSuspended"]),
}


def market_at(stage: Any, event: str | None = None) -> Any:
    """An offer, a contract or a building at `stage`, with what `event` needs recorded first wherever on the way
    there it may be."""
    try:
        return _built(stage, BEFORE.get(event or "", []), early=True)
    except LedgerError:  # what it needs would bar the way there (a contract keeps an offer from withdrawal)
        return _built(stage, BEFORE.get(event or "", []), early=False)


def _built(stage: Any, before: list[str], *, early: bool) -> Any:
    new, path = MARKET_PATH_TO[stage]
    aggregate = new()
    needed = list(before)
    for step in [*path, None]:
        while needed and (early or step is None) and aggregate.stage in STEPS[needed[0]].from_:
            record(aggregate, needed.pop(0))
        if step is not None:
            record(aggregate, step)
    return aggregate


def trip(capacity: int = 49) -> Trip:
    return Trip.schedule(stamp(Role.NAQABA), uuid4(), "SAPTCO", "KSA-1", JED, Site.MAKKAH, T0, capacity)


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value) if isinstance(value, UUID) else value


def as_json(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as a JSON body carries them: times as ISO 8601, ids as text, also in lists."""
    return {k: [_json(v) for v in value] if isinstance(value, list | tuple) else _json(value)
            for k, value in fields.items()}  # fmt: skip


def command(event: str, **fields: Any) -> Command:
    """A parsed command with a fresh id and a past occurred_at, unless given."""
    data: dict[str, Any] = {
        "event": event,
        "command_id": str(uuid4()),
        "occurred_at": T0.isoformat(),
    }
    data.update(as_json(fields))
    return parse_command(data)


@dataclass(frozen=True)
class Market:
    """A licensed, inspected building of the company, its Makkah housing offer, and the mission's signed contract."""

    building_id: UUID
    offer_id: UUID
    contract_id: UUID


OFFER_OPENS = T0 - timedelta(days=200)
OFFER_CLOSES = T0 + timedelta(days=100)


def offer_fields(places: int, building_ids: list[UUID], **fields: Any) -> dict[str, Any]:
    """A Makkah housing offer of season 1446, valid around T0."""
    return {
        "season": 1446, "kind": "makkah_housing", "site": "makkah", "places": places, "price_sar": 9000,
        "valid_from": OFFER_OPENS, "valid_until": OFFER_CLOSES, "building_ids": building_ids, **fields,
    }  # fmt: skip


def building_fields(beds: int, **fields: Any) -> dict[str, Any]:
    return {"company_id": COMPANY_ID, "city": "makkah", "district": "Aziziyah", "beds": beds,
            "licence_valid_until": T0 + timedelta(days=365), **fields}  # fmt: skip


def open_market(
    ledger: JourneyLedger,
    places: int = 50,
    beds: int = 50,
    *,
    mission: str = MISSION_ID,
    company: str = COMPANY_ID,
    signed: bool = True,
) -> Market:
    """Recorded through the ledger, each step by its role: a building licensed and inspected, an offer of `places`
    naming it, a contract of the mission for all of them, signed unless asked not to be."""

    def one(role: Role, event: str, agency_id: str | None = None, **fields: Any) -> UUID:
        return ledger.record(command(event, **fields), actor(role, agency_id)).aggregate_id

    building = one(Role.AMANAH, "BuildingLicensed", **building_fields(beds, company_id=company))
    one(Role.CIVIL_DEFENCE, "InspectionPassed", building_id=building, findings="compliant")
    offer = one(Role.COMPANY, "OfferPublished", company, **offer_fields(places, [building]))
    contract = one(Role.MISSION, "ContractProposed", mission, offer_id=offer, places=places)
    if signed:
        one(Role.COMPANY, "ContractSigned", company, contract_id=contract)
    return Market(building, offer, contract)


def market_in(url: str, places: int = 50, *, mission: str = MISSION_ID, company: str = COMPANY_ID) -> Market:
    """A market opened in the store at `url`, as another node of the deployment would (the servers' write caches
    learn of it from the log's tail)."""
    ledger = JourneyLedger(url, create_tables=False)
    try:
        return open_market(ledger, places, places, mission=mission, company=company)
    finally:
        ledger.close()


def contract_journeys(ledger: JourneyLedger, journeys: list[UUID], contract_id: UUID) -> None:
    results = ledger.record_batch(
        [(command("PackageContracted", journey_id=j, contract_id=contract_id), actor(Role.MISSION)) for j in journeys]
    )
    assert all(isinstance(r, Outcome) for r in results), results


def arrive_and_clear(ledger: JourneyLedger, count: int, market: Market | None = None) -> list[UUID]:
    """`count` journeys registered and taken through the ledger up to `received` at the port, under the market's
    contract (a new one with as many places, when not given)."""
    journeys = registered(ledger, count)
    contract_journeys(ledger, journeys, (market or open_market(ledger, count, count)).contract_id)
    steps: list[tuple[Role, str, dict[str, Any]]] = [
        (Role.MISSION, "VisaRequested", {}),
        (Role.MOFA, "VisaIssued", {"valid_until": T0 + timedelta(days=90)}),
        (Role.GACA, "ArrivedAtPort", {"port": JED, "mode": Mode.AIR, "flight": "GA901"}),
        (Role.JAWAZAT, "EntryCleared", {"port": JED}),
        (Role.CUSTOMS, "CustomsCleared", {"port": JED}),
        (Role.WUKALA, "ReceivedAtPort", {"port": JED}),
    ]
    for role, event, fields in steps:
        results = ledger.record_batch([(command(event, journey_id=j, **fields), actor(role)) for j in journeys])
        assert all(isinstance(r, Outcome) for r in results), results
    return journeys


def open_season(ledger: JourneyLedger, season: int = 1446, **calendar: Any) -> None:
    """The season opened by the ministry, with its calendar (the defaults, unless days are given); once: a season
    opened already is left as it is."""
    with suppress(ConflictError):
        ledger.record(command("SeasonOpened", season=season, occurred_at=OPENED_AT, **calendar), actor(Role.MINISTRY))


def season_opened(url: str, season: int = 1446) -> str:
    """The store at `url` with the season opened in it, as the ministry would before any registration (by a node
    of its own: the servers' write caches learn of it from the log)."""
    ledger = JourneyLedger(url)
    try:
        open_season(ledger, season)
    finally:
        ledger.close()
    return url


def _registered(ledger: JourneyLedger, pilgrims: list[UUID]) -> list[UUID]:
    open_season(ledger)  # a registration needs its season open
    results = ledger.record_batch(
        [(command("Registered", pilgrim_id=p, season=1446, country="IDN"), actor(Role.MISSION)) for p in pilgrims]
    )
    assert all(isinstance(r, Outcome) for r in results), results
    return pilgrims


def registered(ledger: JourneyLedger, count: int) -> list[UUID]:
    """`count` journeys of new pilgrims of season 1446, registered by the mission: their ids."""
    return [Journey.create_id(1446, pilgrim) for pilgrim in _registered(ledger, [uuid4() for _ in range(count)])]


def schedule_trip(ledger: JourneyLedger, capacity: int = 49) -> UUID:
    outcome = ledger.record(
        command(
            "TripScheduled",
            operator="SAPTCO",
            bus_plate="KSA-1",
            origin="JED-HAJJ",
            destination="makkah",
            departs_at=T0,
            capacity=capacity,
        ),
        actor(Role.NAQABA),
    )
    return outcome.aggregate_id


def ride(ledger: JourneyLedger, journeys: list[UUID], trip_id: UUID) -> None:
    """The journeys taken by bus on the trip, as in life: each assigned a seat and boarded, the bus departed, each
    transfer completed."""
    for event in ("BusAssigned", "Boarded", "TripDeparted", "TransferCompleted"):
        commands = (
            [command(event, trip_id=trip_id)]
            if event == "TripDeparted"
            else [command(event, journey_id=j, trip_id=trip_id) for j in journeys]
        )
        results = ledger.record_batch([(c, actor(Role.NAQABA)) for c in commands])
        assert all(isinstance(r, Outcome) for r in results), results


def project(url: str) -> None:
    """The views caught up with the log, as `hajj-ledger project --once` does."""
    runner = Runner(PROJECTIONS, url)
    try:
        runner.run(once=True)
    finally:
        runner.close()


MINISTRY = Agency("ministry", "the ministry", Role.MINISTRY)  # reads every view, unscoped


def view_rows(connection: Connection, name: str, *, page_size: int = 1000, **filters: Any) -> list[dict[str, Any]]:
    """Every row of a view (`filters`: only those with these column values), in key order, as the ministry reads it
    through the API: the views' own page query, page after page."""
    model = projection(name).models[0]
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        found, cursor = page(connection, model, MINISTRY, filters, cursor, page_size)
        rows += found
        if cursor is None:
            return rows
