"""Read models that never skip, never double count, and rebuild without downtime, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any
from unittest.mock import patch

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine.interfaces import CacheStats

from hajj_ledger.domain.vocabulary import makkah_day
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import current, head, upgrade
from hajj_ledger.projections import PROJECTIONS, projection
from hajj_ledger.projections.framework import ONE_OF, Projection, apply_batch
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for, physical
from hajj_ledger.projections.season_funnel import funnel
from hajj_ledger.projections.status import Status, read
from hajj_ledger.simulation import calibration as cal
from hajj_ledger.simulation.season import simulate
from hajj_ledger.store.connections import patiently
from tests.conftest import POSTGRES_AVAILABLE
from tests.support import EXECUTABLE, view_rows


def _season_runner(url: str) -> Runner:
    ledger = JourneyLedger(url)
    simulate(ledger, 150, 1446, seed=21)
    ledger.close()
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    return Runner(PROJECTIONS, url)


@pytest.fixture
def runner(store_url: str) -> Iterator[Runner]:
    found = _season_runner(store_url)
    yield found
    found.close()


needs_postgres = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)"),
]


@pytest.fixture
def pg_runner(postgres_url: str) -> Iterator[Runner]:
    found = _season_runner(postgres_url)
    yield found
    found.close()


def serving(runner: Runner, projection: Projection) -> Status:
    """Where the projection's serving generation stands, as `hajj-ledger status` reads it."""
    [status] = read([projection.name], runner.database_url)
    return status


def table_rows(
    runner: Runner, projection: Projection, generation: str | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """The projection's tables in a generation (by default, the serving one), sorted."""
    generation = generation or serving(runner, projection).generation
    with runner.engine.connect() as connection:
        return {
            model.name: sorted(
                (tuple(str(v) for v in row) for row in connection.execute(sa.select(model.table(generation)))),
            )
            for model in projection.models
        }


def clean_rebuild(runner: Runner, projection: Projection) -> dict[str, list[tuple[Any, ...]]]:
    """The tables as one catch-up from position 0 makes them, in the generation that is not serving."""
    other = "b" if serving(runner, projection).generation == "a" else "a"
    runner.prepare(projection, other)
    runner.catch_up(projection, other)
    return table_rows(runner, projection, other)


def test_migrations_reach_head_and_every_projection_catches_up(runner: Runner) -> None:
    assert current(runner.engine) == head() == "0009"
    runner.run(once=True)
    for status in runner.status():
        assert status.position == status.head == runner.ledger.head()
        assert status.lag_events == 0 and status.lag_seconds == 0.0


def test_the_views_hold_only_the_values_their_columns_declare(runner: Runner) -> None:
    """A filter by a value outside a column's `one_of` is refused, so a view must never hold one."""
    runner.run(once=True)
    declared = [(m, c) for p in PROJECTIONS for m in p.models for c in m.view().c if ONE_OF in c.info]
    assert {(m.name, c.name) for m, c in declared} >= {("journey_status", "stage"), ("contracts", "status")}
    held = set()
    with runner.engine.connect() as connection:
        for model, column in declared:
            found = {v for (v,) in connection.execute(sa.select(column).distinct()) if v is not None}
            assert found <= set(column.info[ONE_OF]), (model.name, column.name)
            held |= {(model.name, column.name)} if found else set()
    empty_after_the_season = {("journey_status", "stage_before_bus"), ("awaiting_transport", "port")}
    assert held == {(m.name, c.name) for m, c in declared} - empty_after_the_season


def test_the_views_agree_with_the_log(runner: Runner) -> None:
    runner.run(once=True)
    log = Counter(row.topic.rsplit(".", 1)[-1] for row in runner.ledger.recorder.select_notifications(1, 10**6))
    with runner.engine.connect() as connection:
        everyone = view_rows(connection, "journey_status")
        assert len(everyone) == log["Registered"] == 150
        first = everyone[0]
        assert view_rows(connection, "journey_status", journey_id=first["journey_id"]) == [first]
        assert view_rows(connection, "journey_status", page_size=40) == everyone  # the pages join up
        ended = Counter(j["stage"] for j in everyone)
        assert ended["departed"] == log["Departed"]
        mission = first["mission_id"]
        assert {j["mission_id"] for j in view_rows(connection, "journey_status", mission_id=mission)} == {mission}

        all_trips = view_rows(connection, "trip_manifest")
        assert len(all_trips) == log["TripScheduled"]
        assert sum(t["boarded"] for t in all_trips) == log["Boarded"]
        assert sum(t["assigned"] for t in all_trips) == log["SeatReserved"] - log["SeatReleased"]
        assert all(t["assigned"] <= t["capacity"] for t in all_trips)

        arrived = connection.execute(sa.text("SELECT sum(arrived), sum(received) FROM port_arrivals")).one()
        assert tuple(arrived) == (log["ArrivedAtPort"], log["ReceivedAtPort"])
        busiest = max(
            (e for e in runner.ledger.recorder.select_notifications(1, 10**6) if e.topic.endswith("ArrivedAtPort")),
            key=lambda e: e.id,
        )
        landed: Any = runner.ledger.mapper.to_domain_event(busiest)
        day, port = makkah_day(landed.stamp.occurred_at), str(landed.port)
        assert sum(r["arrived"] for r in view_rows(connection, "port_arrivals", day=day, port=port)) >= 1

        assert view_rows(connection, "awaiting_transport") == []  # by the season's end everyone has boarded
        reached = funnel(connection, season=1446)
        assert reached == funnel(connection)  # one season
        assert reached["registered"] == log["Registered"] and reached["departed"] == log["Departed"]
        assert all(count <= reached["registered"] for count in reached.values()), "a journey counted twice"
        asia = funnel(connection, region="asia")
        assert 0 < asia["registered"] < reached["registered"]

        health = view_rows(connection, "health_cases")
        assert sum(c["admitted"] for c in health) == log["HospitalAdmitted"]
        assert sum(c["deaths"] for c in health) == log["DeathRecorded"]

        companies = {j["company_id"] for j in everyone if j["company_id"]}
        present = [r["present"] for c in companies for r in view_rows(connection, "site_headcount", company_id=c)]
        assert min(present) >= 0
        assert sum(present) == sum(1 for j in everyone if j["stage"] in ("housed", "at_site") and not j["deceased"])

        contracts = view_rows(connection, "contracts")
        assert sum(c["used"] for c in contracts) == log["PlaceTaken"] - log["PlaceFreed"] > 0
        assert all(0 <= c["used"] <= c["places"] and c["free"] == c["places"] - c["used"] for c in contracts)
        offers = view_rows(connection, "service_offers")
        assert len(offers) == log["OfferPublished"]
        assert all(0 <= o["contracted"] <= o["places"] for o in offers)
        buildings = view_rows(connection, "building_occupancy")
        assert sum(b["occupied"] for b in buildings) == log["BedTaken"] - log["BedFreed"]
        assert all(0 <= b["occupied"] <= b["beds"] for b in buildings)
        on_road = view_rows(connection, "trips_on_road")
        assert len(on_road) == log["TripDeparted"]
        assert {t["status"] for t in on_road} == {"arrived"}, "a bus still on the road at the season's end"
        assert view_rows(connection, "trips_on_road", overdue=True) == []

        in_kingdom = view_rows(connection, "overstay_watch", in_kingdom=True)

        def overstaying(at: datetime) -> list[dict[str, Any]]:  # those whose visa had run out by `at`
            return [r for r in in_kingdom if r["visa_valid_until"] is not None and r["visa_valid_until"] < at]

        visa_end = cal.arafat_day(1446) + timedelta(days=45)
        staying = overstaying(visa_end + timedelta(days=1))
        assert len(staying) == sum(1 for j in everyone if j["stage"] in ("housed", "at_site", "checked_out"))
        assert overstaying(visa_end - timedelta(days=1)) == []


# Batch sizes applied in turn: any from one event up, with one of at least 200 among them, so that a turn covers 200
# events in at most 9 batches (batches of one event alone would take the season's 4,600 events in as many transactions).
BATCH_SIZES = st.tuples(st.integers(200, 900), st.lists(st.integers(1, 900), max_size=8)).flatmap(
    lambda drawn: st.permutations([drawn[0], *drawn[1]])
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(splits=BATCH_SIZES, data=st.data())
def test_any_batch_split_gives_the_same_tables_as_one_rebuild(
    runner: Runner, splits: list[int], data: st.DataObject
) -> None:
    chosen = data.draw(st.sampled_from(PROJECTIONS))
    runner.prepare(chosen, "b")  # generation b: applied in the drawn batch sizes
    step = 0
    while runner.step(chosen, "b", limit=splits[step % len(splits)]):
        step += 1
    split = table_rows(runner, chosen, "b")
    runner.catch_up(chosen)  # generation a (serving): in the runner's own batches
    assert split == table_rows(runner, chosen, "a")


def test_small_batches_reuse_their_compiled_statements(runner: Runner) -> None:
    """Following live applies a few events at a time: no batch after the first compiles its SQL anew."""
    status = projection("journey_status")
    misses: list[str] = []

    def count(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if context is not None and context.cache_hit is CacheStats.CACHE_MISS:
            misses.append(statement)

    for _ in range(3):  # the first batches meet each statement once
        runner.step(status, limit=1)
    sa.event.listen(runner.engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            runner.step(status, limit=1)
    finally:
        sa.event.remove(runner.engine, "before_cursor_execute", count)
    assert misses == []


def test_a_rebuild_swaps_atomically_while_readers_read(runner: Runner) -> None:
    runner.run(once=True)
    status = projection("journey_status")
    expected = table_rows(runner, status, "a")["journey_status"]
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with runner.engine.connect() as connection:
                seen.append(len(view_rows(connection, "journey_status")))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        runner.rebuild(status)
    finally:
        stop.set()
        reader.join()
    assert set(seen) == {150}, "a reader saw a half-built view"
    assert serving(runner, status).generation == "b"
    assert table_rows(runner, status, "b")["journey_status"] == expected
    with runner.engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
    assert physical("journey_status", "a") not in tables


def test_a_changed_projection_version_is_rebuilt_by_the_runner(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    runner.run(once=True)
    trips_projection = projection("trip_manifest")
    monkeypatch.setattr(type(trips_projection), "version", 2)
    runner.run(once=True)
    rebuilt = serving(runner, trips_projection)
    assert (rebuilt.generation, rebuilt.code_version) == ("b", 2)


def run_until_killed_in_batch(url: str, batch: int, tell: Connection) -> None:
    """A runner (in a process of its own) that, in its `batch`-th batch, with the batch's rows written and not yet
    committed, says so and waits to be killed."""
    applied = itertools.count(1)

    def apply_then_wait(
        connection: sa.Connection, projection: Projection, generation: str, events: Sequence[tuple[int, Any]]
    ) -> None:
        apply_batch(connection, projection, generation, events)
        if next(applied) == batch:
            tell.send(batch)
            threading.Event().wait()

    with patch("hajj_ledger.projections.runner.apply_batch", apply_then_wait):
        # Patiently: on a busy machine a new process may wait for a connection longer than the store's timeout.
        patiently(lambda: Runner(PROJECTIONS, url), "project").run(once=True)


def test_a_runner_killed_mid_batch_resumes_to_the_same_tables(runner: Runner, store_url: str) -> None:
    processes = multiprocessing.get_context("spawn")  # not fork: this process has threads
    for batch in (3, 5, 2):  # in a run's third batch; then in the next run's fifth; then in the next one's second
        told, tell = processes.Pipe(duplex=False)
        killed = processes.Process(target=run_until_killed_in_batch, args=(store_url, batch, tell))
        killed.start()
        tell.close()
        try:
            assert told.poll(120), f"the runner did not reach its batch {batch} in two minutes"
            assert told.recv() == batch  # EOFError: it ended before that batch
        finally:
            killed.kill()  # SIGKILL
            killed.join()
            told.close()
    assert any(s.lag_events for s in runner.status()), "the batch the runner was killed in was committed"
    runner.run(once=True)
    assert all(s.position == s.head == runner.ledger.head() for s in runner.status())
    for chosen in PROJECTIONS:
        assert table_rows(runner, chosen) == clean_rebuild(runner, chosen), chosen.name


@pytest.mark.parametrize("store", [pytest.param("postgres", marks=needs_postgres)])
def test_two_runners_at_once_end_as_one(pg_runner: Runner, postgres_url: str, store: str) -> None:
    runner = pg_runner
    env = {**os.environ, "HAJJ_LEDGER_DATABASE_URL": postgres_url}
    processes = [
        subprocess.Popen([str(EXECUTABLE), "project", "--once"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    for chosen in PROJECTIONS:
        assert table_rows(runner, chosen, "a") == clean_rebuild(runner, chosen), chosen.name


def test_following_live_while_writers_commit_skips_nothing(runner: Runner, store_url: str) -> None:
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, kwargs={"stop": stop})
    follower.start()
    writers = [JourneyLedger(store_url) for _ in range(2)]
    try:
        threads = [
            threading.Thread(target=simulate, args=(writer, 120, 1446), kwargs={"seed": 30 + n})
            for n, writer in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _wait_until_caught_up(runner)
    finally:
        stop.set()
        follower.join()
        for writer in writers:
            writer.close()
    for chosen in PROJECTIONS:
        assert table_rows(runner, chosen, "a") == clean_rebuild(runner, chosen), chosen.name


def _wait_until_caught_up(runner: Runner, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(s.lag_events == 0 for s in runner.status()):
            return
        time.sleep(0.05)
    raise AssertionError(f"not caught up after {seconds}s: {runner.status()}")


@pytest.mark.serial  # restarts the shared server
@pytest.mark.parametrize("store", [pytest.param("postgres", marks=needs_postgres)])
def test_a_postgres_restart_while_following_live(pg_runner: Runner, postgres_url: str, store: str) -> None:
    runner = pg_runner
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, kwargs={"stop": stop})
    follower.start()
    try:
        _wait_until_caught_up(runner)
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120
        )
        writer = JourneyLedger(postgres_url)
        try:
            simulate(writer, 100, 1446, seed=40)
        finally:
            writer.close()
        _wait_until_caught_up(runner, seconds=120)
        assert follower.is_alive(), "the runner gave up when the database went away"
    finally:
        stop.set()
        follower.join()
    for chosen in PROJECTIONS:
        assert table_rows(runner, chosen, "a") == clean_rebuild(runner, chosen), chosen.name


def test_status_reports_lag_in_events_and_seconds(runner: Runner) -> None:
    behind = runner.status()
    assert all(s.lag_events == runner.ledger.head() for s in behind)
    assert all(s.lag_seconds > 0 for s in behind)
    runner.step(PROJECTIONS[0], limit=10)
    assert runner.status()[0].lag_events < behind[0].lag_events


def test_a_rebuild_while_a_runner_follows_live_and_writers_write(runner: Runner, store_url: str) -> None:
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, kwargs={"stop": stop})
    follower.start()
    writer = JourneyLedger(store_url)
    rebuilder = Runner(PROJECTIONS, store_url)
    try:
        writing = threading.Thread(target=simulate, args=(writer, 150, 1446), kwargs={"seed": 50})
        writing.start()
        rebuilder.rebuild(projection("journey_status"))
        writing.join()
        _wait_until_caught_up(runner)
    finally:
        stop.set()
        follower.join()
        writer.close()
        rebuilder.close()
    status = projection("journey_status")
    assert serving(runner, status).generation == "b"
    assert table_rows(runner, status, "b") == clean_rebuild(runner, status)
