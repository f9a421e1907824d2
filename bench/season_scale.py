"""A season's scale (`--only season`, PostgreSQL): one store of 10 M events (a simulated season's log replicated
with fresh ids, sealed and its views caught up), then its export, its as-of reads and its verify, each in a
process of its own, so that each has its own peak memory."""

from __future__ import annotations

import functools
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench.harness import (
    EXPORT_KEY,
    FULL,
    SEASON_PILGRIMS,
    SEED,
    Sizes,
    fresh_store,
    kept_store,
    ledger,
    migrated_season,
    now,
    postgres,
    quantiles,
    replicate,
    rss_mb,
    run_child,
)


def measure_season_store(url: str, events: int, pilgrims: int, keys: str) -> dict[str, Any]:
    """Build the store: simulate, replicate in SQL, seal (signed checkpoints), catch every view up."""
    from hajj_ledger.audit.chain import Chain, signing_keys
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.projections import PROJECTIONS
    from hajj_ledger.projections.runner import Runner

    os.environ[KEY_FILE_VARIABLE] = keys
    migrated_season(url, pilgrims)
    grown = ledger(url)
    simulated = grown.head()
    total = replicate(url, events)
    started = time.perf_counter()
    chain = Chain(grown, signing_keys(url, required=True))
    chain.checkpoint()
    seal_rate = total / (time.perf_counter() - started)
    grown.close()
    runner = Runner(PROJECTIONS, url)
    started = time.perf_counter()
    runner.run(once=True)
    catchup_rate = total / (time.perf_counter() - started)
    runner.close()
    with postgres(url) as connection:
        connection.execute("VACUUM ANALYZE")
    return {
        "rate": total,
        "events": total,
        "simulated_events": simulated,
        "simulated_pilgrims": pilgrims,
        "seal_rate": seal_rate,
        "catchup_rate": catchup_rate,
    }


def measure_season_export(url: str, keys: str, out: str) -> dict[str, Any]:
    """`hajj-ledger export` of the whole store, sealed and with its views at the head: events/s over the whole
    export (events and every read model), and the events' part alone."""
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE
    from hajj_ledger.projections.export import export

    os.environ[KEY_FILE_VARIABLE] = keys
    os.environ.setdefault("HAJJ_LEDGER_EXPORT_KEY", EXPORT_KEY)
    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        if "fifth" not in marks and done >= total / 5:
            marks["fifth"], marks["rss_fifth"] = time.perf_counter(), rss_mb()
        marks["last"] = time.perf_counter()

    began = time.perf_counter()
    manifest = export(Path(out) / "export", url=url, progress=progress)
    seconds = time.perf_counter() - began
    events = manifest["tables"]["events"]["rows"]
    size = sum(f.stat().st_size for f in (Path(out) / "export").rglob("*") if f.is_file())
    return {
        "rate": events / seconds,
        "events": events,
        "seconds": seconds,
        "events_rate": events / (marks["last"] - began),
        "rss_at_fifth_mb": marks["rss_fifth"],
        "rss_growth": rss_mb() / marks["rss_fifth"],
        "bytes": size,
    }


def measure_season_reads(url: str, keys: str, samples: int) -> dict[str, Any]:
    """`journey_status` as of random positions (a page of 100, from the start or from a random journey id on),
    a journey as of a random position after its registration, and `verify` of the whole store."""
    from hajj_ledger.audit.as_of import AsOf, journey_as_of
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys
    from hajj_ledger.projections.replay import journey_status_at

    os.environ[KEY_FILE_VARIABLE] = keys
    read = ledger(url)
    head = read.head()
    pick = random.Random(SEED)
    events_table = read.recorder.events_table_name
    with postgres(url) as connection:
        journeys = connection.execute(
            f"SELECT originator_id, notification_id FROM {events_table} WHERE originator_version = 1 "
            "AND topic = 'hajj_ledger.journey:Journey.Registered' ORDER BY random() LIMIT %s",
            (samples,),
        ).fetchall()

    def timed(action: Callable[[], Any]) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * 1000

    journey_status_at(read, head, None, 100)  # warm: the codec's converters are made on first use
    journey_as_of(read, journeys[0][0], AsOf(position=head))
    pages = [
        timed(lambda: journey_status_at(read, pick.randint(1, head), None if pick.random() < 0.5 else uuid4(), 100))
        for _ in range(samples)
    ]

    def journey_at(journey: UUID, registered: int) -> None:
        journey_as_of(read, journey, AsOf(position=pick.randint(registered, head)))

    past = [timed(functools.partial(journey_at, journey, registered)) for journey, registered in journeys]
    started = time.perf_counter()
    report = Chain(read).verify(SigningKeys.read(Path(keys)).public)
    verify_seconds = time.perf_counter() - started
    read.close()
    if not report.ok:
        raise RuntimeError(f"verify found {report.first}")
    return {
        "rate": report.events / verify_seconds,
        "events": head,
        "verify_rate": report.events / verify_seconds,
        "as_of_page": quantiles(pages),
        "journey_as_of": quantiles(past),
        "samples": samples,
    }


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
            events = events or sizes.season
            store = run_child(measure_season_store, url=url, events=events, pilgrims=pilgrims, keys=str(keys))
            if keep:
                _keep_season(url, keys.read_text(), store)
        else:
            text, store = kept
            keys.write_text(text)
        exported = run_child(measure_season_export, url=url, keys=str(keys), out=directory)
        reads = run_child(measure_season_reads, url=url, keys=str(keys), samples=300 if sizes is FULL else 40)
    season_events = SEASON_PILGRIMS * store["simulated_events"] / store["simulated_pilgrims"]
    rate = exported["rate"]
    return {
        "median": rate,
        "min": rate,
        "max": rate,
        "runs": 1,
        "rss_mb": exported["rss_mb"],
        "store": store,
        "export": exported,
        "reads": reads,
        "season_events": season_events,
        "season_export_minutes": season_events / rate / 60,
        "when": now(),
    }


def _kept_season(url: str) -> tuple[str, dict[str, Any]] | None:
    """The signing keys (their file's text) and build figures of a kept season's store; None if it is not built."""
    with postgres(url) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS bench_season (keys TEXT NOT NULL, store JSONB NOT NULL)")
        found = connection.execute("SELECT keys, store FROM bench_season").fetchone()
    return (found[0], found[1]) if found else None


def _keep_season(url: str, keys: str, store: dict[str, Any]) -> None:
    with postgres(url) as connection:
        connection.execute("INSERT INTO bench_season VALUES (%s, %s)", (keys, json.dumps(store)))
