"""The views built in SQL on PostgreSQL (projections/bulk_sql.py; each view's `in_sql`, beside its `apply`) give
exactly what their `apply` gives, over a log with the corrections a simulated season never records: offers amended and
withdrawn, contracts amended and terminated, licences suspended and renewed, inspections failed, trips cancelled and
checkpoints reported late, bus assignments cancelled, pilgrims reported missing twice and found, visas revoked, a death
with no facility. On SQLite the same bulk build folds them in Python."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from hajj_ledger.archive.seasons import close, restore
from hajj_ledger.audit.chain import Chain
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import bulk_sql, projection
from hajj_ledger.projections.bulk import build
from hajj_ledger.projections.closing import SeasonViews
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.conftest import STORES
from tests.integration.test_bulk_views import _database, tables
from tests.integration.test_closing import CLOSED, OPEN, _keys
from tests.integration.test_market_views import HOUR, record_world
from tests.support import (
    T0,
    actor,
    arrive_and_clear,
    command,
    contract_journeys,
    open_market,
    registered,
    schedule_trip,
)

VIEWS = (
    "site_headcount",
    "missing_persons",
    "awaiting_transport",
    "port_arrivals",
    "trip_manifest",
    "health_cases",
    "overstay_watch",
    "building_occupancy",
    "contracts",
    "trips_on_road",
    "service_offers",
)


def record_corrections(url: str) -> None:
    """The market's world (test_market_views), then journeys with their own corrections."""
    record_world(url)
    ledger = JourneyLedger(url)

    def rec(role: Role, event: str, at: datetime | None = None, **fields: Any) -> None:
        outcome = ledger.record(command(event, **fields, **({"occurred_at": at} if at else {})), actor(role))
        assert isinstance(outcome, Outcome), outcome

    try:
        market = open_market(ledger, 10, 10)
        received = arrive_and_clear(ledger, 5, market)
        trip = schedule_trip(ledger)
        rec(Role.NAQABA, "BusAssigned", journey_id=received[0], trip_id=trip)
        rec(Role.NAQABA, "BusAssignmentCancelled", journey_id=received[0], trip_id=trip, reason="missed_bus")
        rec(Role.NAQABA, "BusAssigned", journey_id=received[1], trip_id=trip)
        rec(Role.COMPANY, "ReportedMissing", T0 + HOUR, journey_id=received[2])
        rec(Role.COMPANY, "Found", T0 + 2 * HOUR, journey_id=received[2], site="makkah")
        rec(Role.COMPANY, "ReportedMissing", T0 + 3 * HOUR, journey_id=received[2])
        rec(Role.COMPANY, "ReportedMissing", T0 + HOUR, journey_id=received[3])
        rec(Role.MOH, "HospitalAdmitted", journey_id=received[4], facility="HOSPITAL-01")
        rec(Role.MOH, "DeathRecorded", journey_id=received[4], facility=None)
        visas = registered(ledger, 2)
        contract_journeys(ledger, visas, market.contract_id)
        for journey in visas:
            rec(Role.MISSION, "VisaRequested", journey_id=journey)
            rec(Role.MOFA, "VisaIssued", journey_id=journey, valid_until=T0 + timedelta(days=90))
        rec(Role.MOFA, "VisaRevoked", journey_id=visas[0], reason="security")
    finally:
        ledger.close()


@pytest.mark.parametrize("store", STORES)
def test_each_view_built_in_sql_is_its_fold_over_a_log_of_corrections(store: str) -> None:
    with TemporaryDirectory() as directory, _database(store, Path(directory)) as url:
        record_corrections(url)
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        views = [projection(name) for name in VIEWS]
        runner = Runner(views, url)
        try:
            for view in views:
                while runner.step(view, "a", limit=7):  # the serving generation, batch by batch, for reference
                    pass
                runner.prepare(view, "b")
            targets = [(view, "b", 0) for view in views]
            in_sql = bulk_sql.buildable(runner.engine, runner.ledger, targets)
            assert in_sql == (list(range(len(views))) if store == "postgres" else [])
            head = build(runner.engine, runner.ledger, [(view, "b") for view in views])
            assert head == runner.ledger.head()
            for view in views:
                built = tables(runner, view, "b")
                assert built == tables(runner, view, "a"), view.name
                assert all(built.values()), f"{view.name}: a table with no rows compares nothing"
                assert runner._position(view, "b")[1] == head
        finally:
            runner.close()


@pytest.mark.parametrize("store", STORES)
def test_seasons_built_in_sql_through_a_close_and_a_restore_is_its_fold(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step of a season (opened, closing, closed with its archive, archived, restored) and its Hijri days
    (worked out in Python from the staged rows)."""
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    with _database(store, tmp_path) as url:
        ledger = JourneyLedger(url)
        simulate(ledger, 12, CLOSED, 4)
        simulate(ledger, 6, OPEN, 5)
        engine = engine_for(url)
        upgrade(engine)
        engine.dispose()
        view = projection("seasons")
        runner = Runner([view], url)

        def built_in_sql_as_folded() -> None:
            runner.catch_up(view, "a")  # the serving generation, batch by batch
            runner.prepare(view, "b")
            in_sql = bulk_sql.buildable(runner.engine, runner.ledger, [(view, "b", 0)])
            assert in_sql == ([0] if store == "postgres" else [])
            build(runner.engine, runner.ledger, [(view, "b")])
            assert tables(runner, view, "b") == tables(runner, view, "a")

        try:
            built_in_sql_as_folded()
            Chain(ledger, _keys()).checkpoint()
            archive = str(tmp_path / "archive")
            close(ledger, CLOSED, archive, _keys(), SeasonViews(url))
            built_in_sql_as_folded()
            restore(ledger, CLOSED, archive, _keys().public, SeasonViews(url))
            built_in_sql_as_folded()
            with runner.engine.connect() as connection:
                stages = set(connection.execute(sa.text("SELECT stage FROM seasons")).scalars())
            assert stages == {"closed", "open"}  # back from its archive, closed; the other one never closed
        finally:
            runner.close()
            ledger.close()


def test_a_build_drops_the_staged_tables_of_builds_that_were_killed_and_leaves_a_live_ones(postgres_url: str) -> None:
    ledger = JourneyLedger(postgres_url)
    simulate(ledger, 6, OPEN, 3)
    engine = engine_for(postgres_url)
    upgrade(engine)
    view = projection("journey_status")
    runner = Runner([view], postgres_url)
    killed, live = f"{bulk_sql.STAGED_PREFIX}0f0f0f0f0f0f", f"{bulk_sql.STAGED_PREFIX}1e1e1e1e1e1e"
    try:
        with engine.begin() as connection:
            for name in (killed, live):  # as a build makes them: its lock, if it lives, taken first
                connection.execute(sa.text(f'CREATE UNLOGGED TABLE "{name}" (position bigint)'))
        with psycopg.connect(postgres_url) as other, other.transaction():  # the live build's guard, held
            other.execute(f"SELECT pg_advisory_xact_lock({bulk_sql.LOCKS}, hashtext(%s))", (live,))
            runner.prepare(view, "b")
            build(runner.engine, runner.ledger, [(view, "b")])
            with engine.connect() as connection:
                left = connection.execute(
                    sa.text("SELECT relname FROM pg_class WHERE relname LIKE 'bulk\\_staged\\_%'")
                )
                assert sorted(left.scalars()) == [live]  # the killed one's dropped, and this build's own
        assert runner._position(view, "b")[1] == ledger.head()
    finally:
        runner.close()
        engine.dispose()
        ledger.close()
