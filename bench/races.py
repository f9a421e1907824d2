"""The contract race and the bed race (issue 16) under 64 concurrent HTTP clients: `bench/run.py --only races`.

- **Contract race**: 64 proposed contracts of 64 missions, one place each, on a Mashaer camp offer whose places are
  all taken but the last N by an earlier contract; the company signs all 64 at once, each signature from a client
  of its own. Exactly N are signed; the others are refused 409 naming the offer's free places and those asked.
- **Bed race**: 64 pilgrims transferred to Makkah under a contract of a housing offer naming one building, whose
  beds are all taken but the last M; the company checks all 64 in at once. Exactly M are housed; the others are
  refused 409 naming the beds taken of the building's beds.

Each race runs against one `hajj-ledger serve` (2 uvicorn workers: two write caches already), then against two
`serve` nodes on the same database (1 worker each, the second `--api-only`), the clients spread over them
round-robin, so that the race is decided across processes by the store's keys and the ledger's re-runs. A batch
that still conflicts after its last attempt is refused `409 conflict` (a give-up): counted as a refusal and
reported on its own. Clients are plain asyncio sockets with keep-alive in this process (as in bench/http_load.py),
connected and warmed before the race, released together; the time is from the release to the last answer. After
the servers stop, the views are brought to the head and read: no offer, contract or building over its capacity.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson

from bench.harness import CLI, Sizes, now, repeat, summarise
from bench.http_load import LENGTH, request
from bench.season import open_season_now
from bench.servers import Server, free_port, servers

SEASON, COUNTRY, PORT = 1446, "IDN", "JED-HAJJ"
EARLIER = 100  # places of the offer, and beds of the building, taken before the race
# What a refusal names: the offer's free places of its places and those asked; the beds taken of the beds.
NAMED = {
    "contract": re.compile(r"has (\d+) free places of (\d+) \((\d+) contracted\): (\d+) asked"),
    "bed": re.compile(r"is full: (\d+) of (\d+) beds taken"),
}
FULL = {"contract": "offer-full", "bed": "building-full"}


@dataclass(frozen=True)
class Race:
    kind: str  # contract | bed
    room: int  # places or beds left: the winners there must be
    aggregate: UUID  # the offer or the building raced for
    requests: list[tuple[str, dict[str, Any]]]  # one per client: path and body


def prepare(url: str, racers: int, places: int, beds: int) -> tuple[str, dict[int, list[Race]]]:
    """Migrate, add the racing company's key, and set up both races twice (for one node, for two nodes) through the
    ledger in process: nothing here is timed."""
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.parsing import parse_command
    from hajj_ledger.domain.vocabulary import Actor, Role
    from hajj_ledger.ledger import JourneyLedger, Outcome
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    company = Actor("company-race-00001", Role.COMPANY)
    engine = engine_for(url)
    upgrade(engine)
    with engine.begin() as connection:
        key = agencies.add(connection, Role.COMPANY, "racing company", company.agency_id)[1]
    engine.dispose()
    now = datetime.now(UTC) - timedelta(minutes=1)
    missions = [Actor(f"mission-{COUNTRY}-{n:05d}", Role.MISSION) for n in range(racers + 1)]
    ledger = JourneyLedger(url)
    open_season_now(ledger, SEASON)

    def record(*wave: tuple[Actor, str, dict[str, Any]]) -> list[UUID]:
        commands = [
            (parse_command({"event": e, "command_id": uuid4(), "occurred_at": now, **f}), a) for a, e, f in wave
        ]
        ids = []
        for start in range(0, len(commands), 1000):
            for result in ledger.record_batch(commands[start : start + 1000]):
                if not isinstance(result, Outcome):
                    raise RuntimeError(f"setting up the races: {result}")
                ids.append(result.aggregate_id)
        return ids

    def valid() -> dict[str, Any]:
        return {"valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=90), "price_sar": 4000}

    def contract_race() -> Race:
        [offer] = record(
            (
                company,
                "OfferPublished",
                {"season": SEASON, "kind": "mashaer_camp", "site": "mina", "places": EARLIER + places, **valid()},
            )
        )
        [earlier] = record((missions[0], "ContractProposed", {"offer_id": offer, "places": EARLIER}))
        record((company, "ContractSigned", {"contract_id": earlier}))
        proposed = record(*((m, "ContractProposed", {"offer_id": offer, "places": 1}) for m in missions[1:]))
        return Race("contract", places, offer, [(f"/v1/contracts/{c}/sign", {}) for c in proposed])

    def bed_race() -> Race:
        city = {"city": "makkah", "district": "Aziziyah"}
        [building] = record((Actor("amanah-makkah", Role.AMANAH), "BuildingLicensed", {
            "company_id": company.agency_id, **city, "beds": EARLIER + beds,
            "licence_valid_until": now + timedelta(days=365),
        }))  # fmt: skip # an event a line
        record(
            (
                Actor("civil_defence-makkah", Role.CIVIL_DEFENCE),
                "InspectionPassed",
                {"building_id": building, "findings": "compliant"},
            )
        )
        pilgrims = [uuid4() for _ in range(EARLIER + racers)]
        [offer] = record((company, "OfferPublished", {"season": SEASON, "kind": "makkah_housing", "site": "makkah",
                                                      "places": len(pilgrims), "building_ids": [building],
                                                      **valid()}))  # fmt: skip # an event a line
        [contract] = record((missions[0], "ContractProposed", {"offer_id": offer, "places": len(pilgrims)}))
        record((company, "ContractSigned", {"contract_id": contract}))
        trips = record(*(
            (Actor("naqaba-race", Role.NAQABA), "TripScheduled", {
                "operator": "SAPTCO", "bus_plate": f"RACE-{n}", "origin": PORT, "destination": "makkah",
                "departs_at": now, "capacity": 100,
            })
            for n in range(-(-len(pilgrims) // 100))
        ))  # fmt: skip # an event a line
        journeys = record(
            *((missions[0], "Registered", {"pilgrim_id": p, "season": SEASON, "country": COUNTRY}) for p in pilgrims)
        )
        port = {"port": PORT}
        steps: list[tuple[Role, str, dict[str, Any]]] = [
            (Role.MISSION, "PackageContracted", {"contract_id": contract}),
            (Role.MISSION, "VisaRequested", {}),
            (Role.MOFA, "VisaIssued", {"valid_until": now + timedelta(days=90)}),
            (Role.GACA, "ArrivedAtPort", {**port, "mode": "air", "flight": "SV1446"}),
            (Role.JAWAZAT, "EntryCleared", port),
            (Role.CUSTOMS, "CustomsCleared", port),
            (Role.WUKALA, "ReceivedAtPort", port),
            (Role.NAQABA, "BusAssigned", {}),
            (Role.NAQABA, "Boarded", {}),
            (Role.NAQABA, "TransferCompleted", {}),
        ]
        for role, event, fields in steps:
            if event == "TransferCompleted":  # the buses leave first, as a transfer needs
                record(*((Actor("naqaba-race", Role.NAQABA), "TripDeparted", {"trip_id": t}) for t in trips))
            actor = missions[0] if role is Role.MISSION else Actor(f"{role}-race", role)
            record(
                *(
                    (
                        actor,
                        event,
                        {"journey_id": j, **fields, **({"trip_id": trips[n // 100]} if role is Role.NAQABA else {})},
                    )
                    for n, j in enumerate(journeys)
                )
            )
        housing = {"site": "makkah", "building": "RACE-1", "building_id": building}
        record(*((company, "HousingCheckedIn", {"journey_id": j, **housing}) for j in journeys[:EARLIER]))
        return Race(
            "bed", beds, building, [(f"/v1/journeys/{j}/housing-checked-in", housing) for j in journeys[EARLIER:]]
        )

    races: dict[int, list[Race]] = {}
    try:
        for nodes in (1, 2):
            races[nodes] = [contract_race(), bed_race()]
    finally:
        ledger.close()
    return key, races


async def _race(ports: list[int], key: str, race: Race) -> tuple[list[tuple[int, dict[str, Any]]], float]:
    """Every client connected (round-robin over the nodes) and answered once, then all released together: each
    one's status and body, and the seconds from the release to the last answer."""

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        length = LENGTH.search(head)
        return int(head[9:12]), await reader.readexactly(int(length.group(1)) if length else 0)

    connections = [await asyncio.open_connection("127.0.0.1", ports[n % len(ports)]) for n in range(len(race.requests))]
    for reader, writer in connections:
        await exchange(reader, writer, request("GET", "/readyz", key))  # accepted by a worker before the race
    go = asyncio.Event()

    async def client(n: int) -> tuple[int, dict[str, Any]]:
        path, body = race.requests[n]
        raw = request("POST", path, key, {"occurred_at": datetime.now(UTC).isoformat(), **_plain(body)})
        await go.wait()
        status, answer = await exchange(*connections[n], raw)
        return status, orjson.loads(answer) if answer else {}

    tasks = [asyncio.create_task(client(n)) for n in range(len(race.requests))]
    await asyncio.sleep(0.2)  # every client at its `go.wait()`
    started = time.perf_counter()
    go.set()
    answers = await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return list(answers), seconds


def _plain(body: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, UUID) else v for k, v in body.items()}


def judge(race: Race, answers: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Winners, refusals naming the numbers, give-ups (409 conflict after the last re-run), anything else."""
    statuses: dict[str, int] = {}
    named = give_ups = 0
    for status, body in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        kind = str(body.get("type", "")).rsplit("/", 1)[-1]
        if status == 409 and kind == FULL[race.kind] and NAMED[race.kind].search(str(body.get("detail", ""))):
            named += 1
        elif status == 409 and kind == "conflict":
            give_ups += 1
    winners = sum(status == 201 for status, _ in answers)
    return {
        "clients": len(answers),
        "room": race.room,
        "winners": winners,
        "refused_naming_numbers": named,
        "give_ups": give_ups,
        "other": len(answers) - winners - named - give_ups,
        "statuses": statuses,
        "sample_refusal": next((b.get("detail") for s, b in answers if s == 409), None),
    }


def _views(url: str, races: list[Race]) -> dict[str, Any]:
    """The views at the head: each raced offer and building as its readers see it, and anything over capacity."""
    import sqlalchemy as sa

    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.building_occupancy import building_occupancy
    from hajj_ledger.projections.contracts import contracts
    from hajj_ledger.projections.runner import Runner
    from hajj_ledger.projections.service_offers import service_offers

    runner = Runner(PROJECTIONS, url)
    try:
        runner.run(once=True)
        offers, held, beds = service_offers.view(), contracts.view(), building_occupancy.view()
        with runner.engine.connect() as connection:
            over = sum(
                connection.execute(sa.select(sa.func.count()).where(view.c.free < 0)).scalar_one()
                for view in (offers, held, beds)
            )
            found = {}
            for race in races:
                if race.kind == "contract":
                    row = connection.execute(sa.select(offers).where(offers.c.offer_id == race.aggregate)).one()
                    signed = connection.execute(
                        sa.select(sa.func.count()).where(held.c.offer_id == race.aggregate, held.c.status == "signed")
                    ).scalar_one()
                    found[race.kind] = {
                        "places": row.places,
                        "contracted": row.contracted,
                        "free": row.free,
                        "signed_contracts": signed - 1,
                    }
                else:
                    row = connection.execute(sa.select(beds).where(beds.c.building_id == race.aggregate)).one()
                    found[race.kind] = {"beds": row.beds, "occupied": row.occupied, "free": row.free}
    finally:
        runner.close()
    return {"rows_over_capacity": over, **found}


@contextmanager
def nodes(url: str, count: int, logs: Path) -> Iterator[list[int]]:
    """`count` serve nodes on the database: one of 2 workers alone; else 1 worker each, all but the first
    `--api-only` (one runner and sealer in the deployment)."""
    workers = "2" if count == 1 else "1"
    started = []
    for n in range(count):
        port = free_port()
        argv = [str(CLI), "serve", "--port", str(port), "--workers", workers] + (["--api-only"] if n else [])
        started.append(Server(f"race-node{n + 1}", argv, port, url, logs, {}))
    with servers(*started):
        yield [s.port for s in started]


def measure_races(url: str, racers: int, places: int, beds: int) -> dict[str, Any]:
    key, races = prepare(url, racers, places, beds)
    logs = Path(tempfile.mkdtemp(prefix="hajj-bench-races-"))
    runs: dict[str, Any] = {}
    for count, pair in races.items():
        with nodes(url, count, logs) as ports:
            for race in pair:
                answers, seconds = asyncio.run(_race(ports, key, race))
                runs[f"{race.kind}_{count}"] = {**judge(race, answers), "seconds": seconds, "nodes": count}
        views = _views(url, pair)
        for race in pair:
            run, view = runs[f"{race.kind}_{count}"], views[race.kind]
            run["view"] = view
            run["holds"] = (
                run["winners"] == race.room
                and run["winners"] + run["refused_naming_numbers"] + run["give_ups"] == run["clients"]
                and views["rows_over_capacity"] == 0
                and view["free"] == 0
            )
        runs[f"over_capacity_{count}"] = views["rows_over_capacity"]
    slowest = max(r["seconds"] for r in runs.values() if isinstance(r, dict))
    return {"rate": slowest, "racers": racers, "places": places, "beds": beds, "runs": runs, "logs": str(logs)}


def races_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """The contract and bed races, each run on a fresh store; the time is the slowest race's."""
    runs = repeat(sizes.runs, kind, measure_races, racers=sizes.racers, places=sizes.race_places, beds=sizes.race_beds)
    return {**summarise(runs), "when": now()}
