"""`GET /v1/views` (the index of the views) and `GET /v1/summary` (the season at a glance), on SQLite and PostgreSQL:
each figure only for the roles that read its view, scoped as the view is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.domain.catalogue import VIEW_READERS
from hajj_ledger.domain.vocabulary import Role, makkah_day
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import VIEWS
from hajj_ledger.projections.schema import engine_for
from tests.support import MISSION_ID, T0, TestClient, actor, arrive_and_clear, command, project, schedule_trip

OTHER_MISSION = "mission-EGY-9"


@pytest.fixture
def client(store_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    engine = engine_for(store_url)
    upgrade(engine)
    keys: dict[str, str] = {}
    with engine.begin() as connection:
        for role in (Role.MINISTRY, Role.NAQABA, Role.ANALYST, Role.AUDITOR, Role.JAWAZAT):
            keys[str(role)] = agencies.add(connection, role, f"the {role}")[1]
        keys[MISSION_ID] = agencies.add(connection, Role.MISSION, "Indonesia's mission", MISSION_ID)[1]
        keys[OTHER_MISSION] = agencies.add(connection, Role.MISSION, "Egypt's mission", OTHER_MISSION)[1]
    engine.dispose()
    ledger = JourneyLedger(store_url)
    try:
        journeys = arrive_and_clear(ledger, 3)
        ledger.record(command("HospitalAdmitted", journey_id=journeys[0], facility="JED-KFH"), actor(Role.MOH))
        trip = schedule_trip(ledger)
        ledger.record(command("TripDeparted", trip_id=trip), actor(Role.NAQABA))
    finally:
        ledger.close()
    project(store_url)
    with TestClient(create_app(store_url)) as test_client:
        yield test_client, keys


def get(client: tuple[TestClient, dict[str, str]], who: str, path: str, **params: Any) -> dict[str, Any]:
    test_client, keys = client
    answer = test_client.get(path, headers={"Authorization": f"Bearer {keys[who]}"}, params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_index_lists_every_view_with_its_columns_and_readers(client: tuple[TestClient, dict[str, str]]) -> None:
    items = get(client, MISSION_ID, "/v1/views")["items"]
    assert [v["name"] for v in items] == list(VIEWS)
    status = items[0]
    assert status["path"] == "/v1/views/journey_status" and status["key"] == ["journey_id"]
    assert status["description"].startswith("one row per journey")
    assert {"name": "mission_id", "type": "text", "filter": True} in status["columns"]
    for view in items:
        assert view["readers"] == sorted(VIEW_READERS[view["name"]])
        assert view["readable"] == (Role.MISSION in VIEW_READERS[view["name"]])


def test_the_summary_counts_what_each_role_may_read(client: tuple[TestClient, dict[str, str]]) -> None:
    day = makkah_day(T0).isoformat()
    ministry = get(client, "ministry", "/v1/summary", day=day)
    assert ministry["season"] == 1446 and ministry["day"] == day
    funnel = {s["stage"]: (s["reached"], s["today"]) for s in ministry["funnel"]}
    assert funnel["registered"] == (3, 3) and funnel["received"] == (3, 3)
    assert list(funnel)[:2] == ["registered", "contracted"]  # in the journey's order
    assert ministry["arrivals"] == [{"day": day, "port": "JED-HAJJ", "mode": "air", "arrived": 3}]
    assert ministry["in_kingdom"] == [{"place": "JED-HAJJ", "pilgrims": 3}]
    assert ministry["cases"] == {"in_hospital": 1, "missing": 0, "deceased": 0}
    assert ministry["trips_on_the_road"] == 1
    assert ministry["overstays"] == 3  # in the Kingdom, their visas (90 days from T0) long run out
    later = get(client, "ministry", "/v1/summary", day=(makkah_day(T0) + timedelta(days=1)).isoformat())
    assert {s["stage"]: s["today"] for s in later["funnel"]}["registered"] == 0

    own, other = get(client, MISSION_ID, "/v1/summary"), get(client, OTHER_MISSION, "/v1/summary")
    assert own["funnel"] is None and own["arrivals"] is None and own["trips_on_the_road"] is None
    assert own["cases"] == ministry["cases"] and own["in_kingdom"] == ministry["in_kingdom"]
    assert other["season"] is None and other["in_kingdom"] == [] and other["overstays"] == 0
    assert own["overstays"] == 3
    assert other["cases"] == {"in_hospital": 0, "missing": 0, "deceased": 0}

    naqaba = get(client, "naqaba", "/v1/summary")
    assert naqaba["trips_on_the_road"] == 1 and naqaba["funnel"] is None and naqaba["overstays"] is None
    analyst = get(client, "analyst", "/v1/summary", season=1446)
    assert analyst["funnel"] == ministry["funnel"] or analyst["day"] != day
    assert analyst["cases"] is None and analyst["in_kingdom"] is None and analyst["arrivals"] is None
