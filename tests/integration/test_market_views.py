"""The views of the market, of housing and of the road, on SQLite and PostgreSQL: what each holds after offers,
contracts, buildings and trips; that any split into batches and a rebuild from the log give the same tables; and
who reads which of their rows over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from hajj_ledger.domain.vocabulary import CancellationReason, Role
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS, projection
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from tests.integration.test_api import COMPANY_1, COMPANY_2, EGY, PAK, Api, api, is_problem  # noqa: F401 (fixture)
from tests.integration.test_projections import clean_rebuild, table_rows
from tests.support import (
    MISSION_ID,
    T0,
    actor,
    arrive_and_clear,
    command,
    open_market,
    open_season,
    run_cli,
    schedule_trip,
    view_rows,
)

NEW_VIEWS = ("service_offers", "contracts", "building_occupancy", "trips_on_road")
HOUR = timedelta(hours=1)


@dataclass
class World:
    """What was recorded, by name: the ids of its offers (o), contracts (c), buildings (b) and trips (t)."""

    o: dict[str, UUID]
    c: dict[str, UUID]
    b: dict[str, UUID]
    t: dict[str, UUID]


def _recorder(ledger: JourneyLedger) -> Any:
    def rec(role: Role, agency: str | None, event: str, **fields: Any) -> UUID:
        outcome = ledger.record(command(event, **fields), actor(role, agency))
        assert isinstance(outcome, Outcome), outcome
        return outcome.aggregate_id

    return rec


def record_world(url: str) -> World:
    """Two companies' offers, buildings and contracts with two missions, journeys using a contract, and bus trips on
    the road: one late, one not yet due, one arrived, one with no expected time, one not left, one cancelled."""
    ledger = JourneyLedger(url)
    open_season(ledger)
    rec = _recorder(ledger)
    amanah, defence, naqaba, road = Role.AMANAH, Role.CIVIL_DEFENCE, Role.NAQABA, Role.ROAD_SECURITY
    mission, company = Role.MISSION, Role.COMPANY
    try:
        b = {
            "b1": rec(amanah, None, "BuildingLicensed", building_id=uuid4(), company_id=COMPANY_1, city="makkah",
                      district="Al Aziziyah", beds=3, licence_valid_until=T0 + timedelta(days=365)),
            "b2": rec(amanah, None, "BuildingLicensed", building_id=uuid4(), company_id=COMPANY_2, city="madinah",
                      district="Al Haram", beds=2, licence_valid_until=T0 + timedelta(days=200)),
        }  # fmt: skip
        rec(defence, None, "InspectionFailed", building_id=b["b1"], findings="exit_blocked")
        rec(defence, None, "InspectionPassed", building_id=b["b1"], findings="exit_cleared", occurred_at=T0 + HOUR)
        rec(defence, None, "InspectionFailed", building_id=b["b2"], findings="no_fire_alarm")
        rec(amanah, None, "LicenceSuspended", building_id=b["b2"], reason="no_fire_alarm")
        rec(amanah, None, "LicenceRenewed", building_id=b["b1"], licence_valid_until=T0 + timedelta(days=400))

        window = {"valid_from": T0 - timedelta(days=30), "valid_until": T0 + timedelta(days=60), "season": 1446}
        o = {
            "o1": rec(company, COMPANY_1, "OfferPublished", offer_id=uuid4(), kind="makkah_housing", site="makkah",
                      places=10, price_sar=4500, building_ids=[b["b1"]], **window),
            "o2": rec(company, COMPANY_2, "OfferPublished", offer_id=uuid4(), kind="transport", site="jeddah",
                      places=4, price_sar=300, building_ids=[], **window),
            "o3": rec(company, COMPANY_1, "OfferPublished", offer_id=uuid4(), kind="catering", site="mina",
                      places=5, price_sar=900, building_ids=[], **window),
        }  # fmt: skip
        rec(company, COMPANY_1, "OfferAmended", offer_id=o["o1"], places=12)
        rec(company, COMPANY_1, "OfferWithdrawn", offer_id=o["o3"], reason="no_kitchen")

        c = {
            "c1": rec(mission, EGY, "ContractProposed", contract_id=uuid4(), offer_id=o["o1"], places=5),
            "c2": rec(mission, PAK, "ContractProposed", contract_id=uuid4(), offer_id=o["o2"], places=3),
            "c3": rec(mission, EGY, "ContractProposed", contract_id=uuid4(), offer_id=o["o2"], places=1),
        }
        rec(company, COMPANY_1, "ContractSigned", contract_id=c["c1"])
        rec(mission, EGY, "ContractAmended", contract_id=c["c1"], places=6)
        rec(company, COMPANY_2, "ContractSigned", contract_id=c["c2"])
        rec(mission, PAK, "ContractTerminated", contract_id=c["c2"], reason="flights_changed")
        journeys = [rec(mission, EGY, "Registered", pilgrim_id=uuid4(), season=1446, country="EGY") for _ in range(3)]
        for journey in journeys:
            rec(mission, EGY, "PackageContracted", journey_id=journey, contract_id=c["c1"])
        rec(mission, EGY, "Cancelled", journey_id=journeys[0], reason=CancellationReason.WITHDRAWN)

        # A third mission's pilgrims housed under its contract with the first company: two beds taken, one freed.
        housing = open_market(ledger, places=3, beds=2)
        o["market"], c["market"], b["market"] = housing.offer_id, housing.contract_id, housing.building_id
        housed = arrive_and_clear(ledger, 2, housing)
        bus = schedule_trip(ledger)
        for journey in housed:
            rec(naqaba, None, "BusAssigned", journey_id=journey, trip_id=bus)
            rec(naqaba, None, "Boarded", journey_id=journey, trip_id=bus)
        rec(naqaba, None, "TripDeparted", trip_id=bus)
        for journey in housed:
            rec(naqaba, None, "TransferCompleted", journey_id=journey, trip_id=bus)
            rec(company, COMPANY_1, "HousingCheckedIn", journey_id=journey, site="makkah", building="B-1",
                building_id=housing.building_id)  # fmt: skip
        rec(company, COMPANY_1, "HousingCheckedOut", journey_id=housed[1], site="makkah", building="B-1")

        route = {"operator": "SAPTCO", "origin": "madinah", "destination": "makkah", "departs_at": T0, "capacity": 49}
        later = datetime.now(UTC) + timedelta(days=1)
        t = {
            name: rec(naqaba, None, "TripScheduled", trip_id=uuid4(), bus_plate=f"KSA-{name}", **route, **expected)
            for name, expected in (
                ("late", {"expected_arrival": T0 + 5 * HOUR}),
                ("due", {"expected_arrival": later}),
                ("arrived", {"expected_arrival": T0 + 5 * HOUR}),
                ("untimed", {}),
                ("waiting", {"expected_arrival": T0 + 5 * HOUR}),
                ("cancelled", {"expected_arrival": T0 + 5 * HOUR}),
            )
        }
        for name in ("late", "due", "arrived", "untimed"):
            rec(naqaba, None, "TripDeparted", trip_id=t[name])
        rec(road, None, "CheckpointPassed", trip_id=t["late"], checkpoint="Hijrah road km 120", occurred_at=T0 + HOUR)
        # A checkpoint passed before that one, reported after it.
        rec(
            road, None, "CheckpointPassed", trip_id=t["late"], checkpoint="Hijrah road km 60", occurred_at=T0 + HOUR / 2
        )
        rec(road, None, "CheckpointPassed", trip_id=t["arrived"], checkpoint="Hijrah road km 60", occurred_at=T0 + HOUR)
        rec(naqaba, None, "TripArrived", trip_id=t["arrived"], occurred_at=T0 + 4 * HOUR)
        rec(naqaba, None, "TripCancelled", trip_id=t["cancelled"], reason="driver_unavailable")
        t["bus"] = bus
    finally:
        ledger.close()
    return World(o, c, b, t)


@pytest.fixture
def market(store_url: str) -> Iterator[tuple[Runner, World]]:
    world = record_world(store_url)
    engine = engine_for(store_url)
    upgrade(engine)
    engine.dispose()
    runner = Runner(PROJECTIONS, store_url)
    yield runner, world
    runner.close()


def _by(rows: list[dict[str, Any]], key: str, ids: dict[str, UUID], *columns: str) -> dict[str, tuple[Any, ...]]:
    names = {str(v): k for k, v in ids.items()}
    return {names[str(r[key])]: tuple(r[c] for c in columns) for r in rows}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_the_views_hold_what_was_recorded(market: tuple[Runner, World]) -> None:
    runner, world = market
    runner.run(once=True)
    with runner.engine.connect() as connection:
        offers = view_rows(connection, "service_offers")
        assert _by(offers, "offer_id", world.o, "company_id", "kind", "site", "places", "contracted", "free",
                   "price_sar", "status") == {
            "o1": (COMPANY_1, "makkah_housing", "makkah", 12, 6, 6, 4500, "published"),
            "o2": (COMPANY_2, "transport", "jeddah", 4, 0, 4, 300, "published"),
            "o3": (COMPANY_1, "catering", "mina", 5, 0, 5, 900, "withdrawn"),
            "market": (COMPANY_1, "makkah_housing", "makkah", 3, 3, 0, 9000, "published"),
        }  # fmt: skip
        assert {_utc(r["valid_until"]) for r in offers if r["offer_id"] != world.o["market"]} == {
            T0 + timedelta(days=60)
        }
        assert _by(view_rows(connection, "service_offers", min_free=5), "offer_id", world.o) == {"o1": (), "o3": ()}
        assert _by(view_rows(connection, "service_offers", kind="transport", site="jeddah"), "offer_id", world.o) == {
            "o2": ()
        }

        contracts = view_rows(connection, "contracts")
        assert _by(contracts, "contract_id", world.c, "mission_id", "company_id", "kind", "site", "places", "used",
                   "free", "status") == {
            "c1": (EGY, COMPANY_1, "makkah_housing", "makkah", 6, 2, 4, "signed"),
            "c2": (PAK, COMPANY_2, "transport", "jeddah", 3, 0, 3, "terminated"),
            "c3": (EGY, COMPANY_2, "transport", "jeddah", 1, 0, 1, "proposed"),
            "market": (MISSION_ID, COMPANY_1, "makkah_housing", "makkah", 3, 2, 1, "signed"),
        }  # fmt: skip
        assert _by(view_rows(connection, "contracts", mission_id=EGY, min_free=2), "contract_id", world.c) == {"c1": ()}

        buildings = view_rows(connection, "building_occupancy")
        assert _by(buildings, "building_id", world.b, "company_id", "city", "district", "beds", "occupied", "free",
                   "licence", "inspection") == {
            "b1": (COMPANY_1, "makkah", "Al Aziziyah", 3, 0, 3, "valid", "passed"),
            "b2": (COMPANY_2, "madinah", "Al Haram", 2, 0, 2, "suspended", "failed"),
            "market": (COMPANY_1, "makkah", "Aziziyah", 2, 1, 1, "valid", "passed"),
        }  # fmt: skip
        assert {_utc(r["licence_valid_until"]) for r in buildings if r["building_id"] == world.b["b1"]} == {
            T0 + timedelta(days=400)
        }
        assert _by(view_rows(connection, "building_occupancy", min_free=3), "building_id", world.b) == {"b1": ()}

        trips = view_rows(connection, "trips_on_road")
        assert _by(trips, "trip_id", world.t, "bus_plate", "origin", "destination", "last_checkpoint", "status",
                   "overdue") == {
            "late": ("KSA-late", "madinah", "makkah", "Hijrah road km 120", "on_road", True),
            "due": ("KSA-due", "madinah", "makkah", None, "on_road", False),
            "arrived": ("KSA-arrived", "madinah", "makkah", "Hijrah road km 60", "arrived", False),
            "untimed": ("KSA-untimed", "madinah", "makkah", None, "on_road", False),
            "bus": ("KSA-1", "JED-HAJJ", "makkah", None, "on_road", False),
        }  # fmt: skip
        late = next(r for r in trips if r["trip_id"] == world.t["late"])
        assert (_utc(late["departed_at"]), _utc(late["checkpoint_at"])) == (T0, T0 + HOUR)
        assert _by(view_rows(connection, "trips_on_road", overdue=True), "trip_id", world.t) == {"late": ()}
        assert set(_by(view_rows(connection, "trips_on_road", overdue=False), "trip_id", world.t)) == {
            "due", "arrived", "untimed", "bus"
        }  # fmt: skip
        assert _by(view_rows(connection, "trips_on_road", origin="JED-HAJJ"), "trip_id", world.t) == {"bus": ()}


@pytest.mark.parametrize("name", NEW_VIEWS)
def test_one_event_a_batch_and_a_rebuild_give_the_same_tables(market: tuple[Runner, World], name: str) -> None:
    runner, _ = market
    chosen = projection(name)
    runner.prepare(chosen, "b")
    while runner.step(chosen, "b", limit=1):
        pass
    one_by_one = table_rows(runner, chosen, "b")
    runner.catch_up(chosen)  # generation a, serving: in the runner's own batches
    assert one_by_one == table_rows(runner, chosen, "a")
    assert all(one_by_one.values()), f"{name}: a table holds no rows"
    assert clean_rebuild(runner, chosen) == one_by_one


def test_the_command_line_shows_a_view_now(market: tuple[Runner, World], store_url: str) -> None:
    runner, world = market
    runner.run(once=True)
    store = {"HAJJ_LEDGER_DATABASE_URL": store_url}
    ran = run_cli("view", "trips_on_road", env=store)
    assert ran.returncode == 0, ran.stderr
    shown = {row["trip_id"]: row["overdue"] for row in map(json.loads, ran.stdout.splitlines())}
    assert shown == {str(world.t[n]): n == "late" for n in ("late", "due", "arrived", "untimed", "bus")}
    refused = run_cli("view", "trips_on_road", "--as-of", "1", env=store)
    assert refused.returncode != 0 and "read now only" in refused.stderr


# Who reads which rows, over HTTP.

READERS = {
    "service_offers": {"mission", PAK, "company", COMPANY_2, "ministry"},
    "contracts": {"mission", PAK, "company", COMPANY_2, "ministry"},
    "building_occupancy": {"amanah", "civil_defence", "company", COMPANY_2, "ministry"},
    "trips_on_road": {"road_security", "naqaba", "ministry"},
}
# What each reader sees of each view, by the names of World's ids; the others see every row.
SEES = {
    ("service_offers", "company"): {"o1", "o3", "market"},
    ("service_offers", COMPANY_2): {"o2"},
    ("contracts", "mission"): {"c1", "c3"},
    ("contracts", PAK): {"c2"},
    ("contracts", "company"): {"c1", "market"},
    ("contracts", COMPANY_2): {"c2", "c3"},
    ("building_occupancy", "company"): {"b1", "market"},
    ("building_occupancy", COMPANY_2): {"b2"},
}
KEYS = {"service_offers": ("o", "offer_id"), "contracts": ("c", "contract_id"),
        "building_occupancy": ("b", "building_id"), "trips_on_road": ("t", "trip_id")}  # fmt: skip
ROLE_OF = {PAK: "mission", COMPANY_2: "company"}


@pytest.fixture
def market_api(api: Api) -> tuple[Api, World]:  # noqa: F811 (the fixture imported above)
    world = record_world(api.url)
    api.project()
    return api, world


def _names(http: Api, who: str, view: str, world: World, **params: Any) -> set[str]:
    answer = http.get(who, f"/v1/views/{view}", **params)
    assert answer.status_code == 200, (who, view, answer.text)
    ids, column = KEYS[view]
    return set(_by(answer.json()["items"], column, getattr(world, ids)))


def test_each_new_view_answers_its_readers_their_rows_and_refuses_the_others(market_api: tuple[Api, World]) -> None:
    http, world = market_api
    for view, readers in READERS.items():
        every = set(getattr(world, KEYS[view][0])) - {"waiting", "cancelled"}  # trips that never left
        for who in [str(r) for r in Role] + [PAK, COMPANY_2]:
            if who in readers:
                assert _names(http, who, view, world) == SEES.get((view, who), every), (view, who)
            else:
                body = is_problem(http.get(who, f"/v1/views/{view}"), 403)
                assert body["role"] == ROLE_OF.get(who, who), body


def test_a_mission_shops_the_whole_market_and_pages_through_it(market_api: tuple[Api, World]) -> None:
    http, world = market_api
    assert _names(http, PAK, "service_offers", world, kind="makkah_housing", min_free=6) == {"o1"}
    assert _names(http, PAK, "service_offers", world, min_free=7) == set()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = http.get("mission", "/v1/views/service_offers", limit=1, **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        seen += [row["offer_id"] for row in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(v) for v in world.o.values())
    # A company's filter stays within its own offers.
    assert _names(http, COMPANY_2, "service_offers", world, kind="catering") == set()


def test_road_security_filters_the_overdue(market_api: tuple[Api, World]) -> None:
    http, world = market_api
    assert _names(http, "road_security", "trips_on_road", world, overdue="true") == {"late"}
    assert _names(http, "road_security", "trips_on_road", world, overdue="false", status="on_road") == {
        "due", "untimed", "bus"
    }  # fmt: skip
    assert _names(http, "naqaba", "trips_on_road", world, destination="makkah", status="arrived") == {"arrived"}
    for params in ({"overdue": "maybe"}, {"min_free": "many"}):
        view = "trips_on_road" if "overdue" in params else "building_occupancy"
        body = is_problem(http.get("ministry", f"/v1/views/{view}", **params), 422)
        assert body["errors"][0]["path"] == f"query.{next(iter(params))}", body
