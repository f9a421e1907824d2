"""`GET /v1/views` (the index of the views) and `GET /v1/summary` (the season at a glance), on SQLite and PostgreSQL:
each figure only for the roles that read its view, scoped as the view is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.domain.access import VIEW_READERS
from hajj_ledger.domain.vocabulary import Role, Stage, makkah_day
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import VIEWS
from hajj_ledger.projections.schema import engine_for
from tests.support import (
    COMPANY_ID,
    MISSION_ID,
    T0,
    TestClient,
    actor,
    arrive_and_clear,
    command,
    project,
    schedule_trip,
)

OTHER_MISSION, OTHER_COMPANY = "mission-EGY-9", "company-9"


@pytest.fixture
def client(store_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    engine = engine_for(store_url)
    upgrade(engine)
    keys: dict[str, str] = {}
    with engine.begin() as connection:
        for role in (Role.MINISTRY, Role.NAQABA, Role.ANALYST, Role.AUDITOR, Role.JAWAZAT, Role.AMANAH,
                     Role.ROAD_SECURITY):  # fmt: skip
            keys[str(role)] = agencies.add(connection, role, f"the {role}")[1]
        keys[COMPANY_ID] = agencies.add(connection, Role.COMPANY, "the company", COMPANY_ID)[1]
        keys[OTHER_COMPANY] = agencies.add(connection, Role.COMPANY, "another company", OTHER_COMPANY)[1]
        keys[MISSION_ID] = agencies.add(connection, Role.MISSION, "Indonesia's mission", MISSION_ID)[1]
        keys[OTHER_MISSION] = agencies.add(connection, Role.MISSION, "Egypt's mission", OTHER_MISSION)[1]
    engine.dispose()
    ledger = JourneyLedger(store_url)
    try:
        journeys = arrive_and_clear(ledger, 3)
        ledger.record(command("HospitalAdmitted", journey_id=journeys[0], facility="JED-KFH"), actor(Role.MOH))
        trip = schedule_trip(ledger)
        ledger.record(command("TripDeparted", trip_id=trip), actor(Role.NAQABA))
        late = ledger.record(
            command("TripScheduled", operator="SAPTCO", bus_plate="KSA-2", origin="JED-HAJJ", destination="makkah",
                    departs_at=T0, capacity=49, expected_arrival=T0 + timedelta(hours=2)),
            actor(Role.NAQABA),
        ).aggregate_id  # fmt: skip
        ledger.record(command("TripDeparted", trip_id=late), actor(Role.NAQABA))
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
    assert {"name": "mission_id", "type": "text", "filter": True, "at_least": False, "one_of": None} in status[
        "columns"
    ]
    columns = {v["name"]: {c["name"]: c for c in v["columns"]} for v in items}
    assert columns["service_offers"]["free"]["at_least"] and columns["contracts"]["free"]["at_least"]
    assert not columns["service_offers"]["places"]["at_least"]
    # Worked out when read, and served in each row: listed last, a filter like the columns stored.
    assert list(columns["trips_on_road"])[-1] == "overdue"
    assert columns["trips_on_road"]["overdue"] == {
        "name": "overdue",
        "type": "boolean",
        "filter": True,
        "at_least": False,
        "one_of": None,
    }
    # A column of a closed vocabulary lists it, and a filter by any other value is refused, naming them.
    assert columns["journey_status"]["stage"]["one_of"] == list(Stage)
    assert columns["trips_on_road"]["status"]["one_of"] == ["on_road", "arrived"]
    test_client, keys = client
    headers = {"Authorization": f"Bearer {keys['ministry']}"}
    refused = test_client.get("/v1/views/journey_status", headers=headers, params={"stage": "flying"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "query.stage"
    assert "'registered'" in refused.json()["errors"][0]["reason"]
    assert get(client, "ministry", "/v1/views/journey_status", stage="received")["items"]
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
    assert ministry["trips_on_the_road"] == 2
    assert ministry["overstays"] == 3  # in the Kingdom, their visas (90 days from T0) long run out
    later = get(client, "ministry", "/v1/summary", day=(makkah_day(T0) + timedelta(days=1)).isoformat())
    assert {s["stage"]: s["today"] for s in later["funnel"]}["registered"] == 0

    own, other = get(client, MISSION_ID, "/v1/summary"), get(client, OTHER_MISSION, "/v1/summary")
    assert own["funnel"] is None and own["arrivals"] is None and own["trips_on_the_road"] is None
    assert own["cases"] == ministry["cases"] and own["in_kingdom"] == ministry["in_kingdom"]
    assert other["season"] == 1446  # the market's: every company's offers are open to every mission
    assert other["in_kingdom"] == [] and other["overstays"] == 0
    assert own["overstays"] == 3
    assert other["cases"] == {"in_hospital": 0, "missing": 0, "deceased": 0}
    # A mission's own funnel: its journeys by the stage they are at now (journey_status), not the season's funnel.
    assert own["stages"] == ministry["stages"] == [{"stage": "received", "journeys": 3}] and other["stages"] == []

    naqaba = get(client, "naqaba", "/v1/summary")
    assert naqaba["trips_on_the_road"] == 2 and naqaba["funnel"] is None and naqaba["overstays"] is None
    analyst = get(client, "analyst", "/v1/summary", season=1446)
    assert analyst["funnel"] == ministry["funnel"] or analyst["day"] != day
    assert analyst["cases"] is None and analyst["in_kingdom"] is None and analyst["arrivals"] is None
    assert analyst["stages"] is None


def _market(summary: dict[str, Any]) -> tuple[Any, ...]:
    return summary["offers"], summary["contracts"], summary["beds"], summary["road"]


def test_the_summary_counts_the_market_for_the_roles_that_read_it(client: tuple[TestClient, dict[str, str]]) -> None:
    ministry = get(client, "ministry", "/v1/summary")
    offers = [{"kind": "makkah_housing", "offers": 1, "places": 3, "free": 0}]  # the contract took all 3 places
    contracts = {"contracts": 1, "places": 3, "used": 3, "free": 0}  # each journey took one
    beds = {"buildings": 1, "beds": 3, "occupied": 0, "free": 3}  # nobody checked in yet
    road = {"on_the_road": 2, "overdue": 1}  # one expected two hours after T0, long past
    assert _market(ministry) == (offers, contracts, beds, road)

    mission, other = get(client, MISSION_ID, "/v1/summary"), get(client, OTHER_MISSION, "/v1/summary")
    assert _market(mission) == (offers, contracts, None, None)
    assert other["offers"] == offers  # the market, whole
    assert other["contracts"] == {"contracts": 0, "places": 0, "used": 0, "free": 0}  # its own: none

    company, stranger = get(client, COMPANY_ID, "/v1/summary"), get(client, OTHER_COMPANY, "/v1/summary")
    assert _market(company) == (offers, contracts, beds, None)
    assert stranger["season"] == 1446 and stranger["offers"] == []  # the current season, whoever asks: none of its own
    assert stranger["beds"] == {"buildings": 0, "beds": 0, "occupied": 0, "free": 0}

    amanah = get(client, "amanah", "/v1/summary")
    assert amanah["beds"] == beds and amanah["offers"] is None and amanah["road"] is None
    assert amanah["funnel"] is None and amanah["arrivals"] is None
    road_security = get(client, "road_security", "/v1/summary")
    assert road_security["road"] == road and road_security["beds"] is None and road_security["contracts"] is None
    assert get(client, "naqaba", "/v1/summary")["road"] == road


def test_the_summary_waits_for_the_views_it_counts(client: tuple[TestClient, dict[str, str]], store_url: str) -> None:
    """With min_position, as a view's page: a bounded wait, then 503 with Retry-After while the views are behind; 422
    beyond the ledger's head; the figures once every view it counts has applied the log up to there."""
    test_client, keys = client
    ledger = JourneyLedger(store_url, create_tables=False)
    try:
        registered = command("Registered", pilgrim_id=uuid4(), season=1446, country="IDN")
        head = ledger.record(registered, actor(Role.MISSION)).position
    finally:
        ledger.close()

    def ask(who: str, **params: Any) -> Any:
        return test_client.get("/v1/summary", headers={"Authorization": f"Bearer {keys[who]}"}, params=params)

    behind = ask(MISSION_ID, min_position=head)
    assert behind.status_code == 503 and behind.headers["retry-after"] == "1", behind.text
    assert behind.json()["wanted"] == head and behind.json()["reached"] < head
    beyond = ask(MISSION_ID, min_position=head + 1000)
    assert beyond.status_code == 422 and beyond.json()["errors"][0]["path"] == "query.min_position"
    project(store_url)
    for who in (MISSION_ID, "ministry", "amanah", "road_security"):
        answer = ask(who, min_position=head)
        assert answer.status_code == 200, answer.text
    funnel = {s["stage"]: s["reached"] for s in ask("ministry", min_position=head).json()["funnel"]}
    assert funnel["registered"] == 4


def test_the_agency_says_who_the_key_belongs_to(client: tuple[TestClient, dict[str, str]]) -> None:
    assert get(client, MISSION_ID, "/v1/agency") == {
        "agency_id": MISSION_ID, "name": "Indonesia's mission", "role": "mission", "scope": "mission_id"
    }  # fmt: skip
    assert get(client, COMPANY_ID, "/v1/agency")["scope"] == "company_id"
    amanah = get(client, "amanah", "/v1/agency")
    assert amanah["role"] == "amanah" and amanah["name"] == "the amanah" and amanah["scope"] is None
    test_client, _ = client
    assert test_client.get("/v1/agency").status_code == 401
