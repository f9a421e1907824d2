"""Every read is of one season, on SQLite and PostgreSQL, through a real server: with two overlapping seasons in one
store, every page (the summary, every view of journeys, the change feed with `?season=`, the command line's `view`)
and an export show exactly the season asked for, by default the calendar's current one; the next season's
registrations and everything after them change nothing on the current season's pages and figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pyarrow.parquet as pq
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.feed import HEARTBEAT_VARIABLE
from hajj_ledger.api.routes.exports import EXPORTS_VARIABLE
from hajj_ledger.cli import main
from hajj_ledger.domain.access import may_follow
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Role, makkah_day
from hajj_ledger.following import Following
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.export import export
from hajj_ledger.projections.read_season import by_season
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.integration.test_feed import Client, Server, serving
from tests.support import T0, TestClient, actor, command, eventually, project, stamp

CURRENT, NEXT = 1446, 1447
PILGRIMS = 10
BY_SEASON = [p.name for p in PROJECTIONS if by_season(p.models[0])]
SEASONS_TABLES = {model.name for p in PROJECTIONS for model in p.models if by_season(model)}  # as exported
# The summary's figures of things of no season (trips, buildings): of now, whichever season is asked for.
OF_NOW = ("trips_on_the_road", "beds", "road")
DAY = makkah_day(T0).isoformat()


@pytest.fixture
def server(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A node of the API on a store holding the current season, simulated whole, and its views caught up."""
    monkeypatch.setenv(HEARTBEAT_VARIABLE, "0.2")  # a feed's client, told to stop, hears of it within the beat
    JourneyLedger(store_url).close()  # the log's tables first, then the read models' (which index the log)
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        keys = {
            str(role): agencies.add(connection, role, f"the {role}")[1]
            for role in (Role.MINISTRY, Role.AUDITOR, Role.ANALYST)
        }
    engine.dispose()
    # The current season by the calendar: its window (registration opens .. its last departures) holds today, and
    # the next season's registrations, bookings and arrivals come while it runs.
    ledger = JourneyLedger(store_url)
    try:
        until = makkah_day(datetime.now(UTC)) + timedelta(days=365)
        ledger.record(command("SeasonOpened", season=CURRENT, departures_until=until), actor(Role.MINISTRY))
    finally:
        ledger.close()
    _simulated(store_url, CURRENT, seed=5)
    with serving(store_url, keys) as found:
        yield found


def _simulated(url: str, season: int, seed: int) -> None:
    ledger = JourneyLedger(url)
    try:
        simulate(ledger, PILGRIMS, season, seed)
    finally:
        ledger.close()
    project(url)


def _get(server: Server, path: str, who: str = "ministry", **params: Any) -> Any:
    answer = server.http.get(
        f"{server.base}{path}", params=params, headers={"Authorization": f"Bearer {server.keys[who]}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _rows(server: Server, name: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a view (the ministry reads every view, unscoped), page after page."""
    rows: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    while True:
        page = _get(server, f"/v1/views/{name}", limit=500, **params, **cursor)
        rows += page["items"]
        if page["next_cursor"] is None:
            return rows
        cursor = {"cursor": page["next_cursor"]}


def _pages(server: Server, **params: Any) -> dict[str, Any]:
    """What the ministry sees: the summary (but its figures of no season, and the list of seasons there are) and every
    view by season, whole."""
    summary = {k: v for k, v in _get(server, "/v1/summary", day=DAY, **params).items() if k not in (*OF_NOW, "seasons")}
    return {"summary": summary, **{name: _rows(server, name, **params) for name in BY_SEASON}}


def _exported(url: str, out: Path, season: int | None) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """An export's manifest and its read models by season (ids pseudonymised, with one key throughout)."""
    manifest = export(out, url=url, season=season)
    tables = {
        name: pq.read_table(out / entry["files"][0]["file"]).to_pylist()
        for name, entry in manifest["tables"].items()
        if name in SEASONS_TABLES
    }
    return manifest, tables


def _cli_view(url: str, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              *args: str) -> list[dict[str, Any]]:  # fmt: skip
    monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", url)
    capsys.readouterr()
    assert main(["view", name, "--limit", "100000", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_page_shows_the_season_asked_for_and_the_next_season_changes_none_of_the_current(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url
    before = _pages(server, season=CURRENT)
    assert before["summary"]["season"] == CURRENT
    assert {s["stage"]: s["reached"] for s in before["summary"]["funnel"]}["registered"] == PILGRIMS
    assert len(before["journey_status"]) == PILGRIMS
    assert before["port_arrivals"] and before["site_headcount"]  # the current season's arrivals and sites, to keep
    exported_before = _exported(url, tmp_path / "before", CURRENT)[1]
    cli_before = {name: _cli_view(url, name, monkeypatch, capsys, "--season", str(CURRENT)) for name in BY_SEASON}
    feed = Client(server, "ministry", after=0, season=CURRENT)
    try:
        _simulated(url, NEXT, seed=6)  # the next season, whole: registrations, bookings, arrivals, the holy sites
        ledger = JourneyLedger(url, create_tables=False)
        try:  # of no season: every follower of any season is told of it, after all that came before
            last = ledger.record(
                command("TripScheduled", operator="SAPTCO", bus_plate="KSA-9", origin="JED-HAJJ", destination="makkah",
                        departs_at=T0, capacity=49, expected_arrival=T0 + timedelta(hours=2)),
                actor(Role.NAQABA),
            ).position  # fmt: skip
            told = Following(ledger).read(0, 1_000_000)[1]
        finally:
            ledger.close()
        project(url)
        eventually(lambda: last in feed.ids(), 60, "the feed told of the last event")
    finally:
        feed.close()

    # The change feed: exactly the current season's events (and those of no season), none of the next.
    assert {t.season for t in told} == {CURRENT, NEXT, None}
    assert feed.ids() == [
        t.position for t in told
        if t.season in (CURRENT, None) and may_follow(Role.MINISTRY, "ministry", t.event, t.owners)
    ]  # fmt: skip

    # The summary and every view of the current season, exactly as before, asked for or by default; the next season's,
    # its own alone.
    after = _pages(server, season=CURRENT)
    assert after == before and _pages(server) == before
    following = _pages(server, season=NEXT)
    assert _get(server, "/v1/summary", season=CURRENT)["seasons"] == [NEXT, CURRENT]
    assert following["summary"]["season"] == NEXT
    assert {s["stage"]: s["reached"] for s in following["summary"]["funnel"]}["registered"] == PILGRIMS
    for name in BY_SEASON:
        assert {row["season"] for row in following[name]} <= {NEXT}, name
    assert len(following["journey_status"]) == PILGRIMS

    # An export of the current season: the same rows as before, its manifest naming the season.
    manifest, exported_after = _exported(url, tmp_path / "after", CURRENT)
    assert manifest["season"] == CURRENT and exported_after == exported_before
    assert all(row["season"] == CURRENT for rows in exported_after.values() for row in rows)
    next_manifest, exported_next = _exported(url, tmp_path / "next", NEXT)
    assert next_manifest["season"] == NEXT
    assert all(row["season"] == NEXT for rows in exported_next.values() for row in rows)
    monkeypatch.setenv(EXPORTS_VARIABLE, str(tmp_path / "over-http"))
    asked = server.http.post(f"{server.base}/v1/exports", json={"season": CURRENT, "format": "csv"},
                             headers={"Authorization": f"Bearer {server.keys['analyst']}"})  # fmt: skip
    assert asked.status_code == 202, asked.text
    done = _export_done(server, asked.json()["export_id"])
    assert done["season"] == CURRENT, done

    # The command line's views, as the API's.
    for name in BY_SEASON:
        assert _cli_view(url, name, monkeypatch, capsys, "--season", str(CURRENT)) == cli_before[name], name
        assert {row["season"] for row in _cli_view(url, name, monkeypatch, capsys, "--season", str(NEXT))} <= {NEXT}


def _export_done(server: Server, export_id: str) -> dict[str, Any]:
    """The export's progress, once it has finished."""
    progress: dict[str, Any] = {}

    def finished() -> bool:
        progress.update(_get(server, f"/v1/exports/{export_id}", "analyst"))
        return bool(progress["state"] != "running")

    eventually(finished, 120, "the export finished")
    return progress


def test_every_read_that_names_no_season_reads_the_current_one(server: Server) -> None:
    """By the calendar, the current season is the one whose window holds today, though the next one's journeys are
    newer: a read without `season` is of it alone, and says which."""
    _simulated(server.url, NEXT, seed=6)
    current = _pages(server, season=CURRENT)
    assert _pages(server) == current and current["summary"]["season"] == CURRENT
    for name in BY_SEASON:
        assert _get(server, f"/v1/views/{name}", limit=1)["season"] == CURRENT, name
    assert "season" not in _get(server, "/v1/views/trip_manifest")  # trips are of no season
    assert len(_get(server, "/v1/views/seasons")["items"]) == 2  # the calendar lists every season
    for name in ("journey_status", "season_funnel"):  # the auditors' views as of a past position, as the serving ones
        past = _get(server, f"/v1/audit/views/{name}", "auditor", position=server.positions()[-1], limit=500)
        assert past["season"] == CURRENT and past["items"], name
        assert {row["season"] for row in past["items"]} == {CURRENT}, name


def test_a_store_where_no_season_was_opened_reads_the_newest(store_url: str) -> None:
    """A store older than the calendar still shows something: the newest season its views hold, that one alone."""
    ledger = JourneyLedger(store_url)
    try:
        for season in (CURRENT, NEXT, NEXT):  # straight to the store, as the ledger recorded them before calendars
            journey = Journey.register(stamp(Role.MISSION), uuid4(), season, "IDN", False)
            ledger.save(journey, seasons={journey.id: season})
    finally:
        ledger.close()
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        key = agencies.add(connection, Role.MINISTRY, "the ministry")[1]
    engine.dispose()
    project(store_url)
    with TestClient(create_app(store_url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        summary = client.get("/v1/summary", headers=headers).json()
        assert (summary["season"], summary["seasons"]) == (NEXT, [NEXT, CURRENT])
        assert {s["stage"]: s["reached"] for s in summary["funnel"]} == {"registered": 2}
        page = client.get("/v1/views/journey_status", headers=headers).json()
        assert page["season"] == NEXT and [row["season"] for row in page["items"]] == [NEXT, NEXT]
