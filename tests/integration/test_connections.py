"""Connections that stay put on PostgreSQL: the URL's schema everywhere, two schemas of one database kept apart, pool
sizes that hold, and pools that neither churn nor ping."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import current, head
from hajj_ledger.projections.export import export
from hajj_ledger.projections.replay import replay, row_counts, target
from hajj_ledger.projections.schema import SchemaError, engine_for
from hajj_ledger.simulation.season import simulate
from tests.conftest import POSTGRES_AVAILABLE, POSTGRES_URL
from tests.support import EXECUTABLE, NAMES, TestClient, project, registration

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_AVAILABLE, reason=f"no PostgreSQL at {POSTGRES_URL} (set CI=true to require it)"),
]


def migrate(url: str, **env: str) -> None:
    done = subprocess.run(
        [str(EXECUTABLE), "migrate"], env={"PATH": "/usr/bin:/bin", "HAJJ_LEDGER_DATABASE_URL": url, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def tables(postgres_url: str, schema: str) -> set[str]:
    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def verified(ledger: JourneyLedger, url: str) -> int:
    """Seal the log, sign a checkpoint at its head, and verify the chain; returns the position verified."""
    keys = signing_keys(url, required=True)
    assert keys is not None
    chain = Chain(ledger, keys)
    checkpoint = chain.checkpoint()
    assert checkpoint is not None
    report = chain.verify(keys.public)
    assert report.ok, report.first
    return checkpoint.position


def test_a_whole_season_flow_in_a_schema_of_its_own(postgres_url: str, tmp_path: Path) -> None:
    url = f"{postgres_url}?schema=season_1446"
    migrate(url)
    assert {
        "journeyledger_events",
        "command_receipts",
        "identity_vault",
        "alembic_version",
        "projection_positions",
    } <= (tables(postgres_url, "season_1446"))
    engine = engine_for(url)
    with engine.begin() as connection:
        assert current(engine) == head()
        _, key = agencies.add(connection, Role.MISSION, "the mission", "mission-EGY-1")
    engine.dispose()

    with TestClient(create_app(url, max_wait=5)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        answer = client.post("/v1/journeys", headers=headers, json=registration(identity=NAMES))
        assert answer.status_code == 201, answer.text
        journey_id = answer.json()["aggregate_id"]
        project(url)
        listed = client.get("/v1/views/journey_status", headers=headers).json()["items"]
        assert [row["journey_id"] for row in listed] == [journey_id]
        history = client.get(f"/v1/journeys/{journey_id}/history", headers=headers).json()
        assert [e["event"] for e in history["events"]] == ["Registered"]
        identity = client.get(f"/v1/journeys/{journey_id}/identity", headers=headers).json()
        assert identity["name_latin"] == NAMES["name_latin"]

    ledger = JourneyLedger(url, create_tables=False)
    try:
        assert verified(ledger, url) == ledger.head() == 1
    finally:
        ledger.close()
    assert {"ledger_chain", "ledger_seal", "ledger_checkpoints"} <= tables(postgres_url, "season_1446")
    manifest = export(tmp_path / "export", fmt="csv", url=url)
    assert manifest["position"] == 1 and manifest["tables"]["events"]["rows"] == 1
    assert manifest["tables"]["journey_status"]["rows"] == 1
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT count(*) FROM season_1446.identity_vault").fetchone() == (1,)
    assert tables(postgres_url, "public") == set(), "nothing of the ledger outside its schema"


def test_two_schemas_of_one_database_are_two_ledgers(postgres_url: str) -> None:
    urls = {name: f"{postgres_url}?schema={name}" for name in ("season_a", "season_b")}
    for url in urls.values():
        migrate(url)
    heads = {}
    for (name, url), pilgrims in zip(urls.items(), (30, 12), strict=True):
        ledger = JourneyLedger(url, create_tables=False)
        try:
            simulate(ledger, pilgrims, 1446, seed=1)
            heads[name] = ledger.head()
            assert verified(ledger, url) == heads[name]
        finally:
            ledger.close()
        project(url)
    assert heads["season_a"] > heads["season_b"] > 0
    for name, url in urls.items():
        engine = engine_for(url)
        try:
            with engine.connect() as connection:
                status = connection.execute(sa.text("SELECT count(*) FROM journey_status")).scalar_one()
                furthest = connection.execute(sa.text("SELECT max(position) FROM projection_positions")).scalar_one()
        finally:
            engine.dispose()
        assert status == (30 if name == "season_a" else 12)
        assert furthest == heads[name]


def test_a_replay_of_a_ledger_in_a_schema_goes_to_a_schema_of_its_own(postgres_url: str) -> None:
    url = f"{postgres_url}?schema=season_c"
    migrate(url)
    ledger = JourneyLedger(url, create_tables=False)
    try:
        simulate(ledger, 20, 1446, seed=2)
        until = ledger.head() // 2
    finally:
        ledger.close()
    into = target("replay_c", url, until)
    try:
        replay(url, until, into.engine)
        counts = row_counts(into.engine)
    finally:
        into.engine.dispose()
    assert counts["journey_status"] > 0
    assert "journey_status__a" in tables(postgres_url, "replay_c")
    assert "journey_status__a" in tables(postgres_url, "season_c")  # made by migrate, apart from the replay's
    assert not tables(postgres_url, "public")


class Backends:
    """What each other connection to a database is running (its last statement), seen from one connection kept
    for the looking: a look from a new connection each time would see the last one's server process still ending."""

    def __init__(self, postgres_url: str) -> None:
        self.connection = psycopg.connect(postgres_url, autocommit=True)  # each look a transaction: a fresh view

    def __call__(self) -> list[str]:
        rows = self.connection.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [r[0] for r in rows]

    def gone(self) -> bool:
        """Every other connection gone (a closed connection's server process ends a moment after, not at once)."""
        for _ in range(50):
            if not self():
                return True
            time.sleep(0.1)
        return False


@pytest.fixture
def backends(migrated: str) -> Iterator[Backends]:
    found = Backends(migrated)
    yield found
    found.connection.close()


@pytest.fixture
def migrated(postgres_url: str) -> str:
    migrate(postgres_url)
    return postgres_url


def test_the_write_pool_holds_its_configured_size(
    migrated: str, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_WRITE_POOL_SIZE", "3")
    monkeypatch.setenv("HAJJ_LEDGER_WRITE_POOL_OVERFLOW", "1")
    ledger = JourneyLedger(migrated, create_tables=False)
    seen: list[int] = []
    try:
        ledger.head()
        datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
        pool = datastore.pool
        pool.wait(timeout=10)  # its steady connections, opened in the background
        assert (pool.min_size, pool.max_size) == (3, 4)
        assert 3 <= len(backends()) <= 4

        def hold() -> None:
            with datastore.get_connection() as connection:
                connection.execute("SELECT pg_sleep(0.3)")

        holders = [threading.Thread(target=hold) for _ in range(8)]
        for thread in holders:
            thread.start()
        while any(thread.is_alive() for thread in holders):
            seen.append(len(backends()))
        assert max(seen) == 4, "eight at once share three connections and one of overflow, never more"
    finally:
        ledger.close()
    assert backends.gone(), backends()


def test_an_engine_keeps_its_connections_and_never_pings(migrated: str, backends: Backends) -> None:
    engine = engine_for(migrated, pool_size=2)
    pids: set[int] = set()

    def read() -> None:
        for _ in range(50):
            with engine.connect() as connection:
                pids.add(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())

    try:
        readers = [threading.Thread(target=read) for _ in range(4)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
        assert len(pids) == 2, "four readers share the pool's two connections; none opened per request"
        assert len(backends()) == 2
        assert not any("SELECT 1" in q for q in backends()), "no ping on checkout"
    finally:
        engine.dispose()


def test_an_engine_on_a_missing_schema_says_so(postgres_url: str) -> None:
    engine = engine_for(f"{postgres_url}?schema=never_made")
    try:
        with pytest.raises(SchemaError, match=r"never_made.*does not exist.*hajj-ledger migrate"):
            engine.connect()
    finally:
        engine.dispose()


def test_a_url_parameter_the_ledger_does_not_know_is_refused_by_name(postgres_url: str) -> None:
    for url, named in ((f"{postgres_url}?sslmode=require", "'sslmode'"), (f"{postgres_url}?pool_size=4", "WRITE")):
        with pytest.raises(ValueError, match=named):
            JourneyLedger(url)
        with pytest.raises(ValueError, match=named):
            engine_for(url)
