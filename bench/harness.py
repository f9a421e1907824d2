"""What every scenario of `make bench` shares: the sizes, fresh stores, measurements in child processes and their
summaries, and the simulated season most scenarios start from.

A measurement is a module-level function of a scenario's module returning a dict with at least "rate"; `run_child`
runs it in a fresh process (`bench/run.py --child module:function`), which adds its peak memory as "rss_mb".
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "run.py"
CLI = Path(sys.executable).parent / "hajj-ledger"  # the command line, started as a user starts it
POSTGRES_URL = os.environ.get("HAJJ_LEDGER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEASON, SEED = 1446, 11
SEASON_PILGRIMS = 1_800_000  # a whole season, for which the export's time is extrapolated
EXPORT_KEY = "X" * 43 + "="  # the exports' pseudonymisation key, for benchmarks only

Measure = Callable[..., dict[str, Any]]


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
SMOKE = Sizes(
    pilgrims=60,
    vault=500,
    single=150,
    scale=120,
    raw_single=100,
    runs=1,
    chain=40,
    export=40,
    trail=50_000,
    season=60_000,
    racers=8,
    race_places=2,
    race_beds=2,
    rebuild=20_000,
)


def now() -> str:
    """When a figure was measured, as the results keep it."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def rss_mb() -> float:
    """This process's peak memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def lag_quantiles(lags: list[float]) -> dict[str, float]:
    """Lags in seconds as a figure: its p99 in ms as the rate, and its p50."""
    ordered = sorted(lags)
    p99 = ordered[int(len(ordered) * 0.99)] if ordered else float("nan")
    return {"rate": 1000 * p99, "p50_ms": 1000 * ordered[len(ordered) // 2]}


# Stores: a fresh one for each measurement, dropped after.


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


@contextmanager
def kept_store(name: str) -> Iterator[str]:
    """The PostgreSQL database `name`, created if missing, never dropped."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        if admin.execute("SELECT FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))


def postgres(url: str) -> psycopg.Connection[Any]:
    """A plain connection to the ledger's PostgreSQL store, as the ledger connects to it."""
    from hajj_ledger.store.connections import Postgres

    found = Postgres.from_url(url)
    return psycopg.connect(found.conninfo, autocommit=True, **found.connect_kwargs())


# Measurements in child processes, repeated, summarised.


def child(target: str, kwargs: str) -> None:
    """The child's side of `run_child`: the measurement `module:function`, its result and peak memory as JSON."""
    module, name = target.split(":")
    measure: Measure = getattr(importlib.import_module(module), name)
    result = measure(**json.loads(kwargs))
    result["rss_mb"] = rss_mb()
    print(json.dumps(result))


def run_child(measure: Measure, **kwargs: Any) -> dict[str, Any]:
    target = f"{measure.__module__}:{measure.__name__}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(RUN), "--child", target, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{measure.__name__} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def repeat(runs: int, kind: str, measure: Measure, **kwargs: Any) -> list[dict[str, Any]]:
    """`measure` `runs` times, each on a fresh store of `kind`."""
    results = []
    for _ in range(runs):
        with fresh_store(kind) as url:
            results.append(run_child(measure, url=url, **kwargs))
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


# The simulated season most measurements start from.


def ledger(url: str) -> Any:
    from hajj_ledger.ledger import JourneyLedger

    return JourneyLedger(url)


def simulated_ledger(url: str) -> Any:
    """A ledger with the simulated season opened (as `simulate` opens it), for the workloads that record the
    simulator's commands themselves: a season never opened takes no registration."""
    from hajj_ledger.simulation.season import open_season

    opened = ledger(url)
    open_season(opened, SEASON)
    return opened


def season_batches(pilgrims: int) -> Iterator[list[tuple[Any, Any]]]:
    """The simulator's commands in the ledger's batches, built before the clock starts on each batch."""
    from hajj_ledger.simulation.season import BATCH, chunks

    for _, planned in chunks(pilgrims, SEED, SEASON):
        for start in range(0, len(planned), BATCH):
            yield [(step.command(), step.actor) for step in planned[start : start + BATCH]]


def migrated_season(url: str, pilgrims: int) -> None:
    """A simulated season of `pilgrims` recorded, and the read models' tables made."""
    from hajj_ledger.migrations import upgrade
    from hajj_ledger.projections.schema import engine_for
    from hajj_ledger.simulation.season import simulate

    simulated = ledger(url)
    simulate(simulated, pilgrims, SEASON, SEED)
    simulated.close()
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()


def replicate(url: str, events: int) -> int:
    """Grow a simulated season's log to `events` by copying it in SQL, a copy at a time: fresh aggregate ids, the same
    agencies and events, the recorded times moved on by the season's span each copy (so that they run on through
    the log, as a real one's do). Returns the number of events."""
    grown = ledger(url)
    events_table = grown.recorder.events_table_name
    grown.close()
    # The states are copied as text, not through jsonb (which would respell them with spaces and its own key order):
    # a copy is written exactly as the codec writes, `{"timestamp":"…"` first, so that readers meet the log they
    # would meet in production.
    recorded = 'substring(convert_from(state, \'UTF8\') from \'^\\{"timestamp":"([^"]*)"\')::timestamptz'
    with postgres(url) as connection:
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
