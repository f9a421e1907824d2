"""A closed season's audit answers, over HTTP and on the command line, equal those given before it was closed, at the
issue's sample size (issue 28): 1,000 journeys' histories, 100 as-of positions, 10 trail filters and every view of the
season, on SQLite and PostgreSQL; and a closed season whose archive cannot be read answers 503, saying why."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.archive.seasons import close
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.reads import Entry, TrailQuery, trail
from hajj_ledger.audit.signing import SigningKeys
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PAST_VIEWS, PROJECTIONS
from hajj_ledger.projections.closing import SeasonViews
from hajj_ledger.projections.read_season import by_season
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.support import TestClient, project

SEASON = 1446
PILGRIMS = 1000  # the simulator makes a journey for each pilgrim
SEASONAL_VIEWS = [p.name for p in PROJECTIONS if by_season(p.models[0])]
Get = Callable[..., tuple[int, Any]]


def _keys() -> SigningKeys:
    keys = signing_keys(required=True)
    assert keys is not None
    return keys


def _season_events(ledger: JourneyLedger, season: int = SEASON) -> list[tuple[int, UUID, str]]:
    """(position, aggregate, topic) of every event of a season in the hot store, in log order."""
    postgres = ledger.database_url.startswith("postgres")
    events, position = ("journeyledger_events", "notification_id") if postgres else ("stored_events", "rowid")
    with ledger.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            f"SELECT {position}, originator_id, topic FROM {events} WHERE season = {int(season)} ORDER BY {position}"
        )
        rows = [tuple(row.values() if isinstance(row, dict) else row) for row in cursor.fetchall()]
    return [(int(p), i if isinstance(i, UUID) else UUID(i), t) for p, i, t in rows]


def _prepared(store_url: str, pilgrims: int) -> tuple[JourneyLedger, dict[str, str]]:
    """A simulated season, its views caught up and its log sealed, with a key for each reader the test asks as."""
    ledger = JourneyLedger(store_url)
    simulate(ledger, pilgrims, SEASON, 7)
    engine = engine_for(store_url)
    upgrade(engine)
    project(store_url)
    Chain(ledger, _keys()).checkpoint()
    with engine.connect() as connection:
        mission = connection.exec_driver_sql("SELECT mission_id FROM journey_status ORDER BY journey_id").scalar()
    keys = {}
    with engine.begin() as connection:
        for role in (Role.MINISTRY, Role.AUDITOR):
            keys[str(role)] = agencies.add(connection, role, f"the {role}")[1]
        keys["mission"] = agencies.add(connection, Role.MISSION, "a mission of the season", mission)[1]
    engine.dispose()
    return ledger, keys


def _getter(client: TestClient, keys: dict[str, str]) -> Get:
    def get(who: str, path: str, **params: Any) -> tuple[int, Any]:
        answer = client.get(path, headers={"Authorization": f"Bearer {keys[who]}"}, params=params)
        return answer.status_code, answer.json()

    return get


def _pages(get: Get, who: str, path: str, cursor_name: str = "cursor", **params: Any) -> list[Any]:
    """Every page of a paged answer, followed by its cursor; each page whole (its position and season too)."""
    pages, cursor = [], None
    while True:
        status, body = get(who, path, **params, **({cursor_name: cursor} if cursor else {}), limit=1000)
        assert status == 200, body
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def _view_answers(get: Get) -> dict[str, Any]:
    """Every view of the season, page after page, as the ministry reads it, and as one mission (its own rows)."""
    answers = {}
    for name in SEASONAL_VIEWS:
        pages = _pages(get, "ministry", f"/v1/views/{name}", season=SEASON)
        answers[name] = [{k: v for k, v in page.items() if k != "position"} for page in pages]
    for name in ("journey_status", "contracts", "missing_persons"):
        answers[f"{name} (mission)"] = [
            page["items"] for page in _pages(get, "mission", f"/v1/views/{name}", season=SEASON)
        ]
    return answers


def _http_answers(
    get: Get, journeys: list[UUID], as_of: list[tuple[UUID, int]], trails: list[dict[str, Any]], proofs: list[int]
) -> dict[str, Any]:
    histories = {j: get("auditor", f"/v1/journeys/{j}/history") for j in journeys}
    scoped = {j: get("mission", f"/v1/journeys/{j}/history") for j in journeys[:100]}
    statuses = {j: get("mission", f"/v1/journeys/{j}") for j in journeys[:100]}
    past = {(j, p): get("auditor", f"/v1/audit/journeys/{j}", position=p) for j, p in as_of}
    trail = [_pages(get, "auditor", "/v1/audit/events", "cursor", **query) for query in trails]
    proof = {p: get("auditor", "/v1/audit/proof", position=p) for p in proofs}
    past_views = {
        (name, p): _pages(get, "auditor", f"/v1/audit/views/{name}", season=SEASON, position=p)
        for name in PAST_VIEWS
        for p in {as_of[len(as_of) // 2][1], as_of[-1][1]}
    }
    return {
        "histories": histories, "scoped histories": scoped, "statuses": statuses, "as of": past, "trails": trail,
        "proofs": proof, "past views": past_views, "views": _view_answers(get),
    }  # fmt: skip


def _trails(events: list[tuple[int, UUID, str]], first: dict[str, Any], journey: UUID, trip: UUID) -> list[Any]:
    """Ten trail filters: the season's whole trail, by event, agency, recorded time and position, and an aggregate's."""
    low, high = events[len(events) // 4][0], events[3 * len(events) // 4][0]
    recorded = first["recorded_at"]
    return [
        {"season": SEASON},
        {"season": SEASON, "event": "VisaIssued"},
        {"season": SEASON, "event": "ArrivedAtPort", "from_position": low},
        {"season": SEASON, "agency_id": first["agency_id"]},
        {"season": SEASON, "recorded_from": recorded},
        {"season": SEASON, "from_position": low, "until_position": high},
        {"season": SEASON, "event": "Departed", "until_position": high},
        {"season": SEASON, "agency_id": first["agency_id"], "event": "Registered", "recorded_until": recorded},
        {"aggregate_id": str(journey)},
        {"aggregate_id": str(trip)},
    ]


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str) -> Callable[..., str]:
    from hajj_ledger.cli import main

    def run(*argv: str) -> str:
        monkeypatch.setenv("HAJJ_LEDGER_DATABASE_URL", url)  # `--archived` points it at the season's store
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out + err

    return run


def _cli_trail(run: Callable[..., str], *filters: str) -> list[dict[str, Any]]:
    """A whole trail on the command line: page after page (`more: --after N`)."""
    entries: list[dict[str, Any]] = []
    after = "0"
    while True:
        lines = run("trail", *filters, "--json", "--limit", "1000", "--after", after).splitlines()
        entries += [json.loads(line) for line in lines if line.startswith("{")]
        more = [line.rpartition(" ")[2] for line in lines if line.startswith("more: --after")]
        if not more:
            return entries
        after = more[0]


def _cli_answers(
    run: Callable[..., str], journeys: list[UUID], as_of: list[tuple[UUID, int]], proofs: list[int], *archived: str
) -> dict[str, Any]:
    return {
        "histories": [run("history", str(j), "--json", *archived) for j in journeys],
        "as of": [run("as-of", str(j), "--position", str(p), *archived) for j, p in as_of],
        "proofs": [run("proof", str(p), *archived) for p in proofs],
        "views": [run("view", n, "--season", str(SEASON), "--limit", "100000", *archived) for n in SEASONAL_VIEWS],
    }


def test_a_closed_season_answers_as_it_did_before_over_http_and_on_the_command_line(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    ledger, keys = _prepared(store_url, PILGRIMS)
    events = _season_events(ledger)
    journeys = sorted({i for _, i, t in events if t.endswith("Journey.Registered")})
    assert len(journeys) >= PILGRIMS
    registered = sorted((p, i) for p, i, t in events if t.endswith("Journey.Registered"))
    last = events[-1][0]
    head = ledger.head()
    # 100 positions across the season and past its last event, each asked of a journey registered by then.
    positions = [registered[0][0] + (head - registered[0][0]) * k // 99 for k in range(100)]
    as_of = [(next(i for p, i in reversed(registered) if p <= at), at) for at in positions]
    proofs = [events[len(events) * k // 10][0] for k in range(10)] + [last]
    Chain(ledger, _keys()).checkpoint_at(last)  # as the close will: the covering checkpoint of the last proofs
    trip = next(i for _, i, t in events if t.endswith("Trip.TripScheduled"))
    run = _cli(capsys, monkeypatch, store_url)
    first = json.loads(run("history", str(journeys[0]), "--json").splitlines()[0])
    trails = _trails(events, first, journeys[1], trip)
    cli_trails = [("--event", "VisaIssued"), ("--agency", first["agency_id"]), (str(journeys[2]),)]
    season_aggregates = {str(i) for _, i, _ in events}

    with TestClient(create_app(store_url)) as client:
        before = _http_answers(_getter(client, keys), journeys, as_of, trails, proofs)
    cli_before = _cli_answers(run, journeys, as_of, proofs)
    cli_trails_before = [[e for e in _cli_trail(run, *f) if e["aggregate_id"] in season_aggregates] for f in cli_trails]

    close(ledger, SEASON, str(tmp_path / "archive"), _keys(), SeasonViews(store_url))
    project(store_url)  # the seasons view: the season archived, with its archive's place
    assert _season_events(ledger) == []

    with TestClient(create_app(store_url)) as client:
        after = _http_answers(_getter(client, keys), journeys, as_of, trails, proofs)
    for part in before:
        assert after[part] == before[part], part
    assert sum(len(page["items"]) for page in before["trails"][0]) == len(events)
    assert all(status == 200 for status, _ in before["histories"].values())
    assert {status for status, _ in before["scoped histories"].values()} == {200, 404}  # its own journeys alone
    assert all(status == 200 for status, _ in [*before["as of"].values(), *before["proofs"].values()])
    assert sum(len(page["items"]) for page in before["views"]["journey_status"]) == len(journeys)
    assert all(page[0]["items"] for page in before["past views"].values())

    archived = ("--archived", "--season", str(SEASON))
    assert _cli_answers(run, journeys, as_of, proofs, *archived) == cli_before
    assert [_cli_trail(run, *f, *archived) for f in cli_trails] == cli_trails_before
    ledger.close()


@pytest.fixture
def closed(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Get, Path, UUID]]:
    """A small season closed to an archive under tmp, and a way to ask the API of it."""
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    ledger, keys = _prepared(store_url, 8)
    journey = next(i for _, i, t in _season_events(ledger) if t.endswith("Journey.Registered"))
    close(ledger, SEASON, str(tmp_path / "archive"), _keys(), SeasonViews(store_url))
    project(store_url)
    ledger.close()
    with TestClient(create_app(store_url)) as client:
        yield _getter(client, keys), tmp_path / "archive", journey


def test_a_closed_season_whose_archive_is_gone_answers_503_with_the_reason(closed: tuple[Get, Path, UUID]) -> None:
    get, archive, journey = closed
    shutil.move(archive, archive.with_name("moved"))

    for path, params in (
        (f"/v1/journeys/{journey}/history", {}),
        ("/v1/audit/events", {"season": SEASON}),
        ("/v1/views/journey_status", {"season": SEASON}),
    ):
        status, problem = get("auditor" if "views" not in path else "ministry", path, **params)
        assert status == 503, problem
        assert problem["type"].endswith("/season-archive-unavailable") and problem["season"] == SEASON
        assert problem["archive_url"] == archive.as_uri() and "manifest.json" in problem["reason"]

    shutil.move(archive.with_name("moved"), archive)  # back in its place: read as before
    status, history = get("auditor", f"/v1/journeys/{journey}/history")
    assert status == 200 and history["events"][0]["event"] == "Registered"


def test_an_archive_that_is_not_the_one_closed_is_not_read(closed: tuple[Get, Path, UUID]) -> None:
    get, archive, journey = closed
    manifest = archive / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"season": 1446', '"season": 1446 '))

    status, problem = get("auditor", f"/v1/journeys/{journey}/history")

    assert status == 503 and "is not the one the season was closed with" in problem["reason"]


def _whole_trail(ledger: JourneyLedger, query: TrailQuery) -> list[Entry]:
    entries: list[Entry] = []
    after: int | None = 0
    while after is not None:
        page = trail(ledger, query, after, 1000)
        entries += page.entries
        after = page.next_after
    return entries


def test_the_trail_of_a_season_holds_its_events_alone_read_through_the_index_or_the_log(store_url: str) -> None:
    ledger = JourneyLedger(store_url)
    simulate(ledger, 6, SEASON, 3)
    simulate(ledger, 4, SEASON + 1, 4)
    seasons = {s: [p for p, _, _ in _season_events(ledger, s)] for s in (SEASON, SEASON + 1)}
    everything = _whole_trail(ledger, TrailQuery())
    journey = next(i for _, i, t in _season_events(ledger) if t.endswith("Journey.Registered"))
    for indexed in (False, True):  # the trail's index not built yet (the log read), then built
        if indexed:
            upgrade(engine := engine_for(store_url))
            engine.dispose()
            project(store_url)
        for season, positions in seasons.items():
            assert [e.position for e in _whole_trail(ledger, TrailQuery(season=season))] == positions
            visas = _whole_trail(ledger, TrailQuery(season=season, event="VisaIssued"))
            assert visas == [e for e in everything if e.event == "VisaIssued" and e.position in positions] != []
        assert _whole_trail(ledger, TrailQuery(aggregate_id=journey, season=SEASON + 1)) == []
        assert _whole_trail(ledger, TrailQuery(aggregate_id=journey, season=SEASON))
    assert len(everything) > len(seasons[SEASON]) + len(seasons[SEASON + 1])  # the seasons' own events: of none
    ledger.close()


def test_the_summary_of_a_closed_season_counts_what_it_counted_before(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    ledger, keys = _prepared(store_url, 12)
    # The figures of the season; trips on the road and beds are of now, of no season.
    figures = ("season", "funnel", "arrivals", "in_kingdom", "cases", "overstays", "offers", "contracts")

    def summaries() -> list[dict[str, Any]]:
        with TestClient(create_app(store_url)) as client:
            get = _getter(client, keys)
            answers = [get(who, "/v1/summary", season=SEASON, day="2025-06-05") for who in ("ministry", "mission")]
        assert all(status == 200 for status, _ in answers), answers
        return [{name: body[name] for name in figures} for _, body in answers]

    before = summaries()
    close(ledger, SEASON, str(tmp_path / "archive"), _keys(), SeasonViews(store_url))
    project(store_url)
    ledger.close()

    assert summaries() == before
    assert sum(stage["reached"] for stage in before[0]["funnel"]) > 0 and before[1]["contracts"]["contracts"] > 0
