"""Reads from a streaming standby: a private primary and its standby, made in a temporary directory with the
PostgreSQL 15 binaries (`initdb`, `pg_basebackup -R`), run as the `postgres` OS user on free ports.

What proves a read came from the standby: with the standby's replay paused, a journey written and projected on the
primary is not found there, and a read asking for its position waits, then is answered by the primary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.sources import READ_URL_VARIABLE
from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.clusters import BIN, Cluster, primary_and_standby
from tests.conftest import IN_CI
from tests.support import TestClient, actor, project, registration, registration_command, season_opened
from tests.tcp_proxy import Proxy

MAX_WAIT = 1.0
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not IN_CI and not (BIN / "initdb").exists(), reason="no PostgreSQL 15 binaries"),
    pytest.mark.xdist_group("replica"),  # one worker builds the clusters (a module fixture) for all the tests
]


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """A primary and a streaming standby of it, torn down afterwards."""
    with primary_and_standby() as pair:
        yield pair


def _caught_up(primary: Cluster, standby: Cluster) -> None:
    """Wait until the standby has replayed everything the primary has written."""
    target = primary.sql("SELECT pg_current_wal_lsn()::text")[0]
    deadline = time.monotonic() + 30
    while standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0] is not True:
        assert time.monotonic() < deadline, "the standby never caught up"
        time.sleep(0.05)


def test_views_are_read_from_the_standby_and_read_your_writes_holds(
    clusters: tuple[Cluster, Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, standby = clusters
    assert standby.sql("SELECT pg_is_in_recovery()")[0] is True
    engine = engine_for(primary.url)
    upgrade(engine)
    with engine.begin() as connection:
        _, key = agencies.add(connection, Role.MINISTRY, "the ministry")
        _, mission_key = agencies.add(connection, Role.MISSION, "a mission", "mission-EGY-1")
    engine.dispose()
    monkeypatch.setenv(READ_URL_VARIABLE, standby.url)
    reader = {"Authorization": f"Bearer {key}"}
    writer = {"Authorization": f"Bearer {mission_key}"}

    def register() -> tuple[str, int]:
        answer = client.post("/v1/journeys", json=registration(), headers=writer)
        assert answer.status_code == 201, answer.text
        return answer.json()["aggregate_id"], answer.json()["position"]

    with TestClient(create_app(season_opened(primary.url), max_wait=MAX_WAIT)) as client:
        first, _ = register()
        project(primary.url)
        _caught_up(primary, standby)
        for _ in range(2):  # the second time from the key cache, answered before FastAPI's routing
            assert client.get(f"/v1/journeys/{first}", headers=reader).status_code == 200
        assert [e["event"] for e in client.get(f"/v1/journeys/{first}/history", headers=reader).json()["events"]] == [
            "Registered"
        ]

        # The standby stops replaying: what the primary writes now, only the primary has.
        standby.sql("SELECT pg_wal_replay_pause()")
        try:
            second, position = register()
            project(primary.url)
            for _ in range(2):
                assert client.get(f"/v1/journeys/{second}", headers=reader).status_code == 404  # the standby's view
            history = client.get(f"/v1/journeys/{second}/history", headers=reader)
            assert history.status_code == 404, history.text  # the standby's log
            page = client.get("/v1/views/journey_status", headers=reader).json()
            assert [r["journey_id"] for r in page["items"]] == [first] and page["position"] < position

            # Read-your-writes: the standby has not reached the position; after the wait, the primary answers.
            started = time.monotonic()
            mine = client.get(f"/v1/journeys/{second}", params={"min_position": position}, headers=reader)
            assert mine.status_code == 200, mine.text
            assert mine.json()["journey_id"] == second
            assert MAX_WAIT * 0.8 <= time.monotonic() - started < MAX_WAIT + 5
            listed = client.get("/v1/views/journey_status", params={"min_position": position}, headers=reader).json()
            assert {r["journey_id"] for r in listed["items"]} == {first, second} and listed["position"] >= position
        finally:
            standby.sql("SELECT pg_wal_replay_resume()")

        # Replaying again: the standby answers a position it has reached, at once.
        _caught_up(primary, standby)
        started = time.monotonic()
        mine = client.get(f"/v1/journeys/{second}", params={"min_position": position}, headers=reader)
        assert mine.status_code == 200 and time.monotonic() - started < MAX_WAIT * 0.8
        assert client.get(f"/v1/journeys/{second}", headers=reader).status_code == 200

        # A standby that is down is skipped: the primary answers.
        standby.stop()
        try:
            for path in (f"/v1/journeys/{second}", "/v1/views/journey_status", f"/v1/journeys/{second}/history"):
                answer = client.get(path, headers=reader)
                assert answer.status_code == 200, (path, answer.text)
        finally:
            standby.start()


def test_a_restarted_primary_costs_no_failed_read(clusters: tuple[Cluster, Cluster]) -> None:
    """The read pool keeps its connections (no ping on checkout); a restart breaks them all, and the first read
    after it still succeeds."""
    primary, _ = clusters
    engine = engine_for(primary.url)
    upgrade(engine)
    with engine.begin() as connection:
        _, key = agencies.add(connection, Role.MINISTRY, f"ministry {uuid4().hex[:8]}")
    engine.dispose()
    reader = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(primary.url, max_wait=MAX_WAIT)) as client:
        assert client.get("/v1/views/journey_status", headers=reader).status_code == 200
        primary.stop()
        primary.start()
        for _ in range(3):
            answer = client.get("/v1/views/journey_status", headers=reader)
            assert answer.status_code == 200, answer.text


def test_a_write_that_lands_on_a_standby_drops_the_pool_and_is_recorded_on_the_primary(
    clusters: tuple[Cluster, Cluster],
) -> None:
    """Pooled connections on a server that takes no writes (a standby; a primary since demoted) are dropped at the
    first write they refuse, and made again to wherever the URL leads now: the write is recorded, no error seen.
    A proxy of the test's own stands for the address that moves (a virtual IP, a DNS name)."""
    primary, standby = clusters
    season_opened(primary.url)  # the event store's tables and the season, replicated to the standby
    _caught_up(primary, standby)
    proxy = Proxy(standby.port)
    ledger = JourneyLedger(f"postgresql://postgres@127.0.0.1:{proxy.port}/ledger", create_tables=False)
    try:
        ledger.head()  # the pool's connections are open, on the standby
        proxy.target = ("127.0.0.1", primary.port)  # from now on the address reaches the primary
        outcome = ledger.record(parse_command(registration_command("IDN")), actor(Role.MISSION))
        assert outcome.position >= 1 and not outcome.repeated
    finally:
        ledger.close()
        proxy.close()
    with psycopg.connect(primary.url) as connection:
        found = connection.execute(
            "SELECT count(*) FROM command_receipts WHERE command_id = %s", (outcome.command_id,)
        ).fetchone()
    assert found == (1,)
