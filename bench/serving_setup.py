"""The serving tier's plan and its set-up: a fresh database migrated, its agencies, journeys in the Kingdom with the
market they contracted on, and the servers' command lines (the ledger's `serve`, the bare baseline)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from bench.harness import CLI, SEASON
from bench.servers import Server

UVICORN = Path(sys.executable).parent / "uvicorn"
COUNTRY, PORT_OF_ENTRY = "IDN", "HADITHA"
# The pools the bench configures on every node: the documented defaults, set so that what they allow is known
# (serving_nodes.pool_budget).
NODE_POOLS = {"HAJJ_LEDGER_WRITE_POOL_SIZE": 2, "HAJJ_LEDGER_WRITE_POOL_OVERFLOW": 8, "HAJJ_LEDGER_READ_POOL_SIZE": 8}


@dataclass(frozen=True)
class Plan:
    rounds: int = 3  # baseline and ledger, interleaved
    warmup: float = 2.0
    seconds: float = 7.0  # reads and single steps
    batch_seconds: float = 10.0
    node_rounds: int = 2  # each of 2 and 4 nodes, spread and pinned
    node_warmup: float = 2.5  # each node's write cache filled before the window opens
    node_seconds: float = 6.0
    node_journeys: int = 640  # ten a client: each journey written often, as on a busy day
    journeys: int = 5200  # in the Kingdom, read and written: a slice of 640 for each node run
    workers: int = 2  # uvicorn workers of the ledger's serve and of the baseline
    connections: int = 64
    batch_connections: int = 4
    node_counts: tuple[int, ...] = (2, 4)


FULL = Plan()
QUICK = Plan(
    rounds=1, warmup=1.5, seconds=4, batch_seconds=6, node_rounds=1, node_warmup=2, node_seconds=4, journeys=640
)


@dataclass
class Setup:
    url: str
    logs: Path
    plan: Plan
    ministry_key: str  # reads every journey
    mission_key: str  # registers
    moh_key: str  # hospital steps
    ids: Path  # journey ids, for reads
    api_only: bool  # `serve --api-only` exists

    def ledger(self, name: str, port: int, workers: int, *, api_only: bool = False) -> Server:
        argv = [str(CLI), "serve", "--port", str(port), "--workers", str(workers)]
        pools = {name: str(size) for name, size in NODE_POOLS.items()}
        return Server(name, argv + (["--api-only"] if api_only else []), port, self.url, self.logs, pools)

    def bare(self, port: int) -> Server:
        argv = [str(UVICORN), "bench.bare_server:app", "--workers", str(self.plan.workers), "--port", str(port),
                "--no-access-log", "--log-level", "warning"]  # fmt: skip # flag/value pairs
        hashes = ",".join(hashlib.sha256(k.encode()).hexdigest() for k in (self.ministry_key, self.mission_key))
        env = {"BENCH_BARE_DB": self.url, "BENCH_BARE_KEY_HASHES": hashes}
        return Server("baseline", argv, port, self.url, self.logs, env)

    def ledger_cli(self, *args: str) -> None:
        """A `hajj-ledger` command on the bench's database, tried three times (the server is shared: it may be full
        or restarting)."""
        for attempt in range(3):
            done = subprocess.run(
                [str(CLI), *args],
                env={**os.environ, "HAJJ_LEDGER_DATABASE_URL": self.url},
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                return
            time.sleep(3 * (attempt + 1))
        raise RuntimeError(f"hajj-ledger {' '.join(args)} failed:\n{done.stderr[-2000:]}")

    def catch_up(self) -> None:
        """The views and the chain at the head, so that no backlog from an earlier run is measured."""
        self.ledger_cli("project", "--once")
        self.ledger_cli("seal")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """One query on a connection of its own; retried for a while, as the shared server may be full."""
        for attempt in range(20):
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    return connection.execute(sql).fetchall()
            except psycopg.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")


def prepare(url: str, plan: Plan, logs: Path) -> Setup:
    """Migrate, add the agencies, put `plan.journeys` journeys in the Kingdom, project them."""
    from bench.bare_server import SCHEMA
    from bench.season import open_season_now
    from hajj_ledger.api import agencies
    from hajj_ledger.domain.journey import Journey
    from hajj_ledger.domain.parsing import parse_command
    from hajj_ledger.domain.vocabulary import Actor, Role
    from hajj_ledger.ledger import JourneyLedger, Outcome
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    engine = engine_for(url)
    upgrade(engine)
    with engine.begin() as connection:
        mission, mission_key = agencies.add(connection, Role.MISSION, "bench mission", f"mission-{COUNTRY}-00001")
        ministry_key = agencies.add(connection, Role.MINISTRY, "bench ministry")[1]
        moh_key = agencies.add(connection, Role.MOH, "bench hospitals")[1]
    engine.dispose()
    now = datetime.now(UTC) - timedelta(minutes=1)
    pilgrims = [uuid4() for _ in range(plan.journeys)]
    journeys = [Journey.create_id(SEASON, p) for p in pilgrims]
    port = {"port": PORT_OF_ENTRY}
    building, offer, contract = uuid4(), uuid4(), uuid4()
    company = Actor("company-bench-00001", Role.COMPANY)
    market: list[tuple[Actor, str, dict[str, Any]]] = [
        (Actor("amanah-bench", Role.AMANAH), "BuildingLicensed", {
            "building_id": building, "company_id": company.agency_id, "city": "makkah", "district": "Aziziyah",
            "beds": plan.journeys, "licence_valid_until": now + timedelta(days=365),
        }),
        (Actor("civil-defence-bench", Role.CIVIL_DEFENCE), "InspectionPassed", {
            "building_id": building, "findings": "compliant",
        }),
        (company, "OfferPublished", {
            "offer_id": offer, "season": SEASON, "kind": "makkah_housing", "site": "makkah", "places": plan.journeys,
            "price_sar": 12_000, "valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=90),
            "building_ids": [building],
        }),
        (mission.actor, "ContractProposed", {"contract_id": contract, "offer_id": offer, "places": plan.journeys}),
        (company, "ContractSigned", {"contract_id": contract}),
    ]  # fmt: skip # an event a line
    steps: list[tuple[Role, str, dict[str, Any]]] = [
        (Role.MISSION, "PackageContracted", {"contract_id": contract}),
        (Role.MISSION, "VisaRequested", {}),
        (Role.MOFA, "VisaIssued", {"valid_until": (now + timedelta(days=90)).isoformat()}),
        (Role.JAWAZAT, "ArrivedAtPort", {**port, "mode": "land"}),
        (Role.JAWAZAT, "EntryCleared", port),
        (Role.CUSTOMS, "CustomsCleared", port),
        (Role.WUKALA, "ReceivedAtPort", port),
    ]
    ledger = JourneyLedger(url)
    try:
        open_season_now(ledger, SEASON)

        def command(event: str, **fields: Any) -> Any:
            return parse_command({"event": event, "command_id": uuid4(), "occurred_at": now, **fields})

        waves = [[(command(event, **fields), actor)] for actor, event, fields in market]
        waves.append(
            [(command("Registered", pilgrim_id=p, season=SEASON, country=COUNTRY), mission.actor) for p in pilgrims]
        )
        for role, event, fields in steps:
            actor = mission.actor if role is Role.MISSION else Actor(f"{role}-bench", role)
            waves.append([(command(event, journey_id=j, **fields), actor) for j in journeys])
        for wave in waves:
            for start in range(0, len(wave), 1000):
                refused = [r for r in ledger.record_batch(wave[start : start + 1000]) if not isinstance(r, Outcome)]
                if refused:
                    raise RuntimeError(f"setting up the journeys: {refused[0]}")
    finally:
        ledger.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(SCHEMA)
    setup = Setup(url, logs, plan, ministry_key, mission_key, moh_key, logs / "journey-ids.txt", _has_api_only())
    setup.catch_up()
    setup.ids.write_text("".join(f"{row[0]}\n" for row in setup.query("SELECT journey_id FROM journey_status")))
    return setup


def _has_api_only() -> bool:
    done = subprocess.run([str(CLI), "serve", "--help"], capture_output=True, text=True, check=False)
    return "--api-only" in done.stdout
