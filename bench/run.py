"""`make bench`: the ledger's figures against baselines measured in the same run; writes BENCHMARKS.md.

Every measurement runs in a fresh process on a fresh database (PostgreSQL: a new database; SQLite: a new file),
so each has its own peak memory and nothing warm carries over. Figures are medians of several runs with their
min-max, because these machines are noisy; ratios compare figures measured in the same run.

    python bench/run.py                 # the full suite (about a quarter of an hour)
    python bench/run.py --smoke --out D # tiny sizes, one run each: checks the suite still works (no serving tier)
    python bench/run.py --only serving  # the serving tier alone (about ten minutes; --quick: a few), into the results
    python bench/run.py --only trail    # the audit trail's filtered pages on 3 M events (--smoke: 50,000)
    python bench/run.py --only cli      # the command line's start times alone (a minute), into the results
    python bench/run.py --only races    # the contract and bed races over HTTP, 1 and 2 nodes (PostgreSQL only)
    python bench/run.py --only catchup --only lag  # the projection runner's catch-up and live lag, both stores
    python bench/run.py --only ingest --stores postgres  # batched ingest beside its raw baseline, in one run
    python bench/run.py --only identity  # registration with identity against without, vault lookups, both stores
    python bench/run.py --only feed --only relay   # the change feed's p99 to 50 clients, the relay to NATS
    python bench/run.py --only dashboard  # the dashboard's first paint on the demo store, in Chromium (SQLite)
    python bench/run.py --only season   # a season's scale: export, as-of, verify on 10 M events (--season-events N)
    python bench/run.py --only season --stores postgres --season-keep hajj_season  # its store built once, kept
    python bench/run.py --only seasons  # closing seasons of 10 M and 1 M events, verify, append (--season-events N)
    python bench/run.py --only failover  # a promotion under load: private primary and synchronous standby (root)
    python bench/run.py --only restore   # a pgBackRest restore drill, 10 M events, private cluster (--season-events N)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/run.py`: the bench package is importable as in its children
from bench import dashboard, serving  # noqa: E402

# The simulated seasons carry identities: the vault needs a master key (a fixed one, for benchmarks only).
os.environ.setdefault("HAJJ_LEDGER_MASTER_KEYS", "bench-1:" + "B" * 43)
POSTGRES_URL = os.environ.get("HAJJ_LEDGER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEASON, SEED = 1446, 11
# Batched ingest on PostgreSQL before the market entered the season (BENCHMARKS.md of 2026-11-26): the market's
# target is to be no slower per event, as a ratio to the raw baseline of the same run.
BEFORE_MARKET = {"raw_ratio": 0.24, "rate": 18_049}


@dataclass(frozen=True)
class Sizes:
    pilgrims: int  # batched ingest and its baselines
    vault: int  # identities in the vault for the passport lookup
    single: int  # commands for the single-command figures
    scale: int  # pilgrims in the scale run
    raw_single: int  # rows for the one-row-per-transaction baseline
    runs: int
    chain: int = 10_000  # pilgrims for the hash chain's figures
    export: int = 6_000  # pilgrims for the export figure
    trail: int = 3_000_000  # events in the store for the audit trail's filtered pages
    season: int = 10_000_000  # events in the store for a season's export, as-of reads and verify
    rebuild: int = 1_000_000  # events in the store for every view from zero, in bulk and in batches
    racers: int = 64  # HTTP clients in each of the contract and bed races
    race_places: int = 5  # places left on the offer raced for
    race_beds: int = 3  # beds left in the building raced for


FULL = Sizes(pilgrims=3000, vault=1_000_000, single=3000, scale=100_000, raw_single=3000, runs=3)
SMOKE = Sizes(pilgrims=60, vault=500, single=150, scale=120, raw_single=100, runs=1, chain=40, export=40,
              trail=50_000, season=60_000, racers=8, race_places=2, race_beds=2, rebuild=20_000)  # fmt: skip
SEASON_PILGRIMS = 1_800_000  # a whole season, for which the export's time is extrapolated


# What each child process measures. Each returns a dict with at least "rate"; "rss_mb" is added for all.


def _ledger(url: str) -> Any:
    from hajj_ledger.ledger import JourneyLedger

    return JourneyLedger(url)


def _simulated_ledger(url: str) -> Any:
    """A ledger with the simulated season opened (as `simulate` opens it), for the workloads that record the
    simulator's commands themselves: a season never opened takes no registration."""
    from hajj_ledger.simulation.season import open_season

    ledger = _ledger(url)
    open_season(ledger, SEASON)
    return ledger


def _season(pilgrims: int) -> Iterator[list[tuple[Any, Any]]]:
    """The simulator's commands in the ledger's batches, built before the clock starts on each batch."""
    from hajj_ledger.simulation.season import BATCH, chunks

    for _, planned in chunks(pilgrims, SEED, SEASON):
        for start in range(0, len(planned), BATCH):
            yield [(step.command(), step.actor) for step in planned[start : start + BATCH]]


def measure_ingest(url: str, pilgrims: int) -> dict[str, Any]:
    """Batched ingest through the application: record_batch on the simulator's commands."""
    from hajj_ledger.ledger import Outcome

    ledger = _simulated_ledger(url)
    market = _market_events()
    events = refused = of_market = 0
    seconds = 0.0
    for batch in _season(pilgrims):
        started = time.perf_counter()
        results = ledger.record_batch(batch)
        seconds += time.perf_counter() - started
        recorded = [e for r in results if isinstance(r, Outcome) for e in r.events]
        events += len(recorded)
        of_market += sum(e in market for e in recorded)
        refused += sum(not isinstance(r, Outcome) for r in results)
    sizes = _state_sizes(ledger)
    ledger.close()
    return {"rate": events / seconds, "events": events, "market_events": of_market, "seconds": seconds,
            "refused": refused, **sizes}  # fmt: skip


def _market_events() -> frozenset[str]:
    """The events of the offers, contracts and buildings (issue 16), and the trips' checkpoints."""
    from hajj_ledger.domain.catalogue import BUILDING_STEPS, CONTRACT_STEPS, OFFER_STEPS

    return frozenset({*OFFER_STEPS, *CONTRACT_STEPS, *BUILDING_STEPS, "CheckpointPassed"})


def _state_sizes(ledger: Any) -> dict[str, Any]:
    rows = ledger.recorder.select_notifications(start=1, limit=5000)
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

    source = _ledger(source_url)
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
        "BuildingLicensed", "InspectionPassed", "InspectionFailed", "OfferPublished", "ContractProposed",
        "ContractSigned",
    }  # fmt: skip
    single = {
        "Registered", "PackageContracted", "VisaRequested", "VisaIssued", "VisaRejected", "Cancelled",
        "FlightBooked", "ArrivedAtPort", "EntryCleared", "CustomsCleared", "ReceivedAtPort",
    }  # fmt: skip
    opened: list[tuple[Any, Any]] = []
    commands: list[tuple[Any, Any]] = []
    pilgrims = max(20, count // 10)
    for batch in _season(pilgrims):
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
    ledger = _simulated_ledger(url)
    ledger.record_batch(market)  # before the clock starts: what the journeys contract on
    refused = 0
    lock = threading.Lock()

    def client(queue: list[tuple[Any, Any]]) -> None:
        nonlocal refused
        from hajj_ledger.domain.errors import LedgerError

        for command, actor in queue:
            try:
                ledger.record(command, actor)
            except LedgerError:
                with lock:
                    refused += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, queues))
    seconds = time.perf_counter() - started
    ledger.close()
    return {"rate": len(commands) / seconds, "commands": len(commands), "refused": refused, "seconds": seconds}


def measure_scale(url: str, pilgrims: int) -> dict[str, Any]:
    """A whole season end to end (planning included), with peak memory read as it goes."""
    from hajj_ledger.simulation.season import Summary, simulate

    ledger = _ledger(url)
    rss: list[tuple[int, float]] = []

    def progress(done: int, summary: Summary) -> None:
        rss.append((done, _rss_mb()))

    summary = simulate(ledger, pilgrims, SEASON, SEED, progress=progress)
    ledger.close()
    fifth = next((mb for done, mb in rss if done >= pilgrims / 5), rss[0][1])
    return {
        "rate": summary.events / summary.seconds,
        "events": summary.events,
        "seconds": summary.seconds,
        "refused": summary.refused,
        "rss_at_fifth_mb": fifth,
        "rss_growth": _rss_mb() / fifth,
        "extrapolated_1_8m_hours": summary.seconds * 1_800_000 / pilgrims / 3600,
    }


def _migrated_season(url: str, pilgrims: int) -> None:
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for

    ledger = _ledger(url)
    simulate_season(ledger, pilgrims)
    ledger.close()
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()


def simulate_season(ledger: Any, pilgrims: int) -> None:
    from hajj_ledger.simulation.season import simulate

    simulate(ledger, pilgrims, SEASON, SEED)


def measure_catchup(url: str, pilgrims: int) -> dict[str, Any]:
    """Each projection from position 0 to the head of a simulated season's log, one after another."""
    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    _migrated_season(url, pilgrims)
    runner = Runner(PROJECTIONS, url)
    head = runner.ledger.head()
    rates: dict[str, float] = {}
    rss_fifth = 0.0
    for projection in PROJECTIONS:
        started = time.perf_counter()
        position = 0
        while moved := runner.step(projection):
            position += moved
            if not rss_fifth and position >= head / 5:
                rss_fifth = _rss_mb()
        rates[projection.name] = head / (time.perf_counter() - started)
    runner.close()
    slowest = min(rates, key=rates.__getitem__)
    return {"rate": rates[slowest], "slowest": slowest, "rates": rates, "events": head,
            "rss_at_fifth_mb": rss_fifth, "rss_growth": _rss_mb() / rss_fifth}  # fmt: skip


def measure_rebuild(url: str, pilgrims: int, events: int) -> dict[str, Any]:
    """Every view (and the trail's index) from position 0 on a simulated season grown to `events`: the incremental
    runner's batches, then the bulk path for all of them together, then for each alone, in the same process."""
    from hajj_ledger.projections import FOLLOWED
    from hajj_ledger.projections import runner as runner_module
    from hajj_ledger.projections.bulk import build
    from hajj_ledger.projections.runner import Runner

    _migrated_season(url, pilgrims)
    _replicate(url, events)
    runner = Runner(FOLLOWED, url)
    head = runner.ledger.head()
    runner_module.BULK_BEHIND = head  # the batches alone, as before the bulk path
    started = time.perf_counter()
    runner.run(once=True)
    incremental = head / (time.perf_counter() - started)
    rss_incremental = _rss_mb()
    for projection in FOLLOWED:
        runner.prepare(projection, "b")
    started = time.perf_counter()
    build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED])
    together = head / (time.perf_counter() - started)
    rss_together = _rss_mb()
    alone: dict[str, float] = {}
    for projection in FOLLOWED:
        runner.prepare(projection, "b")
        started = time.perf_counter()
        build(runner.engine, runner.ledger, [(projection, "b")])
        alone[projection.name] = head / (time.perf_counter() - started)
    runner.close()
    in_sql = [p.name for p in FOLLOWED if p.in_sql is not None]  # built in SQL on PostgreSQL; the rest folded
    return {"rate": together, "incremental": incremental, "alone": alone, "events": head, "in_sql": in_sql,
            "rss_incremental_mb": rss_incremental, "rss_together_mb": rss_together}  # fmt: skip


def _postgres(url: str) -> psycopg.Connection[Any]:
    from hajj_ledger.store.connections import Postgres

    found = Postgres.from_url(url)
    return psycopg.connect(found.conninfo, autocommit=True, **found.connect_kwargs())


def _replicate(url: str, events: int) -> int:
    """Grow a simulated season's log to `events` by copying it in SQL, a copy at a time: fresh aggregate ids, the same
    agencies and events, the recorded times moved on by the season's span each copy (so that they run on through
    the log, as a real one's do). Returns the number of events."""
    ledger = _ledger(url)
    events_table = ledger.recorder.events_table_name
    ledger.close()
    # The states are copied as text, not through jsonb (which would respell them with spaces and its own key order):
    # a copy is written exactly as the codec writes, `{"timestamp":"…"` first, so that readers meet the log they
    # would meet in production.
    recorded = 'substring(convert_from(state, \'UTF8\') from \'^\\{"timestamp":"([^"]*)"\')::timestamptz'
    with _postgres(url) as connection:
        [base, span] = connection.execute(
            "SELECT max(notification_id), extract(epoch FROM max(t) - min(t)) + 1 "
            f"FROM (SELECT notification_id, {recorded} AS t FROM {events_table}) AS s"
        ).fetchone()  # type: ignore[misc]
        total, copy = base, 0
        while total < events:  # a season is opened once: its events are not copied
            copy += 1
            rows = connection.execute(
                f"INSERT INTO {events_table} (originator_id, originator_version, topic, state) "
                "SELECT md5(originator_id::text || %(copy)s)::uuid, originator_version, topic, "
                'convert_to(regexp_replace(convert_from(state, \'UTF8\'), \'^\\{"timestamp":"[^"]*"\', '
                "'{\"timestamp\":\"' || to_char((t + make_interval(secs => %(shift)s)) AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') || '\"'), 'UTF8') "
                f"FROM (SELECT *, {recorded} AS t FROM {events_table} WHERE notification_id <= %(base)s "
                "AND topic NOT LIKE '%%:Season.%%' ORDER BY notification_id LIMIT %(rows)s) AS s "
                "ORDER BY notification_id",
                {"copy": str(copy), "shift": span * copy, "base": base, "rows": events - total},
            ).rowcount
            if rows <= 0:
                break  # nothing left to copy: never loop for ever
            total += rows
        [total] = connection.execute(f"SELECT count(*) FROM {events_table}").fetchone()  # type: ignore[misc]
    return int(total)


def measure_trail(url: str, events: int, pilgrims: int, samples: int) -> dict[str, Any]:
    """The audit trail's filtered pages (100 entries, from the start or from a random cursor) on a store of `events`
    events: by agency (every agency equally likely, so the rare ones as often as the busy), by event type, by a
    recorded-time range, and combined; p50 and p99 of each kind."""
    import random

    from hajj_ledger.audit.reads import TrailQuery, trail
    from hajj_ledger.projections import TRAIL_INDEX
    from hajj_ledger.projections.runner import Runner

    _migrated_season(url, pilgrims)
    total = _replicate(url, events)
    runner = Runner([TRAIL_INDEX], url)
    started = time.perf_counter()
    runner.catch_up(TRAIL_INDEX)
    backfill = total / (time.perf_counter() - started)
    runner.close()
    connection = _postgres(url)
    connection.execute("VACUUM ANALYZE")  # what autovacuum does to tables this size soon after
    agencies = [r[0] for r in connection.execute("SELECT DISTINCT agency_id FROM trail_index")]
    names = [r[0] for r in connection.execute("SELECT DISTINCT event FROM trail_index")]
    ledger = _ledger(url)
    pick = random.Random(SEED)

    def moments() -> list[datetime]:
        """The recorded times of two events from 10 to 300,000 positions apart."""
        low = pick.randint(1, total)
        high = min(total, low + int(10 ** pick.uniform(1, 5.5)))
        return [
            datetime.fromtimestamp(connection.execute(
                "SELECT recorded_us FROM trail_index WHERE position >= %s ORDER BY position LIMIT 1", (p,)
            ).fetchone()[0] / 1e6, UTC)  # type: ignore[index]
            for p in (low, high)
        ]  # fmt: skip

    def query(kind: str) -> TrailQuery:
        fields: dict[str, Any] = {}
        if "agency" in kind:
            fields["agency_id"] = pick.choice(agencies)
        if "event" in kind:
            fields["event"] = pick.choice(names)
        if "time" in kind:
            fields["recorded_from"], fields["recorded_until"] = sorted(moments())
        return TrailQuery(**fields)

    kinds = ("agency", "event", "time", "agency+event", "agency+time", "event+time", "agency+event+time")
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    matched = 0
    for _ in range(samples):
        for kind in kinds:
            chosen = query(kind)
            after = 0 if pick.random() < 0.5 else pick.randint(1, total)
            started = time.perf_counter()
            page = trail(ledger, chosen, after, 100)
            timings[kind].append((time.perf_counter() - started) * 1000)
            matched += len(page.entries)
    ledger.close()
    connection.close()

    every = [t for values in timings.values() for t in values]
    overall = _quantiles(every)
    kinds_found = {k: _quantiles(v) for k, v in timings.items()}
    return {"rate": overall["p99_ms"], "events": total, "backfill_rate": backfill, "agencies": len(agencies),
            "pages": len(every), "entries": matched, **overall, "kinds": kinds_found}  # fmt: skip


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def measure_lag(url: str, seconds: float, events_per_second: int) -> dict[str, Any]:
    """How long after it is recorded an event is in every read model, while the ledger takes a steady load."""
    from datetime import UTC, datetime

    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    _migrated_season(url, 20)
    runner = Runner(PROJECTIONS, url)
    runner.run(once=True)
    lags: list[float] = []
    apply = runner._apply  # each projection's part of a stretch of the log, in a transaction of its own

    def timed_apply(projection: Any, generation: str, position: int, last: int, log: Any) -> int:
        moved = apply(projection, generation, position, last, log)  # committed on return
        now = datetime.now(UTC)
        lags.extend((now - e.timestamp).total_seconds() for _, e in log.events(projection, position))
        return moved

    runner._apply = timed_apply  # type: ignore[method-assign,assignment]
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, kwargs={"stop": stop})
    follower.start()
    recorded, elapsed = steady_load(url, seconds, events_per_second)
    time.sleep(1.0)
    stop.set()
    follower.join()
    runner.close()
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)] if lags else float("nan")
    return {"rate": 1000 * p99, "p50_ms": 1000 * lags[len(lags) // 2], "events": len(lags),
            "load_events_per_s": recorded / elapsed}  # fmt: skip


def steady_load(url: str, seconds: float, events_per_second: int) -> tuple[int, float]:
    """A simulated season recorded at `events_per_second` for `seconds`, in batches every 50 ms: the events recorded
    and the seconds it took."""
    writer = _simulated_ledger(url)
    # A command records 0.8 events on average in the simulated season (refusals, steps of the market): a season
    # with twice the pilgrims that rate needs, so that its commands never run out before the clock does.
    commands = [c for batch in _season(max(100, int(seconds * events_per_second / 14))) for c in batch]
    tick = 0.05
    per_tick = max(1, int(events_per_second * tick))
    started = time.perf_counter()
    sent = recorded = ticks = 0
    while time.perf_counter() - started < seconds and sent < len(commands):
        results = writer.record_batch(commands[sent : sent + per_tick])
        recorded += sum(len(getattr(r, "events", ())) for r in results)
        sent += per_tick
        ticks += 1
        # The events a command records vary with the season's mix (the market's steps, refusals): aim at the events
        # due by the end of the next tick, at the commands-per-event seen so far, so that a short tick is made up.
        due = events_per_second * tick * (ticks + 1) - recorded
        per_tick = max(1, round(due * sent / max(recorded, 1)))
        time.sleep(max(0.0, started + ticks * tick - time.perf_counter()))
    elapsed = time.perf_counter() - started
    writer.close()
    if sent >= len(commands):
        raise RuntimeError(f"the season's commands ran out after {elapsed:.1f} s of {seconds} s")
    return recorded, elapsed


def measure_steady(url: str, seconds: float, events_per_second: int) -> dict[str, Any]:
    """`steady_load` in a child process: the change feed's writer."""
    recorded, elapsed = steady_load(url, seconds, events_per_second)
    return {"recorded": recorded, "elapsed": elapsed}


def measure_feed(url: str, seconds: float, events_per_second: int, subscribers: int) -> dict[str, Any]:
    """How long after it is recorded an event reaches the change feed's clients: `hajj-ledger serve --api-only` in a
    process of its own, `subscribers` ministry clients (told of every event) on one event loop here, and a writer
    recording a simulated season at `events_per_second` beside them."""
    import asyncio

    from hajj_ledger.api import agencies
    from hajj_ledger.domain.vocabulary import Role
    from hajj_ledger.projections.schema import engine_for

    _migrated_season(url, 20)
    engine = engine_for(url)
    with engine.begin() as connection:
        key = agencies.add(connection, Role.MINISTRY, "bench ministry")[1]
    engine.dispose()
    port = serving.free_port()
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": url}
    server = subprocess.Popen([str(CLI), "serve", "--api-only", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    lags: list[float] = []
    done = threading.Event()

    async def subscriber(ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # HTTP/1.0: the stream comes unframed (no chunked encoding), so lines are split only where reads end.
        writer.write(f"GET /v1/feed HTTP/1.0\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        ready.set()
        partial = b""
        while not done.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            *lines, partial = (partial + chunk).split(b"\r\n")  # a read may end inside a line: keep its start
            for line in lines:
                # Only the recorded time is read out of each event: the clients share two cores with the server and
                # the writer, and parsing 50,000 events a second whole would slow the very thing measured.
                at = line.find(b'"recorded_at":"') + 15
                if line.startswith(b"data: ") and at > 14:
                    lags.append(now - datetime.fromisoformat(line[at : line.index(b'"', at)].decode()).timestamp())
        writer.close()

    async def clients() -> None:
        ready = [asyncio.Event() for _ in range(subscribers)]
        tasks = [asyncio.create_task(subscriber(r)) for r in ready]
        for event in ready:
            await event.wait()
        loading.set()
        await asyncio.gather(*tasks)

    loading = threading.Event()
    recorded = 0
    elapsed = 0.0

    def write() -> None:
        nonlocal recorded, elapsed
        loading.wait()
        # In a process of its own: as a thread here it shared the subscribers' GIL and fell short of its rate.
        written = run_child("steady", url=url, seconds=seconds, events_per_second=events_per_second)
        recorded, elapsed = written["recorded"], written["elapsed"]
        time.sleep(1.0)
        done.set()

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        writing = threading.Thread(target=write)
        writing.start()
        asyncio.run(clients())
        writing.join()
    finally:
        server.terminate()
        server.wait(30)
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)] if lags else float("nan")
    return {"rate": 1000 * p99, "p50_ms": 1000 * lags[len(lags) // 2], "received": len(lags),
            "subscribers": subscribers, "load_events_per_s": recorded / elapsed}  # fmt: skip


NATS_URL = os.environ.get("HAJJ_LEDGER_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def measure_relay(url: str, pilgrims: int) -> dict[str, Any]:
    """Events a second the relay publishes to NATS JetStream (a stream of its own, file storage, deleted after),
    acknowledged, from an empty stream to the head of a simulated season's log, each event once for each of its
    audiences; and, as its baseline in the same run, a bare nats-py loop publishing the same messages (subjects and
    bodies), with the same headers and the same one acknowledgement a page, to another stream (the messages rendered
    before its clock starts), in events a second too. With the messages an event, and how many go to each role."""
    import asyncio
    from collections import Counter

    from hajj_ledger.following import Following
    from hajj_ledger.relay import PAGE, Target

    _migrated_season(url, pilgrims)
    mark = uuid4().hex[:12]
    target = Target(NATS_URL, f"BENCH_{mark}", f"bench{mark}")
    bare = Target(NATS_URL, f"BARE_{mark}", f"bare{mark}")
    ledger = _ledger(url)
    head = ledger.head()
    try:
        # The relay in a process of its own, so that its peak memory is its own (this one's holds the season's
        # simulation and the baseline's messages, rendered all at once).
        relayed = run_child("relay_alone", url=url, stream=target.stream, root=target.root, until=head)
        elapsed = relayed["seconds"]
        _, told = Following(ledger).read(0, head)
        messages = [(subject.decode(), t.body) for t in told for subject in bare.subjects(t)]
        page = round(PAGE * len(messages) / len(told))  # the messages of a page of the relay's, on average
        bare_seconds = asyncio.run(_bare_publish(bare, messages, page))
    finally:
        ledger.close()
        asyncio.run(_delete_streams(target, bare))
    rate, baseline = head / elapsed, head / bare_seconds
    roles = Counter(subject.split(".")[2] for subject, _ in messages)
    return {"rate": rate, "events": head, "seconds": elapsed, "baseline": baseline, "ratio": rate / baseline,
            "messages": len(messages), "messages_per_event": len(messages) / len(told),
            "baseline_messages_per_s": len(messages) / bare_seconds,
            "messages_per_event_by_role": {role: n / len(told) for role, n in roles.most_common()},
            "relay_rss_mb": relayed["rss_mb"]}  # fmt: skip


def measure_relay_alone(url: str, stream: str, root: str, until: int) -> dict[str, Any]:
    """`Relay.run` from an empty stream up to `until`: the relay's part of `measure_relay`."""
    from hajj_ledger.relay import Relay, Target

    ledger = _ledger(url)
    started = time.perf_counter()
    Relay(ledger, Target(NATS_URL, stream, root)).run(threading.Event(), until=until)
    seconds = time.perf_counter() - started
    ledger.close()
    return {"rate": until / seconds, "seconds": seconds}


async def _bare_publish(target: Any, messages: list[tuple[str, bytes]], page: int) -> float:
    """Seconds a plain nats-py loop takes to get `messages` acknowledged: each published with its id and expected
    sequence, the last of each page (`page` messages) as a request whose answer acknowledges the page."""
    import nats
    import orjson
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(NATS_URL)
    try:
        await connection.jetstream().add_stream(
            StreamConfig(name=target.stream, subjects=[f"{target.root}.>"], storage=StorageType.FILE)
        )
        started = time.perf_counter()
        for start in range(0, len(messages), page):
            stretch = messages[start : start + page]
            for sequence, (subject, body) in enumerate(stretch[:-1], start):
                headers = {"Nats-Msg-Id": str(sequence + 1), "Nats-Expected-Last-Sequence": str(sequence)}
                await connection.publish(subject, body, headers=headers)
            subject, body = stretch[-1]
            last = start + len(stretch) - 1
            headers = {"Nats-Msg-Id": str(last + 1), "Nats-Expected-Last-Sequence": str(last)}
            answer = await connection.request(subject, body, timeout=10, headers=headers)
            assert orjson.loads(answer.data)["seq"] == last + 1, answer.data
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _delete_streams(*targets: Any) -> None:
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(NATS_URL)
    try:
        for target in targets:
            with suppress(NotFoundError):
                await connection.jetstream().delete_stream(target.stream)
    finally:
        await connection.close()


def measure_identity(url: str, registrations: int, vault: int) -> dict[str, Any]:
    """Registration with identity against without; passport lookups in a vault of `vault` identities; erasure."""
    import random

    from bench.season import open_season_now
    from hajj_ledger.domain.commands import EraseIdentity, Identity, Register
    from hajj_ledger.domain.vocabulary import Actor, Role
    from hajj_ledger.identities import find_by_name, find_by_passport
    from hajj_ledger.ledger import Outcome
    from hajj_ledger.simulation import identities

    ledger = _ledger(url)
    open_season_now(ledger, SEASON)
    rng = random.Random(5)
    mission = Actor("mission-EGY-00001", Role.MISSION)
    arafat = datetime(2025, 6, 5).date()

    def registrations_of(with_identity: bool) -> list[tuple[Any, Any]]:
        return [
            (Register(command_id=uuid4(), occurred_at=datetime.now(UTC), pilgrim_id=uuid4(), season=SEASON,
                      country="EGY", identity=identities.identity(rng, "EGY", rng.random() < 0.5, arafat)
                      if with_identity else None), mission)
            for _ in range(registrations)
        ]  # fmt: skip

    seconds = {}
    for with_identity in (False, True):
        commands = registrations_of(with_identity)
        started = time.perf_counter()
        for begin in range(0, len(commands), 1000):
            assert all(isinstance(r, Outcome) for r in ledger.record_batch(commands[begin : begin + 1000]))
        seconds[with_identity] = time.perf_counter() - started
    # Fill the vault straight through the store (what a season of registrations would leave there).
    keys = ledger.keys
    passports = []
    named: list[tuple[UUID, str, str]] = []  # journey, mission, name as a mission officer would type it
    for begin in range(0, vault, 10_000):
        batch = []
        for _ in range(min(10_000, vault - begin)):
            identity = identities.identity(rng, "EGY", True, arafat)
            passports.append(identity["passport_number"])
            scope = f"mission-EGY-{rng.randrange(200):05d}"  # ~5,000 pilgrims a mission
            sealed = keys.seal(uuid4(), Identity.model_validate(identity), scope)
            batch.append(sealed)
            if len(passports) % max(1, vault // 1000) == 0:  # a thousand searches
                parts = identity["name_latin"].split()
                named.append((sealed.journey_id, scope, f"{parts[0]} {parts[-1]}"))
        _insert_sealed(ledger, batch)
    lookups = []
    passports_office = Actor("jawazat-JED", Role.JAWAZAT)
    for passport in rng.sample(passports, min(1000, len(passports))):
        started = time.perf_counter()
        assert find_by_passport(ledger, passport, "EGY", passports_office)
        lookups.append(time.perf_counter() - started)
    searches = []
    for journey_id, scope, name in named:
        started = time.perf_counter()
        assert journey_id in find_by_name(ledger, name, Actor(scope, Role.MISSION), limit=10_000)
        searches.append(time.perf_counter() - started)
    erasures = []
    registered = registrations_of(True)[:100]
    for command, actor in registered:
        outcome = ledger.record(command, actor)
        erase = EraseIdentity(
            command_id=uuid4(), occurred_at=datetime.now(UTC), journey_id=outcome.aggregate_id, reason="pilgrim_request"
        )
        started = time.perf_counter()
        ledger.record(erase, Actor("ledger-operator", Role.MINISTRY))
        erasures.append(time.perf_counter() - started)
    ledger.close()
    lookups.sort()
    erasures.sort()
    searches.sort()
    return {
        "rate": seconds[True] / seconds[False],  # the cost of identity: ≤ 1.25 wanted
        "lookup_p99_ms": 1000 * lookups[int(len(lookups) * 0.99)],
        "name_search_p99_ms": 1000 * searches[int(len(searches) * 0.99)],
        "erase_p99_ms": 1000 * erasures[int(len(erasures) * 0.99)],
        "vault": vault + 2 * registrations,
    }


def measure_api(**kwargs: Any) -> dict[str, Any]:
    from bench.http_load import measure_api as measure

    return measure(**kwargs)


def measure_races(**kwargs: Any) -> dict[str, Any]:
    from bench.races import measure_races as measure

    return measure(**kwargs)


def measure_chain(url: str, baseline_url: str, pilgrims: int, proofs: int) -> dict[str, Any]:
    """The hash chain: ingest with the sealer following in its own process against the same ingest without it
    (a second fresh store, same run); then verify the whole store; then one-event proofs checked by the README's
    own script, in process (no interpreter start-up counted)."""
    import contextlib
    import io
    import random
    import runpy

    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys

    baseline = measure_ingest(baseline_url, pilgrims)
    directory = Path(tempfile.mkdtemp(prefix="hajj-bench-chain-"))
    keys = SigningKeys.create(directory / "signing.json")
    ledger = _ledger(url)
    chain = Chain(ledger, keys)  # creates the chain's tables before the sealer starts
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HAJJ_LEDGER_DATABASE_URL": url, KEY_FILE_VARIABLE: str(keys.path)}
    sealer = subprocess.Popen([sys.executable, "-m", "hajj_ledger.cli", "seal", "--follow"], env=env)
    try:
        sealed = measure_ingest(url, pilgrims)
        waited = time.perf_counter()
        while chain.tables.seal_state()[0] < ledger.head():
            if sealer.poll() is not None:
                raise RuntimeError(f"the sealer exited ({sealer.returncode}) before catching up")
            time.sleep(0.05)
        behind_seconds = time.perf_counter() - waited
    finally:
        sealer.terminate()
        sealer.wait()
    chain.checkpoint()
    started = time.perf_counter()
    report = chain.verify(keys.public)
    verify_seconds = time.perf_counter() - started
    assert report.ok, report.findings[:3]
    shutil.copy(ROOT / "docs" / "examples" / "check_proof.py", directory)  # the script docs/auditing.md shows
    (directory / "keys.json").write_text(json.dumps(keys.public.to_json()))
    rng = random.Random(SEED)
    positions = [rng.randint(1, ledger.head()) for _ in range(proofs)]
    checks = []
    for position in positions:
        try:
            proof = chain.proof(position)
        except Exception:  # a gap in the positions: no event there
            continue
        (directory / "proof.json").write_text(json.dumps(proof))
        argv = sys.argv
        sys.argv = ["check_proof.py", str(directory / "proof.json"), str(directory / "keys.json")]
        try:
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                runpy.run_path(str(directory / "check_proof.py"))
            checks.append((time.perf_counter() - began) * 1000)
        finally:
            sys.argv = argv
    checks.sort()
    ledger.close()
    return {
        "rate": report.events / verify_seconds,
        "events": report.events,
        "checkpoints": report.checkpoints,
        "ingest_without": baseline["rate"],
        "ingest_with_sealer": sealed["rate"],
        "ingest_ratio": sealed["rate"] / baseline["rate"],
        "sealer_behind_at_end_s": behind_seconds,
        "proof_p50_ms": checks[len(checks) // 2],
        "proof_p99_ms": checks[int(len(checks) * 0.99) - 1 if len(checks) >= 100 else -1],
        "proofs": len(checks),
    }


def measure_export(url: str, pilgrims: int) -> dict[str, Any]:
    """An analysts' export to Parquet of a season with its views current, against reading the same events alone
    (the store's own pace, same run); peak memory a fifth of the way in and at the end."""
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from hajj_ledger.projections.export import export

    directory = Path(tempfile.mkdtemp(prefix="hajj-bench-export-"))
    os.environ[KEY_FILE_VARIABLE] = str(SigningKeys.create(directory / "signing.json").path)
    os.environ.setdefault("HAJJ_LEDGER_EXPORT_KEY", "X" * 43 + "=")
    _migrated_season(url, pilgrims)
    ledger = _ledger(url)
    head = ledger.head()
    started = time.perf_counter()
    for _ in Chain(ledger).tables.pages_with_digests(0, head, 10_000):
        pass
    read_rate = head / (time.perf_counter() - started)
    ledger.close()
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        marks.setdefault("first", time.perf_counter())
        if "fifth" not in marks and done >= total / 5:
            marks["fifth"], marks["rss_fifth"] = time.perf_counter(), _rss_mb()
        marks["last"] = time.perf_counter()

    began = time.perf_counter()
    manifest = export(directory / "out", url=url, progress=progress)
    seconds = time.perf_counter() - began
    events_seconds = marks["last"] - began
    return {
        "rate": head / events_seconds,
        "events": head,
        "read_rate": read_rate,
        "seconds_all": seconds,
        "files": sum(len(t["files"]) for t in manifest["tables"].values()),
        "rss_at_fifth_mb": marks["rss_fifth"],
        "rss_growth": _rss_mb() / marks["rss_fifth"],
    }


# A season's scale: one store of `events` events (a simulated season's log replicated with fresh ids, sealed and its
# views caught up), then each measurement in a process of its own, so that each has its own peak memory.


def measure_season_store(url: str, events: int, pilgrims: int, keys: str) -> dict[str, Any]:
    """Build the store: simulate, replicate in SQL, seal (signed checkpoints), catch every view up."""
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    os.environ[KEY_FILE_VARIABLE] = keys
    _migrated_season(url, pilgrims)
    ledger = _ledger(url)
    simulated = ledger.head()
    total = _replicate(url, events)
    started = time.perf_counter()
    chain = Chain(ledger, signing_keys(url, required=True))
    chain.checkpoint()
    seal_rate = total / (time.perf_counter() - started)
    ledger.close()
    runner = Runner(PROJECTIONS, url)
    started = time.perf_counter()
    runner.run(once=True)
    catchup_rate = total / (time.perf_counter() - started)
    runner.close()
    with _postgres(url) as connection:
        connection.execute("VACUUM ANALYZE")
    return {"rate": total, "events": total, "simulated_events": simulated, "simulated_pilgrims": pilgrims,
            "seal_rate": seal_rate, "catchup_rate": catchup_rate}  # fmt: skip


def measure_season_export(url: str, keys: str, out: str) -> dict[str, Any]:
    """`hajj-ledger export` of the whole store, sealed and with its views at the head: events/s over the whole
    export (events and every read model), and the events' part alone."""
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.projections.export import export

    os.environ[KEY_FILE_VARIABLE] = keys
    os.environ.setdefault("HAJJ_LEDGER_EXPORT_KEY", "X" * 43 + "=")
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        if "fifth" not in marks and done >= total / 5:
            marks["fifth"], marks["rss_fifth"] = time.perf_counter(), _rss_mb()
        marks["last"] = time.perf_counter()

    began = time.perf_counter()
    manifest = export(Path(out) / "export", url=url, progress=progress)
    seconds = time.perf_counter() - began
    events = manifest["tables"]["events"]["rows"]
    size = sum(f.stat().st_size for f in (Path(out) / "export").rglob("*") if f.is_file())
    return {"rate": events / seconds, "events": events, "seconds": seconds,
            "events_rate": events / (marks["last"] - began), "rss_at_fifth_mb": marks["rss_fifth"],
            "rss_growth": _rss_mb() / marks["rss_fifth"], "bytes": size}  # fmt: skip


def measure_season_reads(url: str, keys: str, samples: int) -> dict[str, Any]:
    """`journey_status` as of random positions (a page of 100, from the start or from a random journey id on),
    a journey as of a random position after its registration, and `verify` of the whole store."""
    import random

    from hajj_ledger.audit.as_of import AsOf, journey_as_of
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from hajj_ledger.projections.replay import journey_status_at

    os.environ[KEY_FILE_VARIABLE] = keys
    ledger = _ledger(url)
    head = ledger.head()
    pick = random.Random(SEED)
    events_table = ledger.recorder.events_table_name
    with _postgres(url) as connection:
        journeys = connection.execute(
            f"SELECT originator_id, notification_id FROM {events_table} WHERE originator_version = 1 "
            "AND topic = 'hajj_ledger.journey:Journey.Registered' ORDER BY random() LIMIT %s",
            (samples,),
        ).fetchall()

    def timed(action: Callable[[], Any]) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * 1000

    journey_status_at(ledger, head, None, 100)  # warm: the codec's converters are made on first use
    journey_as_of(ledger, journeys[0][0], AsOf(position=head))
    pages = [
        timed(lambda: journey_status_at(ledger, pick.randint(1, head), None if pick.random() < 0.5 else uuid4(), 100))
        for _ in range(samples)
    ]

    def journey_at(journey: UUID, registered: int) -> None:
        journey_as_of(ledger, journey, AsOf(position=pick.randint(registered, head)))

    past = [timed(functools.partial(journey_at, journey, registered)) for journey, registered in journeys]
    started = time.perf_counter()
    report = Chain(ledger).verify(SigningKeys.read(Path(keys)).public)
    verify_seconds = time.perf_counter() - started
    ledger.close()
    if not report.ok:
        raise RuntimeError(f"verify found {report.first}")
    return {"rate": report.events / verify_seconds, "events": head, "verify_rate": report.events / verify_seconds,
            "as_of_page": _quantiles(pages), "journey_as_of": _quantiles(past), "samples": samples}  # fmt: skip


# Closing a season (`--only seasons`, PostgreSQL): two seasons of `events` events each (a simulated season's log
# copied in SQL with fresh aggregate ids, in its own season's partition), sealed; each closed to a local archive.


def _copy_season(url: str, season: int, events: int) -> None:
    """Grow `season`'s part of the log to `events` by copying its simulated events in SQL with fresh aggregate ids."""
    ledger = _ledger(url)
    events_table = ledger.recorder.events_table_name
    ledger.close()
    with _postgres(url) as connection:
        [base] = connection.execute(f"SELECT count(*) FROM {events_table} WHERE season = %s", (season,)).fetchone()  # type: ignore[misc]
        for copy in range(1, -(-events // base)):
            connection.execute(
                f"INSERT INTO {events_table} (originator_id, originator_version, topic, state, season) "
                "SELECT md5(originator_id::text || %(copy)s)::uuid, originator_version, topic, state, season "
                f"FROM (SELECT * FROM {events_table} WHERE season = %(season)s ORDER BY notification_id "
                "LIMIT %(rows)s) AS s ORDER BY notification_id",
                {"copy": f"{season}-{copy}", "season": season, "rows": min(base, events - base * copy)},
            )


def _store_bytes(url: str) -> int:
    """The hot store's size: every table of its schema, with its indexes and TOAST."""
    with _postgres(url) as connection:
        [size] = connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class AS c JOIN pg_namespace AS n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()  # type: ignore[misc]
    return int(size)


def _season_bytes(url: str, season: int) -> int:
    with _postgres(url) as connection:
        [size] = connection.execute(
            "SELECT pg_total_relation_size('journeyledger_events_s' || %s) "
            "+ pg_total_relation_size('command_receipts_s' || %s)",
            (season, season),
        ).fetchone()  # type: ignore[misc]
    return int(size)


def measure_closing(
    url: str, fresh: str, events: int, pilgrims: int, appended: int, keys: str, out: str
) -> dict[str, Any]:
    """Close two seasons (the first of `events` events, the second of a tenth of that), each timed by stage, with
    the store's size before and after; verify the first one's archive; then the append rate (a simulated season of
    `appended` pilgrims) on this store and on a fresh one, in turn."""
    from hajj_ledger.archive.seasons import close
    from hajj_ledger.archive.verification import verify_archive
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.simulation.season import simulate

    os.environ[KEY_FILE_VARIABLE] = keys
    closed = (1445, 1446)
    ledger = _ledger(url)
    for season in closed:
        simulate(ledger, pilgrims, season, SEED)
    ledger.close()
    # The first season at full size; the second, closed too so that appending has two closed seasons behind it, at
    # a tenth of it at most (growing and sealing a second 10 M would double the run for no other figure).
    sizes = {closed[0]: events, closed[1]: min(events, max(events // 10, 1_000_000))}
    for season in closed:
        _copy_season(url, season, sizes[season])
    ledger = _ledger(url)
    signing = signing_keys(url, required=True)
    assert signing is not None
    started = time.perf_counter()
    Chain(ledger, signing).checkpoint()
    seal_rate = sum(sizes.values()) / (time.perf_counter() - started)
    with _postgres(url) as connection:
        connection.execute("VACUUM ANALYZE")
    closes = []
    for season in closed:
        before, season_bytes = _store_bytes(url), _season_bytes(url, season)
        started = time.perf_counter()
        stages: dict[str, float] = {}
        extent = close(ledger, season, f"{out}/{season}", signing, stages=stages)["events"]
        seconds, count = time.perf_counter() - started, extent["count"]
        closes.append({"season": season, "events": count, "seconds": seconds, "store_before": before,
                       "span": extent["last"] - extent["first"] + 1,
                       "store_after": _store_bytes(url), "season_bytes": season_bytes, "stages": stages,
                       "load": os.getloadavg()[0]})  # fmt: skip
    verdict = verify_archive(f"{out}/{closed[0]}", signing.public)  # the full-size season's
    assert verdict.ok, verdict.problems
    # The same seasons appended to each store in turn, three rounds, the first store of a round alternating: the
    # machine's drift falls on both alike, and the medians are compared.
    runs: dict[str, list[float]] = {"fresh": [], "closed": []}
    stores = {"fresh": _ledger(fresh), "closed": ledger}
    for turn, season in enumerate((1447, 1444, 1443)):  # seasons ended (the simulator plays only those)
        for name in ("fresh", "closed") if turn % 2 == 0 else ("closed", "fresh"):
            target = stores[name]
            started = time.perf_counter()
            head = target.head()
            simulate(target, appended, season, SEED + 1)
            runs[name].append((target.head() - head) / (time.perf_counter() - started))
    for target in stores.values():
        target.close()
    rates = {name: statistics.median(found) for name, found in runs.items()}
    return {"rate": verdict.events / verdict.seconds, "seal_rate": seal_rate, "closes": closes,
            "verify_rate": verdict.events / verdict.seconds, "verified": verdict.events, "append": rates,
            "append_runs": runs}  # fmt: skip


def closing_figure(sizes: Sizes, kind: str, events: int | None = None) -> dict[str, Any]:
    pilgrims = sizes.pilgrims if sizes is FULL else 40
    from hajj_ledger.audit.signing import SigningKeys

    with (
        tempfile.TemporaryDirectory(prefix="hajj-bench-closing-") as directory,
        fresh_store(kind) as url,
        fresh_store(kind) as fresh,
    ):
        keys = Path(directory) / "signing.json"
        SigningKeys.create(keys)
        found = run_child("closing", url=url, fresh=fresh, events=events or sizes.season, pilgrims=pilgrims,
                          appended=1000 if sizes is FULL else 20, keys=str(keys), out=directory)  # fmt: skip
    return {"median": found["rate"], "min": found["rate"], "max": found["rate"], "runs": 1, "rss_mb": found["rss_mb"],
            **found, "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip


def _closing_rows(kind: str, f: dict[str, Any]) -> list[str]:
    def line(label: str, value: str, target: str, met: bool) -> str:
        return f"| {kind} | {label} | {value} |  | 1 |  |  | {target} | {'yes' if met else '**no**'} |  |"

    rows = []
    largest = max(c["events"] for c in f["closes"])
    for c in f["closes"]:
        shrunk = c["store_before"] - c["store_after"]
        at_10m = c["seconds"] * 10_000_000 / c["events"] / 60  # the time grows with the events: all of it is per event
        stages = ", ".join(f"{name.replace('_', ' ')} {s:.0f} s" for name, s in c.get("stages", {}).items())
        load = f"; load {c['load']:.1f} on {os.cpu_count()} cores" if "load" in c else ""
        span = f" over {c['span']:,} positions" if "span" in c else ""
        if c["events"] == largest:  # the target's season; a smaller one's chain may span the larger one's positions
            rows.append(line(f"closing season {c['season']} ({c['events']:,} events{span}; {stages}{load}): archive, "
                             "verify, take out, minutes (extrapolated to 10 M events)",
                             f"{c['seconds'] / 60:.1f} ({at_10m:.1f})", "≤ 10 min at 10 M", at_10m <= 10))  # fmt: skip
        else:
            rows.append(f"| {kind} | closing season {c['season']} ({c['events']:,} events{span}, its archive's chain "
                        f"from the checkpoint before its first event to its last; {stages}{load}), minutes | "
                        f"{c['seconds'] / 60:.1f} |  | 1 |  |  |  |  |  |")  # fmt: skip
        rows.append(line(f"closing season {c['season']}: the store shrank by, MB (its partitions: "
                         f"{c['season_bytes'] / 2**20:,.0f} MB)", f"{shrunk / 2**20:,.0f}",
                         "its size", shrunk >= 0.95 * c["season_bytes"]))  # fmt: skip
    rows.append(line(f"an archived season verified alone, events/s ({f['verified']:,} events)",
                     _fmt(f["verify_rate"]), "≥ 150,000/s", f["verify_rate"] >= 150_000))  # fmt: skip
    ratio = f["append"]["closed"] / f["append"]["fresh"]
    runs = f.get("append_runs", {})
    spread = " - ".join(_fmt(r) for r in sorted(runs.get("closed", [])))
    rows.append(f"| {kind} | appending with two closed seasons behind, events/s, median of the rounds (fresh store, "
                f"same seasons, in turn: {_fmt(f['append']['fresh'])}) | {_fmt(f['append']['closed'])} | {spread} | "
                f"{len(runs.get('closed', [])) or 1} | {_fmt(f['append']['fresh'])} (fresh store) | {ratio:.2f}x | "
                f"within 5% | {'yes' if ratio >= 0.95 else '**no**'} |  |")  # fmt: skip
    return rows


def _insert_sealed(ledger: Any, sealed: list[Any]) -> None:
    """Through the recorder's own vault writes, without events (what a season of registrations leaves)."""
    recorder = ledger.recorder
    if type(recorder).__name__.startswith("SQLite"):
        with recorder.datastore.transaction(commit=True) as c:
            recorder._write_sealed(c, sealed)
        return
    from hajj_ledger.store.recorders import vault_row

    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(recorder.upsert_vault, [list(column) for column in zip(*map(vault_row, sealed), strict=True)])


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "api": measure_api,
    "races": measure_races,
    "chain": measure_chain,
    "export": measure_export,
    "identity": measure_identity,
    "catchup": measure_catchup,
    "rebuild": measure_rebuild,
    "trail": measure_trail,
    "lag": measure_lag,
    "feed": measure_feed,
    "steady": measure_steady,
    "relay": measure_relay,
    "relay_alone": measure_relay_alone,
    "season_store": measure_season_store,
    "season_export": measure_season_export,
    "season_reads": measure_season_reads,
    "closing": measure_closing,
    "ingest": measure_ingest,
    "raw": measure_raw,
    "library_default": measure_library_default,
    "single": measure_single,
    "scale": measure_scale,
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: list[str]) -> None:
    name, kwargs = argv[0], json.loads(argv[1])
    result = MEASURES[name](**kwargs)
    result["rss_mb"] = _rss_mb()
    print(json.dumps(result))


# The parent: fresh stores, repeated runs, the table.


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hajj-bench-") as directory:
            yield f"sqlite:///{directory}/ledger.sqlite3"
        return
    name = f"hajj_bench_{uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(name: str, **kwargs: Any) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def repeat(runs: int, kind: str, name: str, **kwargs: Any) -> list[dict[str, Any]]:
    results = []
    for _ in range(runs):
        with fresh_store(kind) as url:
            results.append(run_child(name, url=url, **kwargs))
    return results


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["rate"] for r in results]
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "runs": len(rates),
        "rss_mb": max(r["rss_mb"] for r in results),
        "details": results,
    }


def export_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    runs = repeat(sizes.runs, kind, "export", pilgrims=sizes.export)
    return {**summarise(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def chain_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    runs = []
    for _ in range(sizes.runs):
        with fresh_store(kind) as url, fresh_store(kind) as baseline_url:
            runs.append(run_child("chain", url=url, baseline_url=baseline_url, pilgrims=sizes.chain, proofs=200))
    return {**summarise(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def trail_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """One store of sizes.trail events (building it takes minutes; the pages are measured hundreds of times)."""
    runs = repeat(1, kind, "trail", events=sizes.trail, pilgrims=sizes.pilgrims if sizes is FULL else 200,
                  samples=100 if sizes is FULL else 30)  # fmt: skip
    return {**summarise(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def season_figure(sizes: Sizes, kind: str, events: int | None = None, keep: str | None = None) -> dict[str, Any]:
    """One store of `events` events (default sizes.season), then its export, its as-of reads and its verify, each in
    a fresh process; the export's time for a whole season of SEASON_PILGRIMS pilgrims, extrapolated at its rate.
    With `keep`, the store is the PostgreSQL database of that name: built if it is not there yet, and kept, since a
    season's store takes the better part of an hour to build (its signing keys and build figures are kept in it)."""
    from hajj_ledger.audit.signing import SigningKeys

    pilgrims = sizes.pilgrims if sizes is FULL else 300
    store_at = kept_store(keep) if keep else fresh_store(kind)
    with tempfile.TemporaryDirectory(prefix="hajj-bench-season-") as directory, store_at as url:
        keys = Path(directory) / "signing.json"
        kept = _kept_season(url) if keep else None
        if kept is None:
            SigningKeys.create(keys)
            store = run_child("season_store", url=url, events=events or sizes.season, pilgrims=pilgrims, keys=str(keys))
            if keep:
                _keep_season(url, keys.read_text(), store)
        else:
            text, store = kept
            keys.write_text(text)
        exported = run_child("season_export", url=url, keys=str(keys), out=directory)
        reads = run_child("season_reads", url=url, keys=str(keys), samples=300 if sizes is FULL else 40)
    season_events = SEASON_PILGRIMS * store["simulated_events"] / store["simulated_pilgrims"]
    return {"median": exported["rate"], "min": exported["rate"], "max": exported["rate"], "runs": 1,
            "rss_mb": exported["rss_mb"], "store": store, "export": exported, "reads": reads,
            "season_events": season_events, "season_export_minutes": season_events / exported["rate"] / 60,
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip


@contextmanager
def kept_store(name: str) -> Iterator[str]:
    """The PostgreSQL database `name`, created if missing, never dropped."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        if admin.execute("SELECT FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))


def _kept_season(url: str) -> tuple[str, dict[str, Any]] | None:
    """The signing keys (their file's text) and build figures of a kept season's store; None if it is not built."""
    with _postgres(url) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS bench_season (keys TEXT NOT NULL, store JSONB NOT NULL)")
        found = connection.execute("SELECT keys, store FROM bench_season").fetchone()
    return (found[0], found[1]) if found else None


def _keep_season(url: str, keys: str, store: dict[str, Any]) -> None:
    with _postgres(url) as connection:
        connection.execute("INSERT INTO bench_season VALUES (%s, %s)", (keys, json.dumps(store)))


FAILOVER_WRITES_TARGET = 2.0  # seconds without an acknowledged write across a promotion
FAILOVER_RESUMED_TARGET = 5.0  # seconds from the primary's crash until the leader's views show a write made after it


def failover_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """A promotion under load (tests/e2e/test_failover.py, checked as the test checks it), `sizes.runs` times: a
    private primary and its synchronous standby made with initdb and pg_basebackup, two nodes holding one URL naming
    both, four clients; the primary crashes, the standby is promoted. Medians of the seconds without an acknowledged
    write, and until the views (and the seal) showed a write made after the crash."""
    from tests.e2e.test_failover import failover, medians

    runs = []
    for _ in range(sizes.runs):
        with tempfile.TemporaryDirectory(prefix="hajj-bench-failover-") as directory:
            runs.append(failover(Path(directory), before=3.0 if sizes is FULL else 1.0))
    return {**medians(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def failover_rows(kind: str, figure: dict[str, Any]) -> list[str]:
    found = []
    for key, label, target in (
        ("writes_unavailable", "failover: writes unavailable across a promotion under load, s (longest gap between "
         "acknowledged writes; 2 nodes, 4 clients, synchronous standby promoted)", FAILOVER_WRITES_TARGET),
        ("views_resumed", "failover: from the primary's crash to the views showing a write made after it, s (the "
         "leader resumed on the new primary)", FAILOVER_RESUMED_TARGET),
        ("sealed_resumed", "failover: from the primary's crash to the seal reaching that write, s",
         FAILOVER_RESUMED_TARGET),
    ):  # fmt: skip
        f = figure[key]
        found.append(
            f"| {kind} | {label} | {f['median']:.2f} | {f['min']:.2f}-{f['max']:.2f} | {figure['runs']} |  |  | "
            f"≤ {target:g} s | {'yes' if f['median'] <= target else '**no**'} |  |"
        )
    return found


RESTORE_RTO_TARGET = 15 * 60  # seconds from the decision to restore to the ledger answering, verified, views current


def restore_figure(sizes: Sizes, kind: str, events: int | None = None) -> dict[str, Any]:
    """The restore drill (tests/e2e/test_restore_drill.py, checked as the test checks it) on a private primary
    grown to `events` events (default sizes.season: 10 M) as the season's store is (simulated, copied in SQL with
    fresh aggregate ids, sealed with signed checkpoints, every view caught up), archiving its WAL into a private
    pgBackRest repository: a full backup, writes, a named restore point, writes, a crash, a point-in-time restore
    into a new data directory. The RTO and each of its phases; the RPO to the point (acknowledged commands missing)
    and what archiving alone would have lost (acknowledged commands after the last archived WAL segment)."""
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from tests.clusters import private_root
    from tests.e2e.test_restore_drill import drill

    full = sizes is FULL
    grown: dict[str, Any] = {}
    with private_root("hajj-bench-restore-") as root:
        keys = SigningKeys.create(root / "signing.json").path
        env = {**os.environ, KEY_FILE_VARIABLE: str(keys)}

        def grow(url: str) -> None:
            pilgrims = sizes.pilgrims if full else 300
            grown.update(run_child("season_store", url=url, events=events or sizes.season, pilgrims=pilgrims,
                                   keys=str(keys)))  # fmt: skip

        server = {"shared_buffers": "1GB", "max_wal_size": "8GB"} if full else {}
        drilled = drill(root, env, grow=grow, rounds=3, commands=1000 if full else 20,
                        unarchived_for=10.0 if full else 1.0, server=server, thorough=not full)  # fmt: skip
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    found = {"median": drilled.rto, "min": drilled.rto, "max": drilled.rto, "runs": 1, "store": grown,
             **asdict(drilled), "rto": drilled.rto, "when": when}  # fmt: skip
    if drilled.events < sizes.season:  # a smaller store: what grows with it scaled up to a season's
        scale = sizes.season / drilled.events
        grows = {"restore": drilled.restore * scale, "verify": drilled.verify * scale, "backup": drilled.backup * scale}
        rto = drilled.rto + (drilled.restore + drilled.verify) * (scale - 1)
        found["extrapolated"] = {"events": sizes.season, "scale": scale, "rto": rto, **grows}
    return found


def restore_rows(kind: str, f: dict[str, Any]) -> list[str]:
    events = f"{f['events']:,} events, {f['store_bytes'] / 2**30:.1f} GiB"
    phases = ", ".join(
        f"{name} {f[key]:.1f}"
        for key, name in (("restore", "restore"), ("replay", "WAL replay"), ("seal", "seal"), ("verify", "verify"),
                          ("views", "views caught up"), ("answering", "first command acknowledged"))
    )  # fmt: skip
    lost = f["lost_before_point"]

    def rto_row(label: str, seconds: float) -> str:
        met = "yes" if seconds <= RESTORE_RTO_TARGET else "**no**"
        return f"| {kind} | {label} | {seconds:.1f} |  | 1 |  |  | ≤ {RESTORE_RTO_TARGET:g} s | {met} |  |"

    rows = [
        rto_row(
            f"restore drill: RTO, s, from the decision to restore to the ledger answering, verified, its views current "
            f"({events}, pgBackRest full backup + WAL archive, point-in-time restore into a new cluster; phases, s: "
            f"{phases})",
            f["rto"],
        )
    ]
    if x := f.get("extrapolated"):
        rows.append(
            rto_row(
                f"restore drill: RTO extrapolated to {x['events']:,} events, s (restore {x['restore']:.0f} s and "
                f"verify {x['verify']:.0f} s: scaled x{x['scale']:.2f} with the store, fixed costs and all; the WAL "
                "replay, seal, views and first command grow with the writes since the backup, not with the store)",
                x["rto"],
            )
        )
    return [
        *rows,
        f"| {kind} | restore drill: RPO to the restore point, acknowledged commands missing (of "
        f"{f['before_point']:,} acknowledged before it; {f['after_point']:,} after it, none restored) | {lost} |  | 1 "
        f"|  |  | 0 | {'yes' if lost == 0 else '**no**'} |  |",
        f"| {kind} | restore drill: archiving alone (archive_timeout 60 s), acknowledged commands after the last "
        f"archived WAL segment at the crash, lost to a restore to the end of the archive (the last "
        f"{f['unarchived_seconds']:.1f} s of writes) | {f['unarchived']:,} |  | 1 |  |  | stated | ≤ 60 s of "
        "writes |  |",
        f"| {kind} | restore drill: full backup, s ({events}; the repository then {f['backup_bytes'] / 2**30:.1f} GiB, "
        f"lz4) | {f['backup']:.1f} |  | 1 |  |  |  |  |  |",
    ]


def races_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """The contract and bed races (bench/races.py), each run on a fresh store; the time is the slowest race's."""
    runs = repeat(sizes.runs, kind, "races", racers=sizes.racers, places=sizes.race_places, beds=sizes.race_beds)
    return {**summarise(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


# How long the command line takes to start and answer: each command a fresh process, as a user runs it.
CLI = Path(sys.executable).parent / "hajj-ledger"
CLI_TARGET_SECONDS = 0.5


def cli_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Seconds from starting `hajj-ledger --help | status | history | record` to its exit, the median of several
    runs on a store of a small simulated season, migrated (`status` reads the read models' positions)."""
    runs = 1 if sizes is SMOKE else 9  # --smoke: one run each
    with fresh_store(kind) as url, tempfile.TemporaryDirectory(prefix="hajj-bench-pycache-") as pycache:
        # As a user's second run finds it: the package's bytecode compiled by the first (the untimed set-up below),
        # even where PYTHONDONTWRITEBYTECODE is set (then every run compiles the package's sources again).
        env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": url, "PYTHONPYCACHEPREFIX": pycache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def timed(*args: str) -> float:
            started = time.perf_counter()
            subprocess.run([str(CLI), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
            return time.perf_counter() - started

        timed("simulate", "--pilgrims", "60", "--seed", str(SEED))
        timed("migrate")
        pilgrim = str(uuid4())

        def registration() -> str:
            return json.dumps({"event": "Registered", "command_id": str(uuid4()), "pilgrim_id": str(uuid4()),
                               "occurred_at": "2025-05-01T08:00:00Z", "season": SEASON, "country": "EGY"})  # fmt: skip

        first = json.loads(registration()) | {"pilgrim_id": pilgrim}
        timed("record", json.dumps(first), "--role", "mission", "--agency", "mission-EGY-00001")
        commands: dict[str, Callable[[], list[str]]] = {
            "--help": lambda: ["--help"],
            "status": lambda: ["status"],
            "history": lambda: ["history", pilgrim, "--season", str(SEASON)],
            "record": lambda: ["record", registration(), "--role", "mission", "--agency", "mission-EGY-00001"],
        }
        figures = {}
        for name, argv in commands.items():
            seconds = [timed(*argv()) for _ in range(runs)]
            figures[name] = {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}
        load = os.getloadavg()[0]  # the figures depend on it: other work on the machine slows a start down
    return {"commands": figures, "runs": runs, "load": load, "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def dashboard_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    """The dashboard's first paint (Chromium's own paint timing) on the demo store `make run` makes: the glance page
    loaded afresh 9 times (--smoke: 2, on a demo season of 60 pilgrims), signed in as the ministry."""
    runs = 2 if sizes is SMOKE else 9
    with dashboard.demo_server(60 if sizes is SMOKE else 3000) as (base, keys, _):
        figure = dashboard.first_paint(base, keys, runs)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {**summarise([{**figure, "rss_mb": 0.0}]), "runs": runs, "when": when}


def serving_figure(plan: serving.Plan) -> dict[str, Any]:
    with fresh_store("postgres") as url:
        return serving.measure(url, plan, lambda text: print(f"[postgres] {text}", file=sys.stderr, flush=True))


def ingest_figures(sizes: Sizes, kind: str) -> dict[str, Any]:
    """Batched ingest and the raw INSERT of 1,000 rows a transaction, in one run (`--only ingest`)."""
    ingest = repeat(sizes.runs, kind, "ingest", pilgrims=sizes.pilgrims)
    raw_batched = repeat(sizes.runs, kind, "raw", rows=100 * 1000 if sizes is FULL else 2000, batch=1000,
                         state_bytes=int(ingest[0]["state_bytes"]))  # fmt: skip
    return {"ingest": summarise(ingest), "raw_batched": summarise(raw_batched)}


def identity_runs(sizes: Sizes, kind: str) -> list[dict[str, Any]]:
    """Registration with and without identity, then the vault filled for lookups and erasures (`--only identity`)."""
    return repeat(sizes.runs, kind, "identity", registrations=2000 if sizes is FULL else 100, vault=sizes.vault)


def suite(sizes: Sizes, stores: list[str], plan: serving.Plan) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for kind in stores:

        def say(text: str, kind: str = kind) -> None:
            print(f"[{kind}] {text}", file=sys.stderr, flush=True)

        say(f"batched ingest, {sizes.pilgrims:,} pilgrims x {sizes.runs}")
        ingest = repeat(sizes.runs, kind, "ingest", pilgrims=sizes.pilgrims)
        row_bytes = int(ingest[0]["state_bytes"])
        say("raw INSERT baselines")
        raw_batched = repeat(sizes.runs, kind, "raw", rows=100 * 1000 if sizes is FULL else 2000, batch=1000,
                             state_bytes=row_bytes)  # fmt: skip
        raw_single = repeat(sizes.runs, kind, "raw", rows=sizes.raw_single, batch=1, state_bytes=row_bytes)
        say("eventsourcing's default configuration")
        with fresh_store(kind) as source:
            run_child("ingest", url=source, pilgrims=sizes.pilgrims)
            library = repeat(sizes.runs, kind, "library_default", source_url=source)
        say("single commands, 1 and 64 clients")
        single_1 = repeat(sizes.runs, kind, "single", count=sizes.single, clients=1)
        single_64 = repeat(sizes.runs, kind, "single", count=sizes.single * 2, clients=64)
        say("projection catch-up and live lag")
        catchup = repeat(sizes.runs, kind, "catchup", pilgrims=sizes.pilgrims)
        lag = repeat(sizes.runs, kind, "lag", seconds=20 if sizes is FULL else 2, events_per_second=1000)
        say(f"identity vault, {sizes.vault:,} identities")
        identity = identity_runs(sizes, kind)
        say("HTTP API under load (a serve process, clients in this one)")
        api = repeat(sizes.runs, kind, "api", commands=sizes.single * 2, reads=sizes.single * 4,
                     batches=20 if sizes is FULL else 4, workers=2)  # fmt: skip
        say(f"hash chain: ingest with the sealer following, verify, proofs ({sizes.chain:,} pilgrims)")
        chain = chain_figure(sizes, kind)
        say(f"export to Parquet ({sizes.export:,} pilgrims)")
        exported = export_figure(sizes, kind)
        say("command line start, --help, status, history and record")
        cli = cli_figure(sizes, kind)
        say(f"scale run, {sizes.scale:,} pilgrims")
        scale = repeat(1, kind, "scale", pilgrims=sizes.scale)
        figures[kind] = {
            "ingest": summarise(ingest),
            "raw_batched": summarise(raw_batched),
            "raw_single": summarise(raw_single),
            "library_default": summarise(library),
            "single_1": summarise(single_1),
            "single_64": summarise(single_64),
            "scale": summarise(scale),
            "catchup": summarise(catchup),
            "lag": summarise(lag),
            "identity": summarise(identity),
            "api": summarise(api),
            "chain": chain,
            "export": exported,
            "cli": cli,
        }
        if kind == "sqlite":  # the demo store is SQLite's
            say("the dashboard's first paint on the demo store, in Chromium")
            figures[kind]["dashboard"] = dashboard_figure(sizes, kind)
        if kind == "postgres":  # the trail's figure: PostgreSQL only (its store is grown in PostgreSQL's SQL)
            say(f"audit trail, filtered pages on {sizes.trail:,} events")
            figures[kind]["trail"] = trail_figure(sizes, kind)
            say(f"a season's scale: export, as-of and verify on {sizes.season:,} events")
            figures[kind]["season"] = season_figure(sizes, kind)
            say(f"the contract and bed races, {sizes.racers} HTTP clients, 1 and 2 nodes")
            figures[kind]["races"] = races_figure(sizes, kind)
        if kind == "postgres" and sizes is FULL:  # not in --smoke: it needs wrk and minutes
            figures[kind]["serving"] = serving_figure(plan)
    return figures


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _rebuild_rows(kind: str, figure: dict[str, Any]) -> list[str]:
    """Every view from zero in bulk (`--only rebuild`, PostgreSQL), all together and each alone, beside the
    incremental runner's batches in the same run. The targets are for a 10 M-event store; this one is smaller."""
    run = figure["details"][0]
    events, together, batches = run["events"], run["rate"], run["incremental"]

    def line(label: str, value: float, target: float) -> str:
        met = "yes" if value >= target else "**no**"
        return (
            f"| {kind} | {label} ({events:,} events) | {_fmt(value)} |  | 1 | {_fmt(batches)} (the batches, same "
            f"run) | {value / batches:.2f}x | ≥ {_fmt(target)}/s (on 10 M events) | {met} |  |"
        )

    in_sql = run.get("in_sql", [])  # results measured before views were built in SQL name none

    def how(name: str) -> str:
        return "in SQL" if name in in_sql else "folded"

    found = [line(f"every view from zero in bulk ({len(in_sql)} in SQL), together, events/s", together, 100_000)]
    found += [
        line(f"{name} from zero in bulk ({how(name)}), alone, events/s", rate, 150_000)
        for name, rate in run["alone"].items()
    ]
    found.append(
        f"| {kind} | memory of the bulk path, all views together ({events:,} events) | "
        f"{run['rss_together_mb']:.0f} MB peak |  | 1 | {run['rss_incremental_mb']:.0f} MB (the batches) |  |  |  |  |"
    )
    return found


def table(figures: dict[str, Any], sizes: Sizes) -> str:
    rows = [
        "| store | figure | measured (median) | min-max | runs | baseline, same run | ratio | target | met "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(kind: str, label: str, key: str, base: tuple[str, str] | None, target: str, met: str) -> None:
        f = figures[kind][key]
        if base:
            b = figures[kind][base[0]]
            baseline, ratio = f"{_fmt(b['median'])} ({base[1]})", f"{f['median'] / b['median']:.2f}x"
        else:
            baseline, ratio = "", ""
        rows.append(
            f"| {kind} | {label} | {_fmt(f['median'])} | {_fmt(f['min'])}-{_fmt(f['max'])} | {f['runs']} | "
            f"{baseline} | {ratio} | {target} | {met} | {f['rss_mb']:.0f} MB |"
        )

    for kind in figures:
        f = figures[kind]
        pg = kind == "postgres"
        half_raw = f["ingest"]["median"] >= 0.5 * f["raw_batched"]["median"]
        twice_lib = f["ingest"]["median"] >= 2 * f["library_default"]["median"]
        ingest = f["ingest"]["details"][0]
        market = f", the market in the season: {ingest['market_events'] / ingest['events']:.1%} of its events" if (
            "market_events" in ingest) else ""  # fmt: skip
        row(kind, f"batched ingest, events/s (application, simulator's commands{market})", "ingest",
            ("raw_batched", "raw INSERT, 1,000 rows per transaction"),
            "≥ 0.5x raw" if pg else "", ("yes" if half_raw else "**no**") if pg else "")  # fmt: skip
        if pg and market:
            # Rounded as shown: the figure it is judged against was shown so.
            ratio = round(f["ingest"]["median"] / f["raw_batched"]["median"], 2)
            before = f"≥ {BEFORE_MARKET['raw_ratio']:.2f}x raw (before the market: {BEFORE_MARKET['rate']:,}/s)"
            row(kind, "batched ingest per event with the market, against before it (offers, contracts, buildings, "
                "checkpoints)", "ingest", ("raw_batched", "raw INSERT, 1,000 rows per transaction"), before,
                "yes" if ratio >= BEFORE_MARKET["raw_ratio"] else "**no**")  # fmt: skip
        row(kind, "batched ingest, events/s", "ingest", ("library_default", "eventsourcing default config"),
            "≥ 2x default" if pg else "", ("yes" if twice_lib else "**no**") if pg else "")  # fmt: skip
        row(kind, "raw INSERT, rows/s, one per transaction", "raw_single", None, "", "")
        row(kind, "raw INSERT, rows/s, 1,000 per transaction", "raw_batched", None, "", "")
        row(kind, "eventsourcing default config, events/s", "library_default", None, "", "")
        row(kind, "single commands, 1 client, commands/s", "single_1", None, "", "")
        met64 = ("yes" if f["single_64"]["median"] >= 5000 else "**no**") if pg else ""
        row(kind, "single commands, 64 concurrent clients, commands/s", "single_64",
            ("single_1", "1 client"), "≥ 5,000/s" if pg else "", met64)  # fmt: skip
        scale = f["scale"]["details"][0]
        flat = scale["rss_growth"] <= 1.25
        row(kind, f"scale run, {sizes.scale:,} pilgrims end to end, events/s", "scale", None,
            "memory flat", f"{'yes' if flat else '**no**'} (x{scale['rss_growth']:.2f} from 1/5 to end)")  # fmt: skip
    for kind in figures:
        f = figures[kind]
        pg = kind == "postgres"
        catch = f["catchup"]
        slowest = catch["details"][0]["slowest"]
        met = ("yes" if catch["median"] >= 50_000 else "**no**") if pg else ""
        row(kind, f"projection catch-up, events/s, slowest projection ({slowest})", "catchup", None,
            "≥ 50,000/s each" if pg else "", met)  # fmt: skip
        for name in catch["details"][0]["rates"]:
            values = sorted(d["rates"][name] for d in catch["details"])
            median = statistics.median(values)
            target, met = ("≥ 50,000/s", "yes" if median >= 50_000 else "**no**") if pg else ("", "")
            rows.append(
                f"| {kind} | catch-up, {name}, events/s | {_fmt(median)} | {_fmt(values[0])}-{_fmt(values[-1])} | "
                f"{len(values)} |  |  | {target} | {met} |  |"
            )
        if "rebuild" in f:
            rows.extend(_rebuild_rows(kind, f["rebuild"]))
        growth = max(d["rss_growth"] for d in catch["details"])
        rows.append(
            f"| {kind} | projection runner memory over a catch-up | {catch['rss_mb']:.0f} MB peak |  |  |  |  | "
            f"flat | {'yes' if growth <= 1.25 else '**no**'} (x{growth:.2f} from 1/5 to end) |  |"
        )
        met_lag = ("yes" if f["lag"]["median"] < 250 else "**no**") if pg else ""
        load = f["lag"]["details"][0]["load_events_per_s"]
        row(kind, f"live lag p99, ms, all nine projections, ledger taking {load:,.0f} events/s", "lag", None,
            "< 250 ms" if pg else "", met_lag)  # fmt: skip
        if "feed" in f:  # measured apart: `--only feed`
            feed = f["feed"]["details"][0]
            row(kind, f"change feed p99, ms, recorded to received, {feed['subscribers']} clients, ledger taking "
                f"{feed['load_events_per_s']:,.0f} events/s", "feed", None, "< 500 ms",
                "yes" if f["feed"]["median"] < 500 else "**no**")  # fmt: skip
        if "relay" in f:  # measured apart: `--only relay`
            relay = f["relay"]
            baselines = [d["baseline"] for d in relay["details"] if "baseline" in d]  # results before it had none
            bare = statistics.median(baselines) if baselines else 0
            fanned = [d["messages_per_event"] for d in relay["details"] if "messages_per_event" in d]
            fan_out = f" ({fanned[0]:.2f} messages an event, one per audience)" if fanned else ""
            rows.append(
                f"| {kind} | relay to NATS JetStream, events/s, acknowledged{fan_out} | {_fmt(relay['median'])} | "
                f"{_fmt(relay['min'])}-{_fmt(relay['max'])} | {relay['runs']} | "
                + (
                    f"{_fmt(bare)} (bare nats-py publish loop{', same messages' if fanned else ''}) | "
                    f"{relay['median'] / bare:.2f}x"
                    if bare
                    else " | "
                )
                + f" | ≥ 20,000/s | {'yes' if relay['median'] >= 20_000 else '**no**'} | {_relay_rss(relay)} |"
            )
    for kind in figures:
        if "failover" in figures[kind]:  # measured apart: `--only failover`
            rows += failover_rows(kind, figures[kind]["failover"])
        if "restore" in figures[kind]:  # measured apart: `--only restore`
            rows += restore_rows(kind, figures[kind]["restore"])
    for kind in figures:
        f, pg = figures[kind], kind == "postgres"
        details = f["identity"]["details"]
        cost = f["identity"]["median"]
        lookup = statistics.median(d["lookup_p99_ms"] for d in details)
        erase = statistics.median(d["erase_p99_ms"] for d in details)
        vault = details[0]["vault"]
        rows.append(
            f"| {kind} | registration with identity, cost as a multiple of without | {cost:.2f}x | "
            f"{min(d['rate'] for d in details):.2f}-{max(d['rate'] for d in details):.2f} | {len(details)} | "
            f"registration without identity | {cost:.2f}x | {'≤ 1.25x' if pg else ''} | "
            f"{('yes' if cost <= 1.25 else '**no**') if pg else ''} | {f['identity']['rss_mb']:.0f} MB |"
        )
        rows.append(
            f"| {kind} | passport lookup p99, ms, vault of {vault:,} identities | {lookup:.2f} |  | {len(details)} "
            f"|  |  | {'< 5 ms' if pg else ''} | {('yes' if lookup < 5 else '**no**') if pg else ''} |  |"
        )
        if "name_search_p99_ms" in details[0]:
            search = statistics.median(d["name_search_p99_ms"] for d in details)
            rows.append(
                f"| {kind} | name search p99, ms, two name parts, in a mission of ~{vault // 200:,} pilgrims "
                f"| {search:.2f} |  | {len(details)} |  |  |  |  |  |"
            )
        rows.append(
            f"| {kind} | erasing one pilgrim p99, ms | {erase:.1f} |  | {len(details)} |  |  | "
            f"{'< 100 ms' if pg else ''} | {('yes' if erase < 100 else '**no**') if pg else ''} |  |"
        )
    for kind in figures:
        if "api" not in figures[kind]:
            continue
        details, pg = figures[kind]["api"]["details"], kind == "postgres"

        def median(path: tuple[str, str], details: list[dict[str, Any]] = details) -> float:
            return float(statistics.median(d[path[0]][path[1]] for d in details))

        workers = details[0]["workers"]
        for label, rate_key, rate_target, p99_target in (
            ("HTTP single steps, 64 clients, commands/s", ("single", "per_second"), 5000, 50),
            ("HTTP journey status reads, 64 clients, requests/s", ("read", "per_second"), 5000, 10),
            ("HTTP batch endpoint (1,000 commands a request, 4 clients), events/s", ("batch", "events_per_second"),
             20000, None),
        ):  # fmt: skip
            rate, p99 = median(rate_key), median((rate_key[0], "p99_ms"))
            reached = rate >= rate_target and (p99_target is None or p99 < p99_target)
            target = f"≥ {rate_target:,}" + (f", p99 < {p99_target} ms" if p99_target else "")
            # Baseline, same run: the ledger itself, in process, without HTTP.
            inner = figures[kind]["single_64" if rate_key[0] == "single" else "ingest"]["median"]
            base = "in process, 64 clients" if rate_key[0] == "single" else "batched ingest, in process"
            baseline = f"{_fmt(inner)} ({base}) | {rate / inner:.2f}x" if rate_key[0] != "read" else " | "
            rows.append(
                f"| {kind} | {label} ({workers} workers), p99 {p99:.1f} ms | {_fmt(rate)} |  | {len(details)} | "
                f"{baseline} | {target if pg else ''} | {('yes' if reached else '**no**') if pg else ''} |  |"
            )
    for kind in figures:
        if "chain" not in figures[kind]:
            continue
        f, pg = figures[kind]["chain"], kind == "postgres"
        details = f["details"]
        events = details[0]["events"]
        met = ("yes" if f["median"] >= 150_000 else "**no**") if pg else ""
        row(kind, f"verify, events/s, whole store ({events:,} events, {details[0]['checkpoints']:,} checkpoints)",
            "chain", None, "≥ 150,000/s" if pg else "", met)  # fmt: skip
        ratio = statistics.median(d["ingest_ratio"] for d in details)
        with_sealer = statistics.median(d["ingest_with_sealer"] for d in details)
        without = statistics.median(d["ingest_without"] for d in details)
        rows.append(
            f"| {kind} | batched ingest with the sealer following (own process), events/s | {_fmt(with_sealer)} | "
            f"{min(d['ingest_ratio'] for d in details):.2f}-{max(d['ingest_ratio'] for d in details):.2f}x | "
            f"{len(details)} | {_fmt(without)} (same ingest, no sealer) | {ratio:.2f}x | "
            f"{'≥ 0.90x (sealing ≤ 10%)' if pg else ''} | {('yes' if ratio >= 0.9 else '**no**') if pg else ''} |  |"
        )
        p50 = statistics.median(d["proof_p50_ms"] for d in details)
        p99 = statistics.median(d["proof_p99_ms"] for d in details)
        met = ("yes" if p99 < 10 else "**no**") if pg else ""
        rows.append(
            f"| {kind} | one-event proof checked offline by the README script, p99 ms (p50 {p50:.2f}) | {p99:.2f} | "
            f" | {len(details)} |  |  | {'< 10 ms' if pg else ''} | {met} |  |"
        )
    for kind in figures:
        if "export" not in figures[kind]:
            continue
        f, pg = figures[kind]["export"], kind == "postgres"
        details = f["details"]
        read = statistics.median(d["read_rate"] for d in details)
        growth = max(d["rss_growth"] for d in details)
        met = ("yes" if f["median"] >= 100_000 else "**no**") if pg else ""
        rows.append(
            f"| {kind} | export to Parquet, events/s ({details[0]['events']:,} events, pseudonymised, with every read "
            f"model) | {_fmt(f['median'])} | {_fmt(f['min'])}-{_fmt(f['max'])} | {len(details)} | {_fmt(read)} "
            f"(reading the same events alone) | {f['median'] / read:.2f}x | {'≥ 100,000/s' if pg else ''} | {met} "
            f"| {f['rss_mb']:.0f} MB |"
        )
        flat = f["rss_mb"] < 300 and growth <= 1.25
        rows.append(
            f"| {kind} | export memory, peak RSS | {f['rss_mb']:.0f} MB |  |  |  |  | {'< 300 MB, flat' if pg else ''} "
            f"| {('yes' if flat else '**no**') if pg else ''} (x{growth:.2f} from 1/5 to end) |  |"
        )
    for kind in figures:
        if "season" in figures[kind]:
            rows.extend(_season_rows(kind, figures[kind]["season"]))
        if "seasons" in figures[kind]:
            rows.extend(_closing_rows(kind, figures[kind]["seasons"]))
    for kind in figures:
        if "trail" not in figures[kind]:
            continue
        f, pg = figures[kind]["trail"], kind == "postgres"
        d = f["details"][0]
        met = ("yes" if d["p99_ms"] < 50 and d["events"] >= 3_000_000 else "**no**") if pg else ""
        rows.append(
            f"| {kind} | audit trail, a filtered page (100 entries) p99 ms, {d['events']:,} events, {d['pages']:,} "
            f"pages (p50 {d['p50_ms']:.1f}) | {d['p99_ms']:.1f} |  | 1 |  |  | {'< 50 ms at 3 M events' if pg else ''} "
            f"| {met} | {f['rss_mb']:.0f} MB |"
        )
        for name, q in d["kinds"].items():
            rows.append(
                f"| {kind} | trail filtered by {name.replace('+', ' + ').replace('time', 'recorded time')}, p99 ms "
                f"(p50 {q['p50_ms']:.1f}) | {q['p99_ms']:.1f} |  | 1 |  |  |  |  |  |"
            )
        rows.append(
            f"| {kind} | trail index backfill (the projection runner from position 0), events/s "
            f"| {_fmt(d['backfill_rate'])} |  | 1 |  |  |  |  |  |"
        )
    for kind in figures:
        if "races" in figures[kind]:
            rows += race_rows(kind, figures[kind]["races"])
    for kind in figures:
        if "cli" not in figures[kind]:
            continue
        f = figures[kind]["cli"]
        for name, seconds in f["commands"].items():
            met = "yes" if seconds["median"] < CLI_TARGET_SECONDS else "**no**"
            rows.append(
                f"| {kind} | `hajj-ledger {name}`, start to exit, s | {seconds['median']:.2f} | "
                f"{seconds['min']:.2f}-{seconds['max']:.2f} | {f['runs']} |  |  | < {CLI_TARGET_SECONDS} s | {met} |  |"
            )
    for kind in figures:
        if "dashboard" not in figures[kind]:
            continue
        f = figures[kind]["dashboard"]
        details = f["details"][0]
        met = "yes" if f["median"] < dashboard.FIRST_PAINT_TARGET_MS else "**no**"
        rows.append(
            f"| {kind} | dashboard first paint on the demo store, ms (Chromium's paint timing; first contentful "
            f"{details['first_contentful_paint_ms']:.0f}, figures drawn {details['drawn_ms']:.0f}) "
            f"| {f['median']:.0f} | "
            f"{min(details['paints_ms']):.0f}-{max(details['paints_ms']):.0f} | {f['runs']} |  |  | "
            f"< {dashboard.FIRST_PAINT_TARGET_MS:,} ms | {met} |  |"
        )
    notes = []
    for kind in figures:
        scale = figures[kind]["scale"]["details"][0]
        notes.append(
            f"- {kind}: the scale run recorded {scale['events']:,} events in {scale['seconds']:,.0f} s; "
            f"a 1.8 M-pilgrim season at that rate takes about {scale['extrapolated_1_8m_hours']:.1f} h. "
            f"Peak memory {figures[kind]['scale']['rss_mb']:.0f} MB, "
            f"{scale['rss_at_fifth_mb']:.0f} MB a fifth of the way in."
        )
    for kind in figures:
        if "load" in figures[kind].get("cli", {}):
            f = figures[kind]["cli"]
            notes.append(
                f"- {kind}: the command line's start times were measured on {f['when']} with a load average of "
                f"{f['load']:.1f} on {os.cpu_count()} cores (the machine was shared with other work)."
            )
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def _relay_rss(relay: dict[str, Any]) -> str:
    """The relay's own peak memory (its process alone), where the results have it; else the run's, said so."""
    own = [d["relay_rss_mb"] for d in relay["details"] if "relay_rss_mb" in d]
    return f"{max(own):.0f} MB" if own else f"{relay['rss_mb']:.0f} MB (with the season's simulation)"


def _season_rows(kind: str, f: dict[str, Any]) -> list[str]:
    exported, reads, store = f["export"], f["reads"], f["store"]
    events = f"{store['events']:,} events"

    def line(label: str, value: str, target: str, met: bool, rss: str = "") -> str:
        return f"| {kind} | {label} | {value} |  | 1 |  |  | {target} | {'yes' if met else '**no**'} | {rss} |"

    page, journey = reads["as_of_page"], reads["journey_as_of"]
    return [
        line(f"season: export to Parquet, events/s ({events}, sealed, views at the head; every read model)",
             f"{_fmt(exported['rate'])} ({_fmt(exported['events_rate'])} the events alone)",
             "≥ 100,000/s", exported["rate"] >= 100_000, f"{exported['rss_mb']:.0f} MB"),
        line(f"season: export peak RSS ({events})", f"{exported['rss_mb']:.0f} MB (x{exported['rss_growth']:.2f} "
             "from 1/5 to end)", "< 300 MB", exported["rss_mb"] < 300),
        line(f"season: journey_status as of a random position, a page of 100, p99 ms (p50), {events}",
             f"{page['p99_ms']:.1f} ({page['p50_ms']:.1f})", "< 1,000 ms", page["p99_ms"] < 1000),
        line(f"season: a journey as of a random position, p99 ms (p50), {events}",
             f"{journey['p99_ms']:.1f} ({journey['p50_ms']:.1f})", "< 50 ms", journey["p99_ms"] < 50),
        line(f"season: verify, events/s ({events})", _fmt(reads["verify_rate"]), "≥ 150,000/s",
             reads["verify_rate"] >= 150_000, f"{reads['rss_mb']:.0f} MB"),
        line(f"season: export of {SEASON_PILGRIMS:,} pilgrims ({f['season_events'] / 1e6:.1f} M events), "
             "extrapolated, minutes", f"{f['season_export_minutes']:.1f}", "< 10", f["season_export_minutes"] < 10),
    ]  # fmt: skip


def race_rows(kind: str, races: dict[str, Any]) -> list[str]:
    """A row for each race on 1 and 2 nodes: the seconds to the last answer; met when every run had exactly the
    winners there was room for, every other client refused (naming the numbers, or a give-up, shown apart) and
    nothing over capacity in the views."""
    details = races["details"]
    found = []
    for name, what, unit in (("contract", "contract race: signatures", "places of an offer"),
                             ("bed", "bed race: check-ins", "beds of a building")):  # fmt: skip
        for nodes in (1, 2):
            runs = [d["runs"][f"{name}_{nodes}"] for d in details]
            seconds = sorted(r["seconds"] for r in runs)
            room, racers = runs[0]["room"], details[0]["racers"]
            where = "1 node of 2 workers" if nodes == 1 else "2 nodes, clients spread over both"

            def total(key: str, runs: list[dict[str, Any]] = runs) -> int:
                return sum(int(r[key]) for r in runs)

            free = ", ".join(str(r["view"]["free"]) for r in runs)
            over = sum(int(d["runs"][f"over_capacity_{nodes}"]) for d in details)
            winners = ", ".join(str(r["winners"]) for r in runs)
            label = (
                f"{what}, {racers} HTTP clients for the last {room} {unit}, {where}, s to the last answer (winners "
                f"{winners}; refused 409 naming the numbers {total('refused_naming_numbers')}; give-ups "
                f"{total('give_ups')}; other answers {total('other')}; free in the views after catch-up {free}; rows "
                f"over capacity {over})"
            )
            met = "yes" if all(r["holds"] for r in runs) else "**no**"
            found.append(
                f"| {kind} | {label} | {statistics.median(seconds):.3f} | {seconds[0]:.3f}-{seconds[-1]:.3f} | "
                f"{len(runs)} |  |  | exactly {room} win, none over capacity | {met} | {races['rss_mb']:.0f} MB |"
            )
    return found


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--out", type=Path, default=ROOT, help="where BENCHMARKS.md and bench/results.json go")
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--render", action="store_true", help="rewrite BENCHMARKS.md from bench/results.json only")
    parser.add_argument(
        "--only",
        choices=[
            "chain",
            "export",
            "serving",
            "trail",
            "cli",
            "catchup",
            "rebuild",
            "lag",
            "feed",
            "relay",
            "dashboard",
            "season",
            "seasons",
            "races",
            "ingest",
            "identity",
            "failover",
            "restore",
        ],
        action="append",
        help="measure these figures alone, into the results",
    )
    parser.add_argument("--quick", action="store_true", help="the serving tier in one short round (a few minutes)")
    parser.add_argument("--season-events", type=int, metavar="N", help="events in the season's store (10,000,000)")
    parser.add_argument("--season-keep", metavar="DB", help="the season's store in this PostgreSQL database, kept")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    plan = serving.QUICK if args.quick else serving.FULL
    results_file = args.out / "bench" / "results.json"
    serving_measured = "postgres" in args.stores.split(",") and (
        "serving" in (args.only or []) or not (args.only or args.render or args.smoke)
    )
    if serving_measured:
        try:
            serving.check_tools()  # before, not after, the rest of the suite
        except RuntimeError as missing:
            sys.exit(f"bench: {missing}")
    if args.render:
        results = json.loads(results_file.read_text())
    elif args.only:  # these figures' baselines are measured in their own runs: they stand beside an earlier suite
        results = json.loads(results_file.read_text())
        measure: dict[str, Callable[[Sizes, str], dict[str, Any]]] = {
            "chain": chain_figure,
            "export": export_figure,
            "cli": cli_figure,
            "serving": lambda _, kind: serving_figure(plan),
            "trail": trail_figure,
            "dashboard": dashboard_figure,
            "season": lambda sizes, kind: season_figure(sizes, kind, args.season_events, args.season_keep),
            "seasons": lambda sizes, kind: closing_figure(sizes, kind, args.season_events),
            "races": races_figure,
            "failover": failover_figure,
            "restore": lambda sizes, kind: restore_figure(sizes, kind, args.season_events),
            "catchup": lambda sizes, kind: summarise(repeat(sizes.runs, kind, "catchup", pilgrims=sizes.pilgrims)),
            "rebuild": lambda sizes, kind: summarise(
                repeat(1, kind, "rebuild", pilgrims=sizes.pilgrims, events=sizes.rebuild)
            ),
            "identity": lambda sizes, kind: summarise(identity_runs(sizes, kind)),
            "lag": lambda sizes, kind: summarise(
                repeat(sizes.runs, kind, "lag", seconds=20 if sizes is FULL else 2, events_per_second=1000)
            ),
            "feed": lambda sizes, kind: summarise(
                repeat(
                    sizes.runs,
                    kind,
                    "feed",
                    seconds=20 if sizes is FULL else 2,
                    events_per_second=1000,
                    subscribers=50 if sizes is FULL else 5,
                )
            ),
            "relay": lambda sizes, kind: summarise(
                repeat(sizes.runs, kind, "relay", pilgrims=4000 if sizes is FULL else 60)
            ),
        }
        for kind in args.stores.split(","):
            for name in args.only:
                postgres_only = ("serving", "trail", "season", "seasons", "races", "failover", "restore", "rebuild")
                if name in postgres_only and kind != "postgres":
                    continue  # a deployment's serving tier and races, the stores grown in SQL: PostgreSQL only
                if name == "dashboard" and kind != "sqlite":
                    continue  # the demo store's
                if name == "ingest":  # the batched ingest beside its raw baseline, measured in the same run
                    results["figures"][kind].update(ingest_figures(sizes, kind))
                else:
                    results["figures"][kind][name] = measure[name](sizes, kind)
                results_file.write_text(json.dumps(results, indent=2) + "\n")  # each figure kept as it is measured
    else:
        started = time.perf_counter()
        figures = suite(sizes, args.stores.split(","), plan)
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        minutes = (time.perf_counter() - started) / 60
        results = {"when": when, "machine": machine, "minutes": minutes, "sizes": sizes.__dict__, "figures": figures}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")
    when, machine = results["when"], results["machine"]
    has_serving = "serving" in results["figures"].get("postgres", {})
    text = (
        "# Benchmarks\n\n"
        f"Measured by `make bench` on {when} ({machine}; PostgreSQL and SQLite on the same machine), "
        f"{results.get('minutes', 13):.0f} minutes in all. Each figure is the median of its runs, each run a "
        "fresh process on a fresh database; baselines are measured in the same run. Raw data: "
        "`bench/results.json`.\n\n"
        + table(results["figures"], Sizes(**results["sizes"]))
        + "\n"
        + (serving.render(results["figures"]["postgres"]["serving"]) + "\n" if has_serving else "")
        + (ROOT / "bench" / "NOTES.md").read_text()
    )
    (args.out / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
