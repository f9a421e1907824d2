"""Seasons on SQLite and PostgreSQL: opened, closed, archived and restored through the ledger; their calendars
refusing what falls outside them; the `seasons` view, `current_season` and `GET /v1/seasons`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing as closing_connection
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import psycopg
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.domain.errors import (
    ConflictError,
    IllegalStepError,
    NotFoundError,
    OutsideSeasonError,
    PermissionDeniedError,
)
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.season import Calendar, Season
from hajj_ledger.domain.vocabulary import Mode, Port, Role, SeasonStage, Stage, makkah_day
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.projections.seasons import current_season, season_rows
from hajj_ledger.simulation.season import simulate
from hajj_ledger.store.seasons import season_partition
from tests.support import (
    MISSION_ID,
    T0,
    TestClient,
    actor,
    arrive_and_clear,
    command,
    journey_at,
    open_season,
    project,
    registered,
    registration,
    run_cli,
)

MINISTRY = actor(Role.MINISTRY)
CALENDAR_1446 = Calendar.of(1446)


@pytest.fixture
def ledger(store_url: str) -> Iterator[JourneyLedger]:
    found = JourneyLedger(store_url)
    try:
        yield found
    finally:
        found.close()


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def step(ledger: JourneyLedger, event: str, season: int = 1446, when: datetime = T0, **fields: Any) -> None:
    ledger.record(command(event, season=season, occurred_at=when, **fields), MINISTRY)


def closing(ledger: JourneyLedger, season: int = 1446) -> datetime:
    """The season's closing begun, the day after its grace period: when."""
    when = at(Calendar.of(season).departures_until + Season.CLOSING_GRACE + timedelta(days=1))
    step(ledger, "SeasonClosing", season, when)
    return when


CLOSED: dict[str, Any] = {"archive_url": "s3://hajj-archive/1446/", "manifest_digest": "0a" * 32, "first_position": 1,
          "last_position": 40, "event_count": 30}  # fmt: skip


def test_a_season_opened_closed_archived_and_restored(ledger: JourneyLedger) -> None:
    open_season(ledger, 1446)
    assert ledger.season(1446).calendar == CALENDAR_1446
    with pytest.raises(IllegalStepError, match="closing begins after 2025-08-09"):
        step(ledger, "SeasonClosing", when=at(date(2025, 8, 9)))
    when = closing(ledger)
    with pytest.raises(IllegalStepError, match="current stage 'closing'"):
        step(ledger, "SeasonArchived", when=when)
    step(ledger, "SeasonClosed", when=when, **CLOSED)
    step(ledger, "SeasonArchived", when=when)
    assert ledger.season(1446).stage is SeasonStage.ARCHIVED
    step(ledger, "SeasonRestored", when=when)
    season = ledger.season(1446)
    assert season.stage is SeasonStage.CLOSED
    assert season.archive_written is not None and season.archive_written.manifest_digest == "0a" * 32


def test_a_season_is_opened_once_and_only_by_the_ministry(ledger: JourneyLedger) -> None:
    with pytest.raises(NotFoundError):
        step(ledger, "SeasonClosing", when=at(date(2025, 9, 1)))
    with pytest.raises(PermissionDeniedError, match="role 'mission' may not record SeasonOpened"):
        ledger.record(command("SeasonOpened", season=1446), actor(Role.MISSION))
    open_season(ledger, 1446, registration_until=date(2025, 4, 1))
    with pytest.raises(ConflictError, match="season 1446 was opened already"):
        step(ledger, "SeasonOpened")
    assert ledger.season(1446).calendar.registration_until == date(2025, 4, 1)


def test_registrations_keep_to_the_registration_window(ledger: JourneyLedger) -> None:
    open_season(ledger, 1446, registration_until=date(2025, 4, 1))
    pilgrim = uuid4()
    with pytest.raises(OutsideSeasonError) as refused:
        ledger.record(command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN"), actor(Role.MISSION))
    assert "2025-05-01 (in Makkah) is outside the season's registration window, 2024-06-14 to 2025-04-01" in str(
        refused.value
    )
    assert refused.value.stage == "running"
    early = at(date(2024, 6, 13))
    with pytest.raises(OutsideSeasonError, match="season 1446 is 'open'"):
        ledger.record(
            command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN", occurred_at=early),
            actor(Role.MISSION),
        )
    inside = at(date(2025, 4, 1), hour=20)  # 23:00 in Makkah: still 1 April there
    ledger.record(
        command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN", occurred_at=inside), actor(Role.MISSION)
    )


def test_arrivals_keep_to_the_arrivals_window(ledger: JourneyLedger) -> None:
    open_season(ledger, 1446, arrivals_from=date(2025, 5, 2))
    with pytest.raises(AssertionError, match="arrivals window, 2025-05-02 to 2025-06-03"):
        arrive_and_clear(ledger, 1)  # arrives at T0, 1 May


def test_no_step_of_a_journey_once_its_season_is_closing(ledger: JourneyLedger) -> None:
    open_season(ledger, 1446)
    journeys = arrive_and_clear(ledger, 1)
    when = closing(ledger)
    for event, fields, role in (
        ("HospitalAdmitted", {"facility": "JED-KFH"}, Role.MOH),
        ("LegalHoldPlaced", {"hold": "overstay_investigation"}, Role.JAWAZAT),
    ):
        with pytest.raises(OutsideSeasonError) as refused:
            ledger.record(command(event, journey_id=journeys[0], occurred_at=when, **fields), actor(role))
        assert refused.value.stage == "closing"
        assert "its journeys take no more steps once closing begins" in str(refused.value)
    with pytest.raises(OutsideSeasonError, match="the season is no longer open; season 1446 is 'closing'"):
        ledger.record(
            command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN", occurred_at=when),
            actor(Role.MISSION),
        )


def test_the_current_season_follows_the_calendar(ledger: JourneyLedger, store_url: str) -> None:
    engine = engine_for(store_url)
    upgrade(engine)
    try:
        with engine.connect() as connection:
            assert current_season(connection) is None
        for season in (1446, 1447):
            open_season(ledger, season)
        project(store_url)
        hajj_1446, next_opens = CALENDAR_1446.hajj_from, Calendar.of(1447).registration_from
        expected = {
            date(2024, 1, 1): 1446,  # none has begun: the first to begin
            date(2024, 6, 14): 1446,
            next_opens: 1446,  # both windows hold it: the earlier
            hajj_1446 + timedelta(days=3): 1446,
            CALENDAR_1446.departures_until: 1446,
            CALENDAR_1446.departures_until + timedelta(days=1): 1447,
            date(2027, 3, 1): 1447,  # none holds it: the latest begun
        }
        with engine.connect() as connection:
            found = {day: current_season(connection, at(day)) for day in expected}
            # 21:30 UTC on the last day of departures is the next day in Makkah
            late = current_season(connection, at(CALENDAR_1446.departures_until, hour=21))
            rows = season_rows(connection, at(hajj_1446))
        assert found == expected and late == 1447
        assert [(r["season"], r["stage"], r["current"]) for r in rows] == [
            (1446, "running", True),
            (1447, "open", False),
        ]
        assert rows[0]["hajj_days"] == "8-13 Dhu al-Hijjah 1446"
        assert (rows[0]["hajj_from"], rows[0]["hajj_until"]) == (date(2025, 6, 4), date(2025, 6, 9))
    finally:
        engine.dispose()


def test_the_seasons_view_follows_closing_and_archiving(ledger: JourneyLedger, store_url: str) -> None:
    engine = engine_for(store_url)
    upgrade(engine)
    try:
        open_season(ledger, 1446)
        when = closing(ledger)
        step(ledger, "SeasonClosed", when=when, **CLOSED)
        project(store_url)
        with engine.connect() as connection:
            [row] = season_rows(connection)
        assert row["stage"] == "closed"
        assert {k: row[k] for k in CLOSED} == CLOSED
        step(ledger, "SeasonArchived", when=when)
        project(store_url)
        with engine.connect() as connection:
            assert [r["stage"] for r in season_rows(connection)] == ["archived"]
    finally:
        engine.dispose()


def test_get_seasons_is_read_by_every_role(ledger: JourneyLedger, store_url: str) -> None:
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        keys = {role: agencies.add(connection, role, f"the {role}", MISSION_ID if role is Role.MISSION else None)[1]
                for role in (Role.MISSION, Role.ANALYST, Role.MINISTRY)}  # fmt: skip
    engine.dispose()
    open_season(ledger, 1446)
    registered(ledger, 1)
    open_season(ledger, 1447, hajj_from=date(2026, 5, 26))
    project(store_url)
    with TestClient(create_app(store_url)) as client:
        for role, key in keys.items():
            answer = client.get("/v1/seasons", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, (role, answer.text)
            seasons = answer.json()
            assert [s["season"] for s in seasons] == [1446, 1447]
            assert seasons[1]["hajj_from"] == "2026-05-26" and seasons[1]["hajj_until"] == "2026-05-31"
            assert seasons[0]["hajj_days"] == "8-13 Dhu al-Hijjah 1446"
            # Today (December 2026 or later) neither window holds: the latest begun is current.
            assert [(s["stage"], s["current"]) for s in seasons] == [("running", False), ("running", True)]
        assert client.get("/v1/seasons").status_code == 401
        opened = client.post(
            "/v1/seasons", json={"season": 1448, "occurred_at": T0.isoformat()},
            headers={"Authorization": f"Bearer {keys[Role.MINISTRY]}"},
        )  # fmt: skip
        assert opened.status_code == 201, opened.text
        refused = client.post(
            "/v1/seasons/1448/begin-closing", json={"occurred_at": T0.isoformat()},
            headers={"Authorization": f"Bearer {keys[Role.MINISTRY]}"},
        )  # fmt: skip
        assert refused.status_code == 409 and refused.json()["current_stage"] == "open", refused.text
        forbidden = client.post(
            "/v1/seasons", json={"season": 1449, "occurred_at": T0.isoformat()},
            headers={"Authorization": f"Bearer {keys[Role.MISSION]}"},
        )  # fmt: skip
        assert forbidden.status_code == 403


def test_the_command_line_looks_pilgrims_up_in_the_current_season(store_url: str) -> None:
    env = {"HAJJ_LEDGER_DATABASE_URL": store_url}
    pilgrim = uuid4()
    ledger = JourneyLedger(store_url)
    try:
        unopened = run_cli("history", str(pilgrim), env=env)
        assert unopened.returncode == 1 and "no season has been opened" in unopened.stderr
        assert '"field": "--season"' in unopened.stderr
        open_season(ledger, 1446)
        registration = command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN")
        ledger.record(registration, actor(Role.MISSION))
    finally:
        ledger.close()
    # Today (December 2026 or later) 1446 is the latest season begun: the current one.
    found = run_cli("history", str(pilgrim), "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout.splitlines()[0])["event"] == "Registered"
    elsewhere = run_cli("history", str(pilgrim), "--season", "1447", env=env)
    assert elsewhere.returncode == 1 and "season 1447" in elsewhere.stderr
    assert "current season" in run_cli("history", "--help").stdout


def test_two_overlapping_seasons_are_simulated(ledger: JourneyLedger) -> None:
    summary = simulate(ledger, 150, 1446, seed=3, next_season_pilgrims=120)
    assert summary.refused == 0 and summary.events_by_type["SeasonOpened"] == 2  # both opened
    assert [s.season for s in ledger.seasons()] == [1446, 1447]
    registered: dict[int, list[datetime]] = {1446: [], 1447: []}
    for notification in ledger.recorder.select_notifications(1, 10**6):
        event = ledger.mapper.to_domain_event(notification)
        if isinstance(event, Journey.Registered):
            registered[event.season].append(event.stamp.occurred_at)
    assert (len(registered[1446]), len(registered[1447])) == (150, 120)
    # 1447's pilgrims register while 1446 is in the Hajj or leaving.
    hajj, last = CALENDAR_1446.hajj_from, CALENDAR_1446.departures_until
    assert all(hajj <= makkah_day(at) <= last for at in registered[1447])
    assert max(registered[1446]) < min(registered[1447])


def test_a_registration_for_a_season_never_opened_is_refused(ledger: JourneyLedger, store_url: str) -> None:
    pilgrim = uuid4()
    with pytest.raises(OutsideSeasonError) as refused:
        ledger.record(command("Registered", pilgrim_id=pilgrim, season=1446, country="IDN"), actor(Role.MISSION))
    assert "season 1446 has not been opened by the ministry" in str(refused.value)
    assert refused.value.stage == "not opened"
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        mission = agencies.add(connection, Role.MISSION, "the mission", MISSION_ID)[1]
    engine.dispose()
    with TestClient(create_app(store_url)) as client:
        answer = client.post("/v1/journeys", json=registration("IDN"), headers={"Authorization": f"Bearer {mission}"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["current_stage"] == "not opened"
    assert "season 1446 has not been opened by the ministry" in answer.json()["detail"]
    assert ledger.head() == 0  # nothing stored
    with pytest.raises(NotFoundError):
        ledger.journey(Journey.create_id(1446, pilgrim))


def test_a_journey_recorded_before_its_season_was_opened_keeps_its_steps(ledger: JourneyLedger) -> None:
    journey = journey_at(Stage.VISA_ISSUED)  # recorded as stores before seasons were: no season opened
    ledger.save(journey)
    ledger.record(
        command("ArrivedAtPort", journey_id=journey.id, port=Port.JED_HAJJ_TERMINAL, mode=Mode.AIR, flight="GA901"),
        actor(Role.GACA),
    )
    assert ledger.journey(journey.id).stage is Stage.ARRIVED


def test_a_node_accepts_no_step_of_a_season_another_node_put_into_closing(
    two_ledgers: tuple[JourneyLedger, JourneyLedger],
) -> None:
    """The first node's write cache still holds season 1446 open when the second begins closing it; a batch that
    only registers reads no cached aggregate afresh, and the store refuses what it writes into 1446 (the rest of
    the batch is recorded)."""
    first, second = two_ledgers
    [journey] = registered(first, 1)
    open_season(second, 1447)
    closing(second)
    late, next_season = uuid4(), uuid4()
    head = first.head()
    results = first.record_batch([
        (command("Registered", pilgrim_id=late, season=1446, country="IDN"), actor(Role.MISSION)),
        (command("Registered", pilgrim_id=next_season, season=1447, country="IDN", occurred_at=at(date(2025, 7, 1))),
         actor(Role.MISSION)),
    ])  # fmt: skip
    refused, recorded = results
    assert isinstance(refused, OutsideSeasonError), refused
    assert refused.stage == "closing" and "season 1446 is 'closing'" in str(refused)
    assert isinstance(recorded, Outcome) and recorded.position == head + 1
    with pytest.raises(NotFoundError):
        first.journey(Journey.create_id(1446, late))
    with pytest.raises(OutsideSeasonError, match="season 1446 is 'closing'"):
        first.record(command("HospitalAdmitted", journey_id=journey, facility="JED-KFH"), actor(Role.MOH))
    assert first.head() == head + 1


def _taken_out(ledger: JourneyLedger, store_url: str, season: int) -> None:
    """The season's events and receipts out of the hot store as closing takes them (archive.seasons): on PostgreSQL
    its partitions detached and dropped, on SQLite its rows deleted."""
    tables = (_events_table(ledger), "command_receipts")
    if store_url.startswith("sqlite"):
        with closing_connection(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as lite, lite:
            for table in tables:
                lite.execute(f"DELETE FROM {table} WHERE season = ?", (season,))
        return
    with psycopg.connect(store_url, autocommit=True) as connection:
        for table in tables:
            connection.execute(f"ALTER TABLE {table} DETACH PARTITION {season_partition(table, season)}")
            connection.execute(f"DROP TABLE {season_partition(table, season)}")


def _events_table(ledger: JourneyLedger) -> str:
    return str(cast(Any, ledger.store).events_table_name)


def test_a_write_into_an_archived_season_is_refused_by_the_store(ledger: JourneyLedger, store_url: str) -> None:
    """A node whose write cache still holds season 1446 open (its registrations read nothing afresh) writes into
    it after the season was archived and taken out of the hot store: 409 naming the season and its stage, over
    HTTP too, never a store error; nothing is written, and no partition of the season is made again."""
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        mission = agencies.add(connection, Role.MISSION, "the mission", MISSION_ID)[1]
    engine.dispose()
    headers = {"Authorization": f"Bearer {mission}"}
    open_season(ledger, 1446)
    with TestClient(create_app(store_url)) as client:
        assert client.post("/v1/journeys", json=registration("IDN"), headers=headers).status_code == 201
        when = closing(ledger)
        step(ledger, "SeasonClosed", when=when, **CLOSED)
        step(ledger, "SeasonArchived", when=when)
        _taken_out(ledger, store_url, 1446)
        head = ledger.head()
        answer = client.post("/v1/journeys", json=registration("IDN"), headers=headers)
        assert answer.status_code == 409, answer.text
        assert answer.json()["current_stage"] == "archived"
        assert "season 1446 is 'archived'" in answer.json()["detail"]
    refused = ledger.record_batch([
        (command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION))
    ])  # fmt: skip
    assert isinstance(refused[0], OutsideSeasonError) and refused[0].stage == "archived"
    assert ledger.head() == head
    if not store_url.startswith("sqlite"):
        with psycopg.connect(store_url) as connection:
            partition = connection.execute(
                "SELECT to_regclass(%s)", (season_partition(_events_table(ledger), 1446),)
            ).fetchone()
        assert partition == (None,)
