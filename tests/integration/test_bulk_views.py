"""The bulk path gives exactly what the incremental path gives, on SQLite and PostgreSQL: row for row on a simulated
season, and over random logs cut at random points (bulk to a cut, then incremental, against incremental all along).
On PostgreSQL the views with rows in SQL (`Projection.in_sql`) are built from zero in SQL (projections/bulk_sql.py),
and the tests below check that they were; SQLite runs the same tests through the fold."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from hajj_ledger.domain.catalogue import IDENTITY_STEPS, JOURNEY_STEPS, allowed_from
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.vocabulary import Actor, Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import FOLLOWED, bulk_sql
from hajj_ledger.projections import bulk as bulk_module
from hajj_ledger.projections import runner as runner_module
from hajj_ledger.projections.bulk import build
from hajj_ledger.projections.framework import Projection
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.conftest import STORES, new_postgres_database
from tests.integration.test_journey_machine import ROAD, JourneyMachine
from tests.support import command


@contextmanager
def season_store(store: str, pilgrims: int, seed: int) -> Iterator[Runner]:
    """A runner over a fresh store holding a simulated season, its read models installed and at position 0."""
    with TemporaryDirectory() as directory, _database(store, Path(directory)) as url:
        ledger = JourneyLedger(url)
        simulate(ledger, pilgrims, 1446, seed=seed)
        ledger.close()
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        runner = Runner(FOLLOWED, url)
        try:
            yield runner
        finally:
            runner.close()


@contextmanager
def _database(store: str, directory: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{directory}/ledger.sqlite3"
        return
    with new_postgres_database() as url:
        yield url


def tables(runner: Runner, projection: Projection, generation: str) -> dict[str, list[tuple[str, ...]]]:
    """A generation's tables, every row, sorted."""
    with runner.engine.connect() as connection:
        return {
            model.name: sorted(
                tuple(str(value) for value in row) for row in connection.execute(sa.select(model.table(generation)))
            )
            for model in projection.models
        }


def position(runner: Runner, projection: Projection, generation: str) -> int:
    return runner._position(projection, generation)[1]


@pytest.fixture
def in_sql(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the views built in SQL, as they are built."""
    built: list[str] = []
    in_sql_build = bulk_sql.build

    def counted(engine: Any, ledger: Any, targets: Any, head: int) -> None:
        built.extend(projection.name for projection, _ in targets)
        in_sql_build(engine, ledger, targets, head)

    monkeypatch.setattr(bulk_sql, "build", counted)  # bulk.py calls it through the module
    return built


def expected_in_sql(store: str, projections: Sequence[Projection]) -> list[str]:
    return [p.name for p in projections if p.in_sql is not None] if store == "postgres" else []


def incremental(runner: Runner, projections: Sequence[Projection], generation: str, until: int | None = None) -> None:
    """The generation from its position to `until` (or the head) in the runner's batches, never in bulk."""
    batches = Runner(projections, runner.database_url, until=until)
    try:
        for projection in projections:
            while batches.step(projection, generation):
                pass
    finally:
        batches.close()


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("view", [p.name for p in FOLLOWED])
def test_each_view_built_from_zero_is_row_for_row_the_incremental_one(store: str, view: str, in_sql: list[str]) -> None:
    """One view at a time (`-k "from_zero and postgres and <view>"`): built from zero to a cut and to the head, in SQL
    on PostgreSQL when it has rows in SQL, against the runner's batches to the same point."""
    [projection] = [p for p in FOLLOWED if p.name == view]
    with season_store(store, 150, seed=21) as runner:
        head = runner.ledger.head()
        held = False
        for until in (head // 3, 2 * head // 3, head):
            runner.prepare(projection, "b")
            incremental(runner, [projection], "b", until)
            expected = tables(runner, projection, "b")
            runner.prepare(projection, "b")
            assert build(runner.engine, runner.ledger, [(projection, "b")], until=until) == until
            assert tables(runner, projection, "b") == expected, view
            assert position(runner, projection, "b") == until
            held |= any(expected.values())
        assert in_sql == expected_in_sql(store, [projection]) * 3
        # Compared with rows in it, but missing_persons: a pilgrim is in it only while missing, hours.
        assert held or view == "missing_persons"


@pytest.mark.parametrize("store", STORES)
def test_a_simulated_season_in_bulk_is_row_for_row_the_incremental_one(store: str) -> None:
    with season_store(store, 150, seed=21) as runner:
        head = runner.ledger.head()
        for projection in FOLLOWED:
            runner.prepare(projection, "b")
        # Cut at points through the season (each view holds rows at one of them, some empty by the end): to the
        # first in small chunks, the first copied into empty tables and each later one loading and upserting what it
        # touches; on to each next one from there, onto rows already written.
        held: set[str] = set()
        for until, chunk in ((head // 3, 1_500), (head // 2, 500), (2 * head // 3, 100_000), (head, 1_000_000)):
            halfway = Runner(FOLLOWED, runner.database_url, until=until)
            try:
                halfway.run(once=True)
            finally:
                halfway.close()
            reached = build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED], until=until, chunk=chunk)
            for projection in FOLLOWED:
                bulk = tables(runner, projection, "b")
                assert bulk == tables(runner, projection, "a"), projection.name
                assert position(runner, projection, "b") == position(runner, projection, "a") == reached
                held |= {name for name, rows in bulk.items() if rows}
        # Every table compared with rows in it, but missing_persons: a pilgrim is in it only while missing, hours.
        assert held == {model.name for p in FOLLOWED for model in p.models} - {"missing_persons"}


@pytest.mark.parametrize("store", STORES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    pilgrims=st.integers(8, 40),
    cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
    chunk=st.integers(1, 3_000),
)
def test_bulk_to_a_cut_then_incremental_is_incremental_all_along(
    store: str, seed: int, pilgrims: int, cuts: list[float], chunk: int
) -> None:
    with season_store(store, pilgrims, seed) as runner:
        runner.run(once=True)  # generation a of every view: the incremental path from zero to the head
        head = runner.ledger.head()
        first, second = (int(head * cut) for cut in cuts)
        for projection in FOLLOWED:
            runner.prepare(projection, "b")
        # Incremental to the first cut (possibly 0), bulk from there to the second, incremental to the head.
        partly = Runner(FOLLOWED, runner.database_url, until=first)
        try:
            for projection in FOLLOWED:
                partly.catch_up(projection, "b")
        finally:
            partly.close()
        reached = build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED], until=second, chunk=chunk)
        assert first <= reached <= max(first, second)
        assert {position(runner, p, "b") for p in FOLLOWED} == {reached}
        for projection in FOLLOWED:
            runner.catch_up(projection, "b")
            assert tables(runner, projection, "b") == tables(runner, projection, "a"), projection.name


@pytest.mark.parametrize("store", STORES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), pilgrims=st.integers(8, 40), cut=st.floats(0, 1))
def test_every_view_from_zero_to_a_cut_then_live_is_incremental_throughout(
    store: str, in_sql: list[str], seed: int, pilgrims: int, cut: float
) -> None:
    in_sql.clear()  # one fixture for every example
    with season_store(store, pilgrims, seed) as runner:
        until = int(runner.ledger.head() * cut)
        incremental(runner, FOLLOWED, "a", until)  # the serving generation, to the cut in batches
        at_cut = {p.name: tables(runner, p, "a") for p in FOLLOWED}
        incremental(runner, FOLLOWED, "a")  # and on to the head
        for projection in FOLLOWED:
            runner.prepare(projection, "b")
        # Every view from zero to the cut in bulk (in SQL where it can), then the live runner's batches to the head.
        assert build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED], until=until) == until
        for projection in FOLLOWED:
            assert tables(runner, projection, "b") == at_cut[projection.name], projection.name
            assert position(runner, projection, "b") == until
        assert in_sql == (expected_in_sql(store, FOLLOWED) if until else [])
        for projection in FOLLOWED:
            runner.catch_up(projection, "b")
            assert tables(runner, projection, "b") == tables(runner, projection, "a"), projection.name


@pytest.mark.parametrize("store", STORES)
def test_a_runner_far_behind_and_a_rebuild_of_every_view_take_the_bulk_path(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[list[str]] = []

    def counted(engine: Any, ledger: Any, targets: Any, **kwargs: Any) -> int:
        builds.append([projection.name for projection, _ in targets])
        return build(engine, ledger, targets, **kwargs)

    monkeypatch.setattr(runner_module, "BULK_BEHIND", 500)
    monkeypatch.setattr(bulk_module, "build", counted)
    with season_store(store, 40, seed=5) as runner:
        runner.run(once=True)  # every view far behind: one bulk pass for all, then batches to the head
        assert builds == [[p.name for p in FOLLOWED]]
        followed = {p.name: tables(runner, p, "a") for p in FOLLOWED}
        runner.rebuild(*FOLLOWED)  # generation b of every view in one bulk pass, then swapped in
        assert len(builds) == 2
        for projection in FOLLOWED:
            runner.prepare(projection, "a")  # the incremental path alone, batch by batch, for reference
            while runner.step(projection, "a"):
                pass
            incremental = tables(runner, projection, "a")
            assert tables(runner, projection, "b") == incremental == followed[projection.name], projection.name
            assert runner._position(projection)[0] == "b"


def built_from_zero_equals_batches(url: str, store: str, in_sql: list[str]) -> None:
    """Every view of the store at `url` built from zero in bulk, against the runner's batches, row for row: to the
    head, and to just after each step off the road (where a journey's row is left as that step leaves it)."""
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    runner = Runner(FOLLOWED, url)
    try:
        written = runner.ledger.store.select_written_after(0, 1_000_000)
        off_road = set(JOURNEY_STEPS) - set(ROAD) - set(IDENTITY_STEPS)
        cuts = [position for position, _, _, topic, _ in written if topic.rsplit(".", 1)[-1] in off_road]
        for until in [*cuts[-6:], runner.ledger.head()]:
            in_sql.clear()
            for projection in FOLLOWED:
                runner.prepare(projection, "b")
            incremental(runner, FOLLOWED, "b", until)
            expected = {p.name: tables(runner, p, "b") for p in FOLLOWED}
            for projection in FOLLOWED:
                runner.prepare(projection, "b")
            build(runner.engine, runner.ledger, [(p, "b") for p in FOLLOWED], until=until)
            for projection in FOLLOWED:
                assert tables(runner, projection, "b") == expected[projection.name], (projection.name, until)
            assert in_sql == expected_in_sql(store, FOLLOWED)
    finally:
        runner.close()


class EveryStepMachine(JourneyMachine):
    """The journey machine's random logs, which take every step the catalogue has (a bus assignment cancelled, a visa
    revoked, identities, legal holds: steps a simulated season never takes), each view built from zero in bulk at the
    end against the runner's batches. On PostgreSQL the log is copied, event for event, into a fresh database."""

    store = "sqlite"
    in_sql: ClassVar[list[str]] = []

    @rule(journey=JourneyMachine.journeys, data=st.data())
    def off_the_road(self, journey: UUID, data: st.DataObject) -> None:
        """A step the catalogue allows from where the journey stands, off the road: a bus assignment cancelled, a
        visa revoked, a hospital stay, a pilgrim missing (the machine's own steps seldom take them)."""
        try:
            current = self.ledger.journey(journey)
        except LedgerError:
            return
        off = [e for e in allowed_from(JOURNEY_STEPS, current.stage) if e not in ROAD or e == "BusAssigned"]
        if not off:
            return
        event = data.draw(st.sampled_from(off))
        if event == "BusAssignmentCancelled" or ("BusAssigned" in off and data.draw(st.booleans())):
            # A bus assigned (on a trip of its own) if none is, then cancelled: the stage goes back to the one before.
            trip = current.trip_id
            if trip is None:
                scheduled = set(self.capacity)
                self._schedule(1, data)
                [trip] = self.capacity.keys() - scheduled
                self._record_as(current, "BusAssigned", journey_id=journey, trip_id=trip)
            self._record_as(current, "BusAssignmentCancelled", journey_id=journey, trip_id=trip, reason="missed_bus")
        elif event in self.fields:
            self._record_as(current, event, journey_id=journey, **data.draw(self.fields[event]))

    def _record_as(self, current: Any, event: str, **fields: Any) -> None:
        """Recorded by the agency that records it in life; a condition besides the stage may refuse it (a trip full,
        a pilgrim not in hospital)."""
        role = sorted(JOURNEY_STEPS[event].roles)[0]
        agency = {Role.MISSION: current.mission_id, Role.COMPANY: current.company_id}.get(role) or f"{role}-1"
        with suppress(LedgerError):
            self.ledger.record(command(event, **fields), Actor(agency, role))

    def teardown(self) -> None:
        try:
            if self.store == "sqlite":
                built_from_zero_equals_batches(self.ledger.database_url, self.store, self.in_sql)
            else:
                with new_postgres_database() as url:
                    _copy_log(self.ledger, url)
                    built_from_zero_equals_batches(url, self.store, self.in_sql)
        finally:
            self.in_sql.clear()
            super().teardown()


def _copy_log(ledger: JourneyLedger, url: str) -> None:
    JourneyLedger(url).close()  # its tables
    written = ledger.store.select_written_after(0, 1_000_000)
    with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO journeyledger_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)",
            [(aggregate_id, version, topic, state) for _, aggregate_id, version, topic, state in written],
        )


@pytest.mark.parametrize("store", STORES)
def test_random_logs_of_every_step_built_from_zero_are_the_batches(store: str, in_sql: list[str]) -> None:
    EveryStepMachine.store, EveryStepMachine.in_sql = store, in_sql
    run_state_machine_as_test(
        EveryStepMachine,
        settings=settings(
            max_examples=6,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
