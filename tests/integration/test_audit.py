"""Auditing on SQLite and PostgreSQL: the trail and its filters and pages, a journey and the views as of a past
moment (compared with a ledger built from only the events up to there), replay, and who may ask."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hajj_ledger.audit import reads as audit
from hajj_ledger.audit.as_of import AsOf, journey_as_of
from hajj_ledger.audit.reads import Entry, TrailQuery
from hajj_ledger.domain.errors import NotFoundError, ValidationError
from hajj_ledger.domain.vocabulary import Mode, Port, Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.framework import Projection
from hajj_ledger.projections.replay import PastViews, replay, target
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.conftest import POSTGRES_AVAILABLE
from tests.integration.test_api import Api, api, is_problem  # noqa: F401 (the fixture)
from tests.support import T0, actor, command, open_market, project

PILGRIMS = 40


@pytest.fixture
def season(ledger: JourneyLedger) -> JourneyLedger:
    simulate(ledger, PILGRIMS, 1446, seed=11)
    return ledger


def everything(ledger: JourneyLedger, query: TrailQuery, limit: int = 1000) -> tuple[list[Entry], int]:
    """Every entry the query admits, page after page; and how many pages it took."""
    found: list[Entry] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        page = audit.trail(ledger, query, after, limit)
        assert len(page.entries) <= limit
        found += page.entries
        after = page.next_after
        pages += 1
    return found, pages


# 1. The trail.


def test_a_journeys_trail_is_its_history_with_positions(season: JourneyLedger) -> None:
    log = everything(season, TrailQuery())[0]
    assert [e.position for e in log] == list(range(1, season.head() + 1))
    journey_id = next(e.aggregate_id for e in log if e.event == "Departed")
    trail = everything(season, TrailQuery(aggregate_id=journey_id))[0]
    history = season.history(journey_id)
    assert [(e.event, e.version) for e in trail] == [(type(h).__name__, h.originator_version) for h in history]
    assert [e.position for e in trail] == season.store.select_positions(
        (h.originator_id, h.originator_version, "") for h in history
    )
    for entry, event in zip(trail, history, strict=True):
        assert entry.aggregate == "journey"
        assert (entry.occurred_at, entry.recorded_at) == (event.stamp.occurred_at, event.timestamp)
        assert (entry.agency_id, entry.role, entry.command_id) == (
            event.stamp.agency_id, event.stamp.role, event.stamp.command_id,
        )  # fmt: skip
        assert entry.occurred_at.tzinfo is not None and entry.recorded_at.tzinfo is not None
    assert trail[0].fields["season"] == 1446 and "stamp" not in trail[0].fields

    trip_id = next(e.aggregate_id for e in log if e.event == "TripScheduled")
    trip = everything(season, TrailQuery(aggregate_id=trip_id))[0]
    assert trip[0].event == "TripScheduled" and {e.aggregate for e in trip} == {"trip"}
    assert [e.position for e in trip] == sorted(e.position for e in log if e.aggregate_id == trip_id)
    with pytest.raises(NotFoundError):
        audit.trail(season, TrailQuery(aggregate_id=uuid4()))


def test_each_filter_keeps_exactly_what_it_names(season: JourneyLedger) -> None:
    log = everything(season, TrailQuery())[0]
    agency = log[0].agency_id
    recorded = sorted(e.recorded_at for e in log)
    early, late = recorded[len(log) // 3], recorded[2 * len(log) // 3]
    third, two_thirds = len(log) // 3, 2 * len(log) // 3
    journey_id = next(e.aggregate_id for e in log if e.event == "Registered")
    cases: list[tuple[TrailQuery, Any]] = [
        (TrailQuery(agency_id=agency), lambda e: e.agency_id == agency),
        (TrailQuery(event="Boarded"), lambda e: e.event == "Boarded"),
        (TrailQuery(event="SeatReserved"), lambda e: e.event == "SeatReserved"),
        (TrailQuery(recorded_from=early), lambda e: e.recorded_at >= early),
        (TrailQuery(recorded_until=late), lambda e: e.recorded_at <= late),
        (TrailQuery(from_position=third), lambda e: e.position >= third),
        (TrailQuery(until_position=two_thirds), lambda e: e.position <= two_thirds),
        (
            TrailQuery(aggregate_id=journey_id, event="MovedToSite", from_position=third),
            lambda e: e.aggregate_id == journey_id and e.event == "MovedToSite" and e.position >= third,
        ),
        (
            TrailQuery(agency_id="naqaba", recorded_from=early, recorded_until=late, until_position=two_thirds),
            lambda e: e.agency_id == "naqaba" and early <= e.recorded_at <= late and e.position <= two_thirds,
        ),
    ]
    for query, admits in cases:
        expected = [e for e in log if admits(e)]
        assert 0 < len(expected) < len(log), query  # the filter keeps something and leaves something out
        assert everything(season, query, limit=7)[0] == expected, query


def test_pages_follow_the_cursor_and_read_a_bounded_stretch(
    season: JourneyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, one = everything(season, TrailQuery())
    paged, pages = everything(season, TrailQuery(), limit=50)
    assert paged == log and pages == -(-len(log) // 50) > one
    mission = next(e.agency_id for e in log if e.role == Role.MISSION)
    wanted = [e for e in log if e.agency_id == mission]
    monkeypatch.setattr(audit, "SCAN", 100)  # a rare agency: pages end at the scan budget, short of the limit
    bounded, pages = everything(season, TrailQuery(agency_id=mission), limit=1000)
    assert bounded == wanted and pages >= len(log) // 100
    with pytest.raises(ValidationError) as refused:
        audit.trail(season, TrailQuery(), limit=1001)
    assert refused.value.field == "limit"


def test_bad_queries_name_the_field() -> None:
    for fields, field in (
        ({"event": "Teleported"}, "event"),
        ({"recorded_from": T0.replace(tzinfo=None)}, "recorded_from"),
        ({"recorded_from": T0, "recorded_until": T0 - timedelta(1)}, "recorded_until"),
        ({"from_position": -1}, "from_position"),
        ({"from_position": 9, "until_position": 3}, "until_position"),
    ):
        with pytest.raises(ValidationError) as refused:
            TrailQuery(**fields)
        assert refused.value.field == field
    with pytest.raises(ValidationError) as refused:
        AsOf(position=3, occurred_at=T0)
    assert refused.value.field == "as_of"


# 2. As of a past moment, against a ledger that only ever had the events up to there.


def fresh_copy(ledger: JourneyLedger, position: int, url: str) -> JourneyLedger:
    """A new store holding the first `position` events of `ledger`'s log, at the same positions."""
    copy = JourneyLedger(url)
    notifications = ledger.recorder.select_notifications(start=1, limit=position)
    assert [n.id for n in notifications] == list(range(1, position + 1))
    copy.recorder.insert_events(
        [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in notifications]
    )
    return copy


def view_rows(connection: sa.Connection, projections: list[Projection]) -> dict[str, list[tuple[str, ...]]]:
    return {
        model.name: sorted(tuple(map(_text, row)) for row in connection.execute(sa.select(model.view())))
        for p in projections
        for model in p.models
    }


def _rows_text(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows as `view_rows` spells them."""
    return sorted(tuple(map(_text, row.values())) for row in rows)


def _text(value: Any) -> str:
    """A value as text, the same from either store (SQLite gives back its UTC times without their zone)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value)


def served_views(url: str, projections: list[Projection]) -> dict[str, list[tuple[str, ...]]]:
    """The views of the store at `url`, migrated and caught up as `hajj-ledger project` keeps them."""
    engine = engine_for(url)
    upgrade(engine)
    project(url)
    with engine.connect() as connection:
        rows = view_rows(connection, projections)
    engine.dispose()
    return rows


def test_as_of_a_position_is_a_ledger_of_the_events_up_to_there(
    season: JourneyLedger, store_url: str, tmp_path: Path
) -> None:
    head = season.head()
    serving = served_views(store_url, list(PROJECTIONS))  # the serving views, which nothing below may touch
    past = PastViews(season, store_url)
    registrations = everything(season, TrailQuery(event="Registered"))[0]
    journeys = {e.aggregate_id for e in registrations}
    try:
        for position in (registrations[0].position, head // 4, head // 2 + 7, head):
            fresh = fresh_copy(season, position, f"sqlite:///{tmp_path}/copy-{position}.sqlite3")
            try:
                for journey_id in journeys:
                    try:
                        then = fresh.journey(journey_id)
                    except NotFoundError:
                        with pytest.raises(NotFoundError):
                            journey_as_of(season, journey_id, AsOf(position=position))
                        continue
                    known = journey_as_of(season, journey_id, AsOf(position=position))
                    assert vars(known.journey) == vars(then), (position, journey_id)
                    assert known.events == then.version and known.position <= position
                    by_time = journey_as_of(season, journey_id, AsOf(recorded_at=known.journey.modified_on))
                    assert vars(by_time.journey) == vars(then)
            finally:
                fresh.close()
            names = [p for p in PROJECTIONS if p.name in PastViews.NAMES]
            expected = served_views(f"sqlite:///{tmp_path}/copy-{position}.sqlite3", names)
            with past.at(position) as connection:
                built = view_rows(connection, [p for p in names if p.name in PastViews.BUILT])
            assert built == {k: v for k, v in expected.items() if k in built}, position
            assert _rows_text(past.journey_status(position, None, 1000)) == expected["journey_status"], position
            assert len(expected["journey_status"]) <= PILGRIMS and (expected["journey_status"] or position < head)
    finally:
        past.close()
    assert served_views(store_url, list(PROJECTIONS)) == serving
    with pytest.raises(ValidationError) as refused:
        journey_as_of(season, next(iter(journeys)), AsOf(position=head + 1))
    assert refused.value.field == "position" and f"({head})" in refused.value.reason


def test_as_of_a_business_time_in_agreeing_clocks_is_as_of_the_position(season: JourneyLedger) -> None:
    """Where a journey's events happened in the order they were recorded, "what had happened by the k-th event's
    time" is the journey as of the k-th event's position."""
    log = everything(season, TrailQuery(event="Registered"))[0]
    compared = 0
    for registration in log:
        trail = everything(season, TrailQuery(aggregate_id=registration.aggregate_id))[0]
        times = [e.occurred_at for e in trail]
        if times != sorted(times) or len(set(times)) != len(times):
            continue
        for entry in trail:
            happened = journey_as_of(season, entry.aggregate_id, AsOf(occurred_at=entry.occurred_at))
            known = journey_as_of(season, entry.aggregate_id, AsOf(position=entry.position))
            assert vars(happened.journey) == vars(known.journey) and happened.refused == []
            compared += 1
        with pytest.raises(NotFoundError):
            journey_as_of(season, registration.aggregate_id, AsOf(occurred_at=times[0] - timedelta(seconds=1)))
    assert compared > 100


def test_as_of_a_business_time_takes_late_reports_and_leaves_out_what_the_rules_refuse(ledger: JourneyLedger) -> None:
    """Passports clear entry at 09:55 by their clock, after GACA recorded the arrival at 10:00: as of 09:58 the
    clearance had happened but the arrival it needs had not; the rules refuse it there, so it is left out and said."""
    [registered] = ledger.record_batch(
        [(command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN"), actor(Role.MISSION))]
    )
    assert not isinstance(registered, Exception)
    journey_id = registered.aggregate_id
    market = open_market(ledger, 1)
    at = {name: T0 + timedelta(hours=hours) for name, hours in
          (("contract", 1), ("visa", 2), ("issued", 3), ("hold", 5), ("arrived", 10), ("cleared", 9.9))}  # fmt: skip
    steps: list[tuple[Role, str, dict[str, Any]]] = [
        (
            Role.MISSION,
            "PackageContracted",
            {"contract_id": market.contract_id, "occurred_at": at["contract"]},
        ),
        (Role.MISSION, "VisaRequested", {"occurred_at": at["visa"]}),
        (Role.MOFA, "VisaIssued", {"valid_until": T0 + timedelta(days=60), "occurred_at": at["issued"]}),
        (
            Role.GACA,
            "ArrivedAtPort",
            {"port": Port.JED_HAJJ_TERMINAL, "mode": Mode.AIR, "flight": "MS1", "occurred_at": at["arrived"]},
        ),
        (Role.JAWAZAT, "EntryCleared", {"port": Port.JED_HAJJ_TERMINAL, "occurred_at": at["cleared"]}),
    ]
    for role, event, fields in steps:
        ledger.record(command(event, journey_id=journey_id, **fields), actor(role))
    # A late report (within the tolerance): recorded last, about the morning.
    late = ledger.record(
        command("LegalHoldPlaced", journey_id=journey_id, hold="inquiry", occurred_at=at["hold"]),
        actor(Role.MINISTRY),
    )

    before = journey_as_of(ledger, journey_id, AsOf(occurred_at=T0 + timedelta(hours=9.95)))
    assert before.journey.stage == "visa_issued"
    assert before.journey.holds == ["inquiry"]  # happened in the morning, recorded last
    [(refused, reason)] = before.refused
    assert refused.event == "EntryCleared" and "current stage 'visa_issued'" in reason
    assert before.position == late.position and before.events == 5

    after = journey_as_of(ledger, journey_id, AsOf(occurred_at=at["arrived"]))
    assert after.journey.stage == "entry_cleared" and after.refused == [] and after.events == 7
    assert vars(after.journey) == vars(ledger.journey(journey_id))

    recorded_then = journey_as_of(ledger, journey_id, AsOf(position=late.position - 1))
    assert recorded_then.journey.holds == [] and recorded_then.journey.stage == "entry_cleared"
    with pytest.raises(NotFoundError):
        journey_as_of(ledger, journey_id, AsOf(occurred_at=T0 - timedelta(hours=1)))


@pytest.fixture
def migrated(season: JourneyLedger, store_url: str) -> JourneyLedger:
    """The season with the read models migrated: the registrations' index in place."""
    engine = engine_for(store_url)
    upgrade(engine)
    engine.dispose()
    return season


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_past_views_are_a_replay_to_the_position_exactly(
    migrated: JourneyLedger, store_url: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """At any position, `journey_status` read a page at a time from its journeys' own events, and `season_funnel`
    built from the nearest snapshot, are exactly what the runner makes of the log replayed from its start to there."""
    head = migrated.head()
    if store_url not in _PAST:  # one for every example: snapshots and builds carried over
        _PAST[store_url] = PastViews(migrated, store_url)
        _PAST[store_url].SNAPSHOT_EVERY = 97
    past = _PAST[store_url]
    position = data.draw(st.integers(0, head), label="position")
    size = data.draw(st.integers(1, 60), label="page size")
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('replayed')}/views.sqlite3")
    names = [p for p in PROJECTIONS if p.name in PastViews.NAMES]
    replay(store_url, position, engine, names)
    with engine.connect() as connection:
        expected = view_rows(connection, names)
    engine.dispose()
    paged: list[dict[str, Any]] = []
    while len(page := past.journey_status(position, paged[-1]["journey_id"] if paged else None, size)) == size:
        paged += page
    paged += page
    assert [r["journey_id"] for r in paged] == sorted(r["journey_id"] for r in paged)
    assert _rows_text(paged) == expected["journey_status"]
    with past.at(position) as connection:
        built = view_rows(connection, [p for p in names if p.name in PastViews.BUILT])
    assert built == {name: rows for name, rows in expected.items() if name in built}


_PAST: dict[str, PastViews] = {}


@pytest.fixture(autouse=True)
def _close_past() -> Iterator[None]:
    yield
    while _PAST:
        _PAST.popitem()[1].close()


# 3. Replay.


def test_replay_into_a_directory_is_a_fresh_ledgers_views(
    season: JourneyLedger, store_url: str, tmp_path: Path
) -> None:
    position = season.head() * 2 // 3
    fresh_copy(season, position, f"sqlite:///{tmp_path}/copy.sqlite3").close()
    expected = served_views(f"sqlite:///{tmp_path}/copy.sqlite3", list(PROJECTIONS))
    into = target(str(tmp_path / "replays"), store_url, position)
    try:
        replay(store_url, position, into.engine)
        with into.engine.connect() as connection:
            assert view_rows(connection, list(PROJECTIONS)) == expected
    finally:
        into.engine.dispose()
    assert into.where == str(tmp_path / "replays" / f"read-models-at-{position}.sqlite3")
    with pytest.raises(ValidationError) as again:
        target(str(tmp_path / "replays"), store_url, position)
    assert again.value.field == "into" and "already exists" in again.value.reason


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="no PostgreSQL (set CI=true to require it)")
def test_replay_into_a_postgres_schema_beside_the_serving_views(postgres_url: str, tmp_path: Path) -> None:
    ledger = JourneyLedger(postgres_url)
    simulate(ledger, PILGRIMS, 1446, seed=12)
    position = ledger.head() // 2
    fresh_copy(ledger, position, f"sqlite:///{tmp_path}/copy.sqlite3").close()
    ledger.close()
    serving = served_views(postgres_url, list(PROJECTIONS))
    expected = served_views(f"sqlite:///{tmp_path}/copy.sqlite3", list(PROJECTIONS))
    assert serving != expected
    into = target("audit_replay", postgres_url, position)
    try:
        replay(postgres_url, position, into.engine)
        with into.engine.connect() as connection:
            assert view_rows(connection, list(PROJECTIONS)) == expected
            assert connection.execute(sa.text("SELECT current_schema()")).scalar() == "audit_replay"
    finally:
        into.engine.dispose()
    assert served_views(postgres_url, list(PROJECTIONS)) == serving  # the serving views, untouched
    for name, reason in (("audit_replay", "already exists"), ("public", "reserved")):
        with pytest.raises(ValidationError) as refused:
            target(name, postgres_url, position)
        assert reason in refused.value.reason


def test_a_schema_needs_the_ledger_on_postgres(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        target("audit_replay", f"sqlite:///{tmp_path}/l.sqlite3", 1)
    assert refused.value.field == "into" and "not on PostgreSQL" in refused.value.reason


# 4. Over HTTP, for the auditor and the ministry only.


@pytest.fixture
def audited(api: Api) -> Iterator[tuple[Api, JourneyLedger]]:  # noqa: F811 (the imported fixture)
    ledger = JourneyLedger(api.url)
    simulate(ledger, 15, 1446, seed=5)
    yield api, ledger
    ledger.close()


def test_the_trail_over_http(audited: tuple[Api, JourneyLedger]) -> None:
    http, ledger = audited
    log = everything(ledger, TrailQuery())[0]
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        answer = http.get("auditor", "/v1/audit/events", **params)
        assert answer.status_code == 200, answer.text
        seen += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert [e["position"] for e in seen] == [e.position for e in log]
    assert seen[0]["occurred_at"] == log[0].occurred_at.isoformat().replace("+00:00", "Z")
    assert seen[0]["agency_id"] == log[0].agency_id and seen[0]["aggregate"] == log[0].aggregate == "season"
    first = next(e for e in seen if e["event"] == "Registered")
    assert first["aggregate"] == "journey" and first["fields"]["season"] == 1446
    naqaba = http.get("ministry", "/v1/audit/events", agency_id="naqaba", event="Boarded", limit=1000).json()["items"]
    assert naqaba and len(naqaba) == sum(e.event == "Boarded" for e in log)
    journey_id = UUID(first["aggregate_id"])
    mine = http.get("auditor", "/v1/audit/events", aggregate_id=str(journey_id)).json()["items"]
    assert {e["aggregate_id"] for e in mine} == {str(journey_id)}
    for params, path in (({"event": "Teleported"}, "query.event"), ({"cursor": "x"}, "query.cursor"),
                         ({"recorded_from": "2025-01-01T00:00:00"}, "query.recorded_from")):  # fmt: skip
        assert is_problem(http.get("auditor", "/v1/audit/events", **params), 422)["errors"][0]["path"] == path
    is_problem(http.get("auditor", "/v1/audit/events", aggregate_id=str(uuid4())), 404)


def test_the_past_over_http(audited: tuple[Api, JourneyLedger]) -> None:
    http, ledger = audited
    head = ledger.head()
    position = head // 2
    journey_id = everything(ledger, TrailQuery(event="Registered"))[0][0].aggregate_id
    then = http.get("auditor", f"/v1/audit/journeys/{journey_id}", position=position)
    assert then.status_code == 200, then.text
    known = journey_as_of(ledger, journey_id, AsOf(position=position))
    assert then.json()["journey"]["stage"] == known.journey.stage and then.json()["position"] == known.position
    happened = http.get("ministry", f"/v1/audit/journeys/{journey_id}", occurred_at="2025-04-01T00:00:00Z")
    assert happened.status_code == 200, happened.text
    assert happened.json()["refused"] == []
    for params, path in (({}, "query.as_of"), ({"position": head + 1}, "query.position"),
                         ({"position": 1, "occurred_at": "2025-04-01T00:00:00Z"}, "query.as_of")):  # fmt: skip
        body = is_problem(http.get("auditor", f"/v1/audit/journeys/{journey_id}", **params), 422)
        assert body["errors"][0]["path"] == path, body

    past = PastViews(ledger, http.url)
    try:
        for name in PastViews.NAMES:
            answer = http.get("auditor", f"/v1/audit/views/{name}", position=position, limit=1000)
            assert answer.status_code == 200, answer.text
            assert answer.json()["position"] == position and answer.json()["next_cursor"] is None
            if name in PastViews.BUILT:
                with past.at(position) as connection:
                    model = next(p for p in PROJECTIONS if p.name == name).models[0]
                    expected = connection.execute(sa.select(sa.func.count()).select_from(model.view())).scalar_one()
            else:
                expected = len(past.journey_status(position, None, 1000))
            assert len(answer.json()["items"]) == expected > 0
    finally:
        past.close()
    first = http.get("auditor", "/v1/audit/views/journey_status", position=position, limit=5).json()
    second = http.get(
        "auditor", "/v1/audit/views/journey_status", position=position, limit=5, cursor=first["next_cursor"]
    )
    assert second.status_code == 200 and not {r["journey_id"] for r in first["items"]} & {
        r["journey_id"] for r in second.json()["items"]
    }
    beyond = is_problem(http.get("auditor", "/v1/audit/views/season_funnel", position=head + 1), 422)
    assert beyond["errors"][0]["path"] == "query.position"


def test_only_auditors_and_the_ministry_read_the_audit(audited: tuple[Api, JourneyLedger]) -> None:
    http, ledger = audited
    registration = everything(ledger, TrailQuery(event="Registered"))[0][0]
    paths = [
        ("/v1/audit/events", {}),
        (f"/v1/audit/journeys/{registration.aggregate_id}", {"position": registration.position}),
        ("/v1/audit/views/journey_status", {"position": 1}),
        ("/v1/audit/views/season_funnel", {"position": 1}),
    ]
    for path, params in paths:
        for role in Role:
            answer = http.get(str(role), path, **params)
            if role in (Role.AUDITOR, Role.MINISTRY):
                assert answer.status_code == 200, (path, role, answer.text)
            else:
                assert is_problem(answer, 403)["role"] == str(role), (path, role)
