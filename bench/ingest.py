"""Recording: batched ingest beside its baselines (plain INSERTs, eventsourcing's default configuration), single
commands from 1 and 64 clients, and a whole season end to end (`--only ingest`: the batched ingest and its raw
baseline, in one run)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg

from bench.harness import (
    FULL,
    SEASON,
    SEED,
    Sizes,
    fresh_store,
    ledger,
    repeat,
    rss_mb,
    run_child,
    season_batches,
    simulated_ledger,
    summarise,
)


def measure_ingest(url: str, pilgrims: int) -> dict[str, Any]:
    """Batched ingest through the application: record_batch on the simulator's commands."""
    from hajj_ledger.ledger import Outcome

    recording = simulated_ledger(url)
    market = market_events()
    events = refused = of_market = 0
    seconds = 0.0
    for batch in season_batches(pilgrims):
        started = time.perf_counter()
        results = recording.record_batch(batch)
        seconds += time.perf_counter() - started
        recorded = [e for r in results if isinstance(r, Outcome) for e in r.events]
        events += len(recorded)
        of_market += sum(e in market for e in recorded)
        refused += sum(not isinstance(r, Outcome) for r in results)
    sizes = _state_sizes(recording)
    recording.close()
    return {
        "rate": events / seconds,
        "events": events,
        "market_events": of_market,
        "seconds": seconds,
        "refused": refused,
        **sizes,
    }


def market_events() -> frozenset[str]:
    """The events of the offers, contracts and buildings (issue 16), and the trips' checkpoints."""
    from hajj_ledger.domain.catalogue import BUILDING_STEPS, CONTRACT_STEPS, OFFER_STEPS

    return frozenset({*OFFER_STEPS, *CONTRACT_STEPS, *BUILDING_STEPS, "CheckpointPassed"})


def _state_sizes(recording: Any) -> dict[str, Any]:
    rows = recording.recorder.select_notifications(start=1, limit=5000)
    return {
        "state_bytes": statistics.mean(len(r.state) for r in rows),
        "topic_bytes": statistics.mean(len(r.topic) for r in rows),
    }


def measure_raw(url: str, rows: int, batch: int, state_bytes: int) -> dict[str, Any]:
    """Plain INSERTs of rows shaped like stored events into a plain table: the store's physical limit."""
    state = os.urandom(state_bytes)
    topic = "hajj_ledger.domain.journey:Journey.MovedToSite"
    data = [(uuid4(), 1, topic, state) for _ in range(rows)]
    if url.startswith("sqlite"):
        import sqlite3

        lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute(
            "CREATE TABLE raw (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        started = time.perf_counter()
        for start in range(0, rows, batch):
            lite.execute("BEGIN")
            lite.executemany(
                "INSERT INTO raw VALUES (?, ?, ?, ?)", [(i.hex, v, t, s) for i, v, t, s in data[start : start + batch]]
            )
            lite.execute("COMMIT")
        seconds = time.perf_counter() - started
    else:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE raw (originator_id uuid, originator_version bigint, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            )
            started = time.perf_counter()
            with db.cursor() as cursor:
                for start in range(0, rows, batch):
                    with db.transaction():
                        cursor.executemany(
                            "INSERT INTO raw (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                            data[start : start + batch],
                        )
            seconds = time.perf_counter() - started
    return {"rate": rows / seconds, "rows": rows, "batch": batch, "seconds": seconds}


def measure_library_default(url: str, source_url: str) -> dict[str, Any]:
    """eventsourcing's default configuration saving the same events, in batches as large as ours."""
    from eventsourcing.application import Application
    from eventsourcing.persistence import JSONTranscoder, Transcoding

    from hajj_ledger.domain.season import Season
    from hajj_ledger.domain.vocabulary import Role, Stamp
    from hajj_ledger.simulation.season import BATCH

    class StampAsDict(Transcoding):  # the one registration the default needs for our events
        type = Stamp
        name = "stamp"

        def encode(self, obj: Stamp) -> dict[str, Any]:
            return {k: getattr(obj, k) for k in ("agency_id", "role", "occurred_at", "command_id", "correlation_id")}

        def decode(self, data: dict[str, Any]) -> Stamp:
            return Stamp(**{**data, "role": Role(data["role"])})

    class DefaultApplication(Application[Any]):
        def register_transcodings(self, transcoder: JSONTranscoder) -> None:
            super().register_transcodings(transcoder)
            transcoder.register(StampAsDict())

    source = ledger(source_url)
    head = source.head()
    events = []
    start = 1
    while start <= head:
        for notification in source.recorder.select_notifications(start=start, limit=10_000):
            event = source.mapper.to_domain_event(notification)
            if not isinstance(event, Season.Event):  # the season's opening, recorded before ingest was timed
                events.append(event)
            start = notification.id + 1
    source.close()

    if url.startswith("sqlite"):
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": url.removeprefix("sqlite:///")}
    else:
        parts = urlsplit(url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": parts.username or "postgres",
            "POSTGRES_PASSWORD": "",
        }
    app = DefaultApplication(env=env)
    started = time.perf_counter()
    for begin in range(0, len(events), BATCH):
        app.save(*events[begin : begin + BATCH])
    seconds = time.perf_counter() - started
    app.close()
    return {"rate": len(events) / seconds, "events": len(events), "seconds": seconds}


def _single_commands(count: int) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    """The market the journeys contract on (buildings, offers, contracts), and commands that each touch one journey
    (registration to reception at the port, with a place taken on a contract), in time order."""
    market = {
        "BuildingLicensed",
        "InspectionPassed",
        "InspectionFailed",
        "OfferPublished",
        "ContractProposed",
        "ContractSigned",
    }
    single = {
        "Registered",
        "PackageContracted",
        "VisaRequested",
        "VisaIssued",
        "VisaRejected",
        "Cancelled",
        "FlightBooked",
        "ArrivedAtPort",
        "EntryCleared",
        "CustomsCleared",
        "ReceivedAtPort",
    }
    opened: list[tuple[Any, Any]] = []
    commands: list[tuple[Any, Any]] = []
    pilgrims = max(20, count // 10)
    for batch in season_batches(pilgrims):
        opened += [(c, a) for c, a in batch if c.event in market]
        commands += [(c, a) for c, a in batch if c.event in single and getattr(c, "direction", "arrival") == "arrival"]
    commands.sort(key=lambda item: item[0].occurred_at)
    return sorted(opened, key=lambda item: item[0].occurred_at), commands[:count]


def _journey_of(command: Any) -> Any:
    from hajj_ledger.domain.journey import Journey

    return getattr(command, "journey_id", None) or Journey.create_id(command.season, command.pilgrim_id)


def measure_single(url: str, count: int, clients: int) -> dict[str, Any]:
    """One command per call to `record`, from `clients` threads at once; each thread keeps its journeys in order."""
    market, commands = _single_commands(count)
    queues: list[list[tuple[Any, Any]]] = [[] for _ in range(clients)]
    for command, actor in commands:
        queues[hash(_journey_of(command)) % clients].append((command, actor))
    recording = simulated_ledger(url)
    recording.record_batch(market)  # before the clock starts: what the journeys contract on
    refused = 0
    lock = threading.Lock()

    def client(queue: list[tuple[Any, Any]]) -> None:
        nonlocal refused
        from hajj_ledger.domain.errors import LedgerError

        for command, actor in queue:
            try:
                recording.record(command, actor)
            except LedgerError:
                with lock:
                    refused += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, queues))
    seconds = time.perf_counter() - started
    recording.close()
    return {"rate": len(commands) / seconds, "commands": len(commands), "refused": refused, "seconds": seconds}


def measure_scale(url: str, pilgrims: int) -> dict[str, Any]:
    """A whole season end to end (planning included), with peak memory read as it goes."""
    from hajj_ledger.simulation.season import Summary, simulate

    recording = ledger(url)
    rss: list[tuple[int, float]] = []

    def progress(done: int, summary: Summary) -> None:
        rss.append((done, rss_mb()))

    summary = simulate(recording, pilgrims, SEASON, SEED, progress=progress)
    recording.close()
    fifth = next((mb for done, mb in rss if done >= pilgrims / 5), rss[0][1])
    return {
        "rate": summary.events / summary.seconds,
        "events": summary.events,
        "seconds": summary.seconds,
        "refused": summary.refused,
        "rss_at_fifth_mb": fifth,
        "rss_growth": rss_mb() / fifth,
        "extrapolated_1_8m_hours": summary.seconds * 1_800_000 / pilgrims / 3600,
    }


# The figures.


def ingest_figures(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Batched ingest and the raw INSERT of 1,000 rows a transaction, in one run (`--only ingest`)."""
    ingest = repeat(sizes.runs, kind, measure_ingest, pilgrims=sizes.pilgrims)
    raw_rows = 100 * 1000 if sizes is FULL else 2000
    state_bytes = int(ingest[0]["state_bytes"])
    raw_batched = repeat(sizes.runs, kind, measure_raw, rows=raw_rows, batch=1000, state_bytes=state_bytes)
    return {"ingest": summarise(ingest), "raw_batched": summarise(raw_batched)}


def recording_figures(sizes: Sizes, kind: str, say: Callable[[str], None]) -> dict[str, Any]:
    """The suite's: batched ingest beside its baselines, and single commands from 1 and 64 clients."""
    say(f"batched ingest and raw INSERTs of 1,000 rows a transaction, {sizes.pilgrims:,} pilgrims x {sizes.runs}")
    found = ingest_figures(sizes, kind)
    say("raw INSERTs of one row a transaction")
    state_bytes = int(found["ingest"]["details"][0]["state_bytes"])
    raw_single = repeat(sizes.runs, kind, measure_raw, rows=sizes.raw_single, batch=1, state_bytes=state_bytes)
    say("eventsourcing's default configuration")
    with fresh_store(kind) as source:
        run_child(measure_ingest, url=source, pilgrims=sizes.pilgrims)
        library = repeat(sizes.runs, kind, measure_library_default, source_url=source)
    say("single commands, 1 and 64 clients")
    single_1 = repeat(sizes.runs, kind, measure_single, count=sizes.single, clients=1)
    single_64 = repeat(sizes.runs, kind, measure_single, count=sizes.single * 2, clients=64)
    return {
        **found,
        "raw_single": summarise(raw_single),
        "library_default": summarise(library),
        "single_1": summarise(single_1),
        "single_64": summarise(single_64),
    }


def scale_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """A season of sizes.scale pilgrims end to end, once."""
    return summarise(repeat(1, kind, measure_scale, pilgrims=sizes.scale))
