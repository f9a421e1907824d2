"""The bulk path gives exactly what the incremental path gives, on SQLite and PostgreSQL: row for row on a simulated
season, and over random logs cut at random points (bulk to a cut, then incremental, against incremental all along).
On PostgreSQL the views with rows in SQL (`Projection.in_sql`) are built from zero in SQL (projections/bulk_sql.py),
and the tests below check that they were; SQLite runs the same tests through the fold."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

    monkeypatch.setattr(bulk_module.bulk_sql, "build", counted)
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
