"""SQLite's season files (issue 28; hajj_ledger.store.season_files), measured on a store of a few hundred thousand
events: a catch-up page and an aggregate's history with every season in the main file, then with one season in a
file of its own, attached; the move of that season into its file; its take-out (the file unregistered and deleted)
against the DELETE of its rows that the take-out was before.

    .venv/bin/python bench/season_files.py [--events 300000] [--rounds 31]

The log is written straight into the main file, as the recorder lays it out: aggregates of ten events, season 1446's
at the first 60% of the positions, season 1447's overlapping its last 10% and on to the end, a licensed building's
(no season) every hundredth. Each read is timed on the ledger's own recorder; the two stores (every season in the main
file, and the same with season 1446 in its file) are read in turn, `--rounds` times each, and medians compared.
"""

from __future__ import annotations

import argparse
import functools
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from uuid import UUID, uuid5

from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.store.season_files import SeasonFiles

CLOSED, OPEN = 1446, 1447
PAGE = 1000
EVENT = b'{"timestamp":"2025-06-01T00:00:00+00:00","stamp":{"agency_id":"mission-NGA-00007"},"port":"MED"}' * 3


def _fill(path: Path, events: int) -> list[UUID]:
    """The main file's log: `events` events of aggregates of ten, by season as the docstring says."""
    rows, aggregates = [], []
    closed_until, open_from = int(events * 0.6), int(events * 0.5)
    position = 0
    streams: dict[int, list[tuple[UUID, int]]] = {CLOSED: [], OPEN: [], 0: []}
    namespace = UUID(int=28)
    for index in range(events // 10):
        aggregates.append(uuid5(namespace, str(index)))
    randomly = random.Random(28)
    next_aggregate = iter(aggregates)
    for position in range(1, events + 1):
        if position % 100 == 0:
            season = 0
        elif position <= open_from:
            season = CLOSED
        elif position > closed_until:
            season = OPEN
        else:
            season = randomly.choice((CLOSED, OPEN))
        stream = streams[season]
        if not stream or stream[-1][1] == 10:
            stream.append((next(next_aggregate, uuid5(namespace, f"x{position}")), 0))
        aggregate, version = stream[-1]
        stream[-1] = (aggregate, version + 1)
        rows.append((position, aggregate.hex, version + 1, "hajj_ledger.journey:Journey.Step", EVENT, season))
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state, season) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.executemany(
            "INSERT INTO command_receipts VALUES (?, 'f', '{}', ?)",
            [(uuid5(namespace, f"c{p}").hex, s) for p, _, v, _, _, s in rows if v == 1],
        )
        connection.execute("COMMIT")
    return [UUID(hex=r[1]) for r in rows if r[2] == 1]


def _reads(ledger: JourneyLedger, events: int, aggregates: list[UUID]) -> dict[str, Callable[[], object]]:
    """A catch-up page of 1,000 events (the runner's select_notifications, the relay's tail) at the season's start,
    in the overlap and after it; a hundred aggregates' histories."""
    recorder, store = ledger.recorder, ledger.store
    sample = random.Random(7).sample(aggregates, 100)
    reads: dict[str, Callable[[], object]] = {}
    for name, at in (("start", 1), ("overlap", int(events * 0.55)), ("after", int(events * 0.8))):
        reads[f"page at {name}"] = functools.partial(recorder.select_notifications, at, PAGE)
        reads[f"tail at {name}"] = functools.partial(store.select_written_after, at, PAGE)
    reads["history (100)"] = lambda: [store.select_aggregate_notifications(a) for a in sample]
    return reads


def _compared(urls: tuple[str, str], events: int, aggregates: list[UUID], rounds: int) -> dict[str, list[float]]:
    """Each read's median microseconds of this thread's CPU on the two stores (the file's pages cached: CPU time is
    the read's cost, whatever else runs on the machine), timed in turn (A, B, A, B, ...), after one call each not
    timed."""
    with JourneyLedger(urls[0], create_tables=False) as a, JourneyLedger(urls[1], create_tables=False) as b:
        both = [_reads(a, events, aggregates), _reads(b, events, aggregates)]
        found: dict[str, list[float]] = {}
        for name in both[0]:
            taken: list[list[float]] = [[], []]
            for side in (0, 1):
                both[side][name]()
            for _ in range(rounds):
                for side in (0, 1):
                    started = time.thread_time()
                    both[side][name]()
                    taken[side].append((time.thread_time() - started) * 1e6)
            found[name] = [statistics.median(t) for t in taken]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=31)
    arguments = parser.parse_args()
    events, rounds = arguments.events, arguments.rounds
    with tempfile.TemporaryDirectory(prefix="sqliteseasons_") as directory:
        path, kept = Path(directory) / "ledger.sqlite3", Path(directory) / "before.sqlite3"
        url = f"sqlite:///{path}"
        JourneyLedger(url).close()  # the store's tables
        aggregates = _fill(path, events)
        shutil.copy(path, kept)  # every season in the main file, to compare with

        files = SeasonFiles(path)
        with JourneyLedger(url, create_tables=False) as ledger:
            datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
            started = time.perf_counter()
            moved = files.build(CLOSED, files.copy_from_main(CLOSED))
            built = time.perf_counter() - started
            started = time.perf_counter()
            with datastore.transaction(commit=True) as cursor:
                files.register(cursor, CLOSED, *moved)
            registered = time.perf_counter() - started
        compared = _compared((f"sqlite:///{kept}", url), events, aggregates, rounds)
        with JourneyLedger(url, create_tables=False) as ledger:
            started = time.perf_counter()
            with ledger.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
                files.unregister(cursor, CLOSED)
            files.remove(CLOSED)
            taken_out = time.perf_counter() - started
        with closing(sqlite3.connect(kept, isolation_level=None)) as connection:
            started = time.perf_counter()
            connection.execute("BEGIN")
            connection.execute("DELETE FROM stored_events WHERE season = ?", (CLOSED,))
            connection.execute("DELETE FROM command_receipts WHERE season = ?", (CLOSED,))
            connection.execute("COMMIT")
            deleted = time.perf_counter() - started

    print(f"{events:,} events; season {CLOSED}: {moved[0]:,} events, {moved[1]:,} receipts; medians of {rounds}")
    print(f"{'read (CPU µs)':<22}{'main file':>12}{'season file':>14}{'ratio':>8}")
    for name, (before, after) in compared.items():
        print(f"{name:<22}{before:>12,.0f}{after:>14,.0f}{after / before:>8.2f}")
    print(f"move: file written {built:.2f} s, registered (rows deleted from the main file) {registered:.2f} s")
    print(f"take-out: unregistered and deleted {taken_out * 1000:.1f} ms; the DELETE it replaces {deleted:.2f} s")


if __name__ == "__main__":
    main()
