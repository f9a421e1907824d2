"""Connections that stay put on PostgreSQL: the URL's schema everywhere, two schemas of one database kept apart, pool
sizes that hold, and pools that neither churn nor ping."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
import sqlalchemy as sa

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.leadership import leader_lock
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import current, head, upgrade
from hajj_ledger.projections.export import export
from hajj_ledger.projections.replay import replay, row_counts, target
from hajj_ledger.projections.schema import SchemaError, engine_for
from hajj_ledger.simulation.season import simulate
from hajj_ledger.store.connections import Postgres
from hajj_ledger.writing import GroupCommit
from tests.conftest import POSTGRES_AVAILABLE, POSTGRES_URL
from tests.support import (
    EXECUTABLE,
    NAMES,
    SEASON_OPENING,
    TestClient,
    actor,
    eventually,
    free_port,
    open_season,
    project,
    registration,
    registration_command,
    season_opened,
)
from tests.tcp_proxy import Proxy

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

    with TestClient(create_app(season_opened(url), max_wait=5)) as client:
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
        assert verified(ledger, url) == ledger.head() == 2  # the season's opening, the registration
    finally:
        ledger.close()
    assert {"ledger_chain", "ledger_seal", "ledger_checkpoints"} <= tables(postgres_url, "season_1446")
    manifest = export(tmp_path / "export", fmt="csv", url=url)
    assert manifest["position"] == 2 and manifest["tables"]["events"]["rows"] == 2
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
    for url, named in ((f"{postgres_url}?sslmod=require", '"sslmod"'), (f"{postgres_url}?pool_size=4", "WRITE")):
        with pytest.raises(ValueError, match=named):
            JourneyLedger(url)
        with pytest.raises(ValueError, match=named):
            engine_for(url)


# libpq's URLs, and a database that goes away: through a TCP proxy of the test's own (tests/tcp_proxy.py), so that
# the shared PostgreSQL is never stopped.

ANSWER_BOUND = 5.0  # seconds: while the database is away, a request is answered 503 within this (docs/http-api.md)


def _port() -> int:
    return Postgres.from_url(POSTGRES_URL).port


def _with_agencies(url: str) -> tuple[str, str]:
    """The read models migrated, a ministry and a mission added: their keys."""
    engine = engine_for(url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            _, ministry = agencies.add(connection, Role.MINISTRY, "the ministry")
            _, mission = agencies.add(connection, Role.MISSION, "a mission", "mission-EGY-1")
    finally:
        engine.dispose()
    return ministry, mission


def test_a_url_naming_a_host_that_is_down_first_reaches_the_one_that_answers(postgres_url: str) -> None:
    dead = free_port()  # nothing listens there
    name = postgres_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{_port()}/{name}?application_name=two-hosts"
    assert dict(Postgres.from_url(url).parameters)["target_session_attrs"] == "read-write"
    ledger = JourneyLedger(url)
    try:
        open_season(ledger)
        outcome = ledger.record(parse_command(registration_command("IDN")), actor(Role.MISSION))
        assert outcome.position == 2
        engine = engine_for(url)
        try:
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT current_setting('application_name')")).scalar() == (
                    "two-hosts"
                )
        finally:
            engine.dispose()
        lock = leader_lock(url)
        try:
            assert lock.acquire() and lock.held()
        finally:
            lock.release()
    finally:
        ledger.close()


def test_a_write_that_finds_its_pooled_connections_on_a_read_only_server_makes_them_again(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After a switchover the pool's connections may be on a server that takes no writes (SQLSTATE 25006, as a
    standby answers): they are dropped and made again through the URL, and the write is recorded, no error seen."""
    ledger = JourneyLedger(season_opened(postgres_url))
    try:
        assert ledger.record(parse_command(registration_command("IDN")), actor(Role.MISSION)).position == 2
        pool = ledger.store.datastore.pool  # type: ignore[attr-defined]
        idle = list(pool._pool)
        assert idle
        for connection in idle:  # each as a session on a standby would be
            connection.execute("SET default_transaction_read_only = on")
            connection.commit()
        outcome = ledger.record(parse_command(registration_command("IDN")), actor(Role.MISSION))
        assert outcome.position == 3
        assert "the store's connections are dropped and made again" in caplog.text
        assert not set(map(id, pool._pool)) & set(map(id, idle))
    finally:
        ledger.close()


def test_a_write_while_the_database_is_away_is_answered_503_in_time_then_works_again(postgres_url: str) -> None:
    ministry, mission = _with_agencies(postgres_url)
    season_opened(postgres_url)
    proxy = Proxy(_port())
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{postgres_url.rsplit('/', 1)[1]}"
    writer = {"Authorization": f"Bearer {mission}"}
    reader = {"Authorization": f"Bearer {ministry}"}
    try:
        with TestClient(create_app(url, max_wait=0.5)) as client:
            assert client.post("/v1/journeys", json=registration(), headers=writer).status_code == 201
            assert client.get("/v1/views/journey_status", headers=reader).status_code == 200

            # Every connection lost (a restart, a promotion): the next write is recorded, no error seen.
            proxy.cut()
            answer = client.post("/v1/journeys", json=registration(), headers=writer)
            assert answer.status_code == 201, answer.text

            # Unreachable: 503, Retry-After, within the bound; nothing recorded; /readyz says so.
            proxy.down()
            for _ in range(2):
                started = time.monotonic()
                answer = client.post("/v1/journeys", json=registration(), headers=writer)
                took = time.monotonic() - started
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "1" and took < ANSWER_BOUND, took
                assert answer.json()["type"].endswith("/unavailable"), answer.json()
            started = time.monotonic()
            assert client.get("/v1/views/journey_status", headers=reader).status_code == 503
            assert time.monotonic() - started < ANSWER_BOUND + 1
            assert client.get("/readyz").status_code == 503

            # Back: writes are recorded again within a second or two, without a restart.
            proxy.up()
            eventually(
                lambda: client.post("/v1/journeys", json=registration(), headers=writer).status_code == 201, 5,
                "writes again",
            )  # fmt: skip
            assert client.get("/readyz").status_code == 200
    finally:
        proxy.close()
    with psycopg.connect(postgres_url) as connection:
        # The season's opening and the three registrations: nothing more, nothing twice.
        assert connection.execute("SELECT count(*) FROM command_receipts").fetchone() == (4,)


def test_a_write_whose_commit_went_unconfirmed_is_answered_outcome_unknown_and_its_command_id_settles_it(
    postgres_url: str,
) -> None:
    ministry, mission = _with_agencies(postgres_url)
    proxy = Proxy(_port())
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{postgres_url.rsplit('/', 1)[1]}"
    writer = {"Authorization": f"Bearer {mission}"}
    body = {**registration(), "command_id": str(uuid4())}
    answers: list[Any] = []
    try:
        with TestClient(create_app(url, max_wait=0.5)) as client:
            opening = client.post("/v1/seasons", json=SEASON_OPENING, headers={"Authorization": f"Bearer {ministry}"})
            assert opening.status_code == 201, opening.text  # the season known: the write then reads nothing first
            for _ in range(4):  # each pooled connection has prepared the append: it is then sent in one piece
                assert client.post("/v1/journeys", json=registration(), headers=writer).status_code == 201
            proxy.muted.set()  # the server runs what it is sent; its answers are lost
            sending = threading.Thread(
                target=lambda: answers.append(client.post("/v1/journeys", json=body, headers=writer))
            )
            started = time.monotonic()
            sending.start()
            time.sleep(0.5)
            proxy.down()
            proxy.muted.clear()
            sending.join(10)
            took = time.monotonic() - started
            [answer] = answers
            assert answer.status_code == 503, answer.text
            problem = answer.json()
            assert problem["type"].endswith("/outcome-unknown") and problem["command_ids"] == [body["command_id"]]
            assert "same command_id" in problem["detail"] and answer.headers["retry-after"] == "1"
            assert took < ANSWER_BOUND, took
            with psycopg.connect(postgres_url) as connection:  # it was committed: the server ran it
                found = connection.execute(
                    "SELECT count(*) FROM command_receipts WHERE command_id = %s", (body["command_id"],)
                ).fetchone()
                assert found == (1,)
            # The same command id, once the database is back: answered as the repeat it is, recorded once.
            proxy.up()
            again = client.post("/v1/journeys", json=body, headers=writer)
            assert again.status_code == 200 and again.json()["repeated"] is True, again.text
    finally:
        proxy.close()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT count(*) FROM command_receipts").fetchone() == (6,)  # the opening, 5 more


def test_readyz_answers_503_while_the_writer_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pause long enough that the probe after the lost write lands inside it however loaded the machine is.
    monkeypatch.setattr(GroupCommit, "RESTART_SECONDS", 5.0)
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    _, mission = _with_agencies(url)
    season_opened(url)
    writer = {"Authorization": f"Bearer {mission}"}
    with TestClient(create_app(url)) as client:
        ledger: JourneyLedger = client.app.state.services.ledger  # type: ignore[attr-defined]
        assert client.post("/v1/journeys", json=registration(), headers=writer).status_code == 201
        real = ledger.record_batch

        def dies(commands: Any) -> Any:
            monkeypatch.setattr(ledger, "record_batch", real)
            raise SystemExit("the writer's end")

        monkeypatch.setattr(ledger, "record_batch", dies)
        lost = client.post("/v1/journeys", json=registration(), headers=writer)
        assert lost.status_code == 503 and lost.json()["type"].endswith("/outcome-unknown"), lost.text
        assert client.get("/readyz").status_code == 503
        eventually(lambda: client.get("/readyz").status_code == 200, 15.0, "the writer started again")
        assert client.post("/v1/journeys", json=registration(), headers=writer).status_code == 201
