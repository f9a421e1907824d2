"""The audit trail's index on SQLite and PostgreSQL: a trail filtered by agency, event or recorded time, read through
the index, is exactly the log filtered event by event (the same entries, order and pages), however far the index
has reached, and whatever the order of the recorded times."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from hajj_ledger.audit import reads as audit
from hajj_ledger.audit.reads import Entry, TrailQuery
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import TRAIL_INDEX
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate

PILGRIMS = 40


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 10 positions, so that a small season has many, and a time range bounds the positions to read."""
    monkeypatch.setattr(audit, "BLOCK", 10)


def migrated(url: str) -> Runner:
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    return Runner([TRAIL_INDEX], url)


@pytest.fixture
def indexed(store_url: str) -> Iterator[tuple[JourneyLedger, Runner]]:
    """A season, migrated, with the trail's index caught up."""
    ledger = JourneyLedger(store_url)
    simulate(ledger, PILGRIMS, 1446, seed=11)
    runner = migrated(store_url)
    runner.run(once=True)
    yield ledger, runner
    runner.close()
    ledger.close()


def pages(ledger: JourneyLedger, query: TrailQuery, limit: int) -> list[list[Entry]]:
    found: list[list[Entry]] = []
    after: int | None = 0
    while after is not None:
        page = audit.trail(ledger, query, after, limit)
        found.append(page.entries)
        after = page.next_after
    return found


def the_log(ledger: JourneyLedger) -> list[Entry]:
    """Every event of the log, read straight from it (no filter: the index is not asked)."""
    return [e for page in pages(ledger, TrailQuery(), 1000) for e in page]


def queries(log: list[Entry], seed: int, count: int = 40) -> Iterator[TrailQuery]:
    """Filters of every kind, alone and combined, with values from the log (rare agencies too) and some that match
    nothing."""
    pick = random.Random(seed)
    agencies = [*sorted({e.agency_id for e in log}), "nobody"]
    events = [*sorted({e.event for e in log}), "DeathRecorded"]
    times = sorted(e.recorded_at for e in log)
    yield TrailQuery(agency_id=min(agencies, key=lambda a: sum(e.agency_id == a for e in log)))  # the rarest
    for _ in range(count):
        fields: dict[str, Any] = {}
        kinds = pick.sample(["agency", "event", "from", "until", "positions"], pick.randint(1, 3))
        if "agency" in kinds:
            fields["agency_id"] = pick.choice(agencies)
        if "event" in kinds:
            fields["event"] = pick.choice(events)
        if "from" in kinds:
            fields["recorded_from"] = pick.choice(times) + timedelta(microseconds=pick.choice([-1, 0, 1]))
        if "until" in kinds:
            fields["recorded_until"] = max(
                pick.choice(times) + timedelta(microseconds=pick.choice([-1, 0, 1])),
                fields.get("recorded_from", times[0]),
            )
        if "positions" in kinds or not fields:
            low = pick.randint(1, len(log))
            fields["from_position"], fields["until_position"] = low, pick.randint(low, len(log) + 5)
        yield TrailQuery(**fields)


def check(ledger: JourneyLedger, log: list[Entry], query: TrailQuery, limit: int, *, full_pages: bool) -> None:
    expected = [e for e in log if query.admits(e) and e.position >= (query.from_position or 0)]
    found = pages(ledger, query, limit)
    assert [e for page in found for e in page] == expected, query
    if full_pages:  # read through the index: every page full but the last, and no empty page after a full one
        assert [len(page) for page in found] == [limit] * (len(expected) // limit) + (
            [len(expected) % limit] if len(expected) % limit or not expected else []
        ), query


def test_the_indexed_trail_is_the_log_filtered(
    indexed: tuple[JourneyLedger, Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, _ = indexed
    log = the_log(ledger)
    # A page reading the log would stop after one event: full pages prove the index answered.
    monkeypatch.setattr(audit, "SCAN", 1)
    mission = next(e.agency_id for e in log if e.role == Role.MISSION)
    some = [
        TrailQuery(agency_id=mission),
        TrailQuery(event="Boarded"),
        TrailQuery(recorded_from=log[len(log) // 3].recorded_at, recorded_until=log[len(log) // 2].recorded_at),
        TrailQuery(agency_id="naqaba", event="SeatReserved", recorded_from=log[100].recorded_at, until_position=900),
    ]
    for query in [*some, *queries(log, seed=1)]:
        for limit in (1, 7, 1000):
            check(ledger, log, query, limit, full_pages=query.indexed)


def test_events_appended_after_the_index_was_built_are_in_the_trail(
    indexed: tuple[JourneyLedger, Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, runner = indexed
    reached = ledger.head()
    simulate(ledger, PILGRIMS, 1447, seed=12)  # a second season, which the index has not seen
    log = the_log(ledger)
    assert len(log) > reached
    for query in queries(log, seed=2, count=25):
        check(ledger, log, query, 7, full_pages=False)  # the new events are read from the log
    runner.step(TRAIL_INDEX, limit=(len(log) - reached) // 2)  # the index half way through them
    for query in queries(log, seed=3, count=25):
        check(ledger, log, query, 7, full_pages=False)  # pages across the index's end
    runner.run(once=True)
    monkeypatch.setattr(audit, "SCAN", 1)
    for query in queries(log, seed=4, count=25):
        check(ledger, log, query, 7, full_pages=query.indexed)


def test_recorded_times_out_of_log_order_are_found(indexed: tuple[JourneyLedger, Runner], tmp_path: Path) -> None:
    """Writers stamp events before they take the insert lock, so recorded times only roughly follow positions. Here
    they follow them not at all: the season's events stored journey by journey."""
    ledger, _ = indexed
    stored = ledger.recorder.select_notifications(start=1, limit=10**6)
    shuffled = sorted(stored, key=lambda n: (str(n.originator_id), n.originator_version))
    url = f"sqlite:///{tmp_path}/shuffled.sqlite3"
    copy = JourneyLedger(url)
    copy.recorder.insert_events(
        [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in shuffled]
    )
    runner = migrated(url)
    try:
        runner.run(once=True)
        log = the_log(copy)
        times = [e.recorded_at for e in log]
        assert times != sorted(times)
        for query in queries(log, seed=5):
            check(copy, log, query, 7, full_pages=False)
    finally:
        runner.close()
        copy.close()
