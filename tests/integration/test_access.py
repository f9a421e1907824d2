"""Who reads what, over HTTP, both ways, on SQLite and PostgreSQL: for every role and every route of the access table
(domain/access.py), a read it grants answers (2xx, on a store where the caller's own journey, contract, export and
checkpoint exist) and every other one is refused with 403 naming the role; and every route of the app that records
nothing is in the table, with the roles the table gives it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.feed import HEARTBEAT_VARIABLE
from hajj_ledger.audit.manifests import MANIFEST
from hajj_ledger.domain.access import ROUTE_READERS
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.conftest import STORES, new_postgres_database
from tests.integration.test_api import COMPANY_1, EGY, operations, refused
from tests.support import (
    NAMES,
    T0,
    as_json,
    building_fields,
    eventually,
    offer_fields,
    project,
    registration,
    season_opened,
)

pytestmark = pytest.mark.xdist_group("access")  # one worker builds each store and its server (a module fixture)


@dataclass
class World:
    """A store served over HTTP, holding what each read is about: the mission's journey, contracted to the company,
    with an identity; a checkpoint over it; an analyst's finished export."""

    app: FastAPI
    http: httpx.Client
    keys: dict[str, str]  # by role
    journey: UUID
    export: str
    head: int

    def post(self, role: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = self.http.post(path, json=body, headers=self.auth(role))
        assert answer.is_success, (path, answer.text)
        found: dict[str, Any] = answer.json()
        return found

    def created(self, role: str, path: str, **fields: Any) -> str:
        return str(self.post(role, path, as_json({"occurred_at": T0, **fields}))["aggregate_id"])

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def request(self, route: str) -> tuple[str, str, dict[str, Any], Any]:
        """The route as a request about what the store holds: method, path, query, body."""
        method, template = route.split(" ")
        path = template.format(journey_id=self.journey, export_id=self.export, name=MANIFEST)
        at_head = {"position": self.head}
        queries: dict[str, dict[str, Any]] = {
            "/v1/identities/by-passport": {"number": NAMES["passport_number"], "country": NAMES["passport_country"]},
            "/v1/identities/by-name": {"name": "alansari"},
            "/v1/audit/journeys/{journey_id}": at_head,
            "/v1/audit/views/journey_status": at_head,
            "/v1/audit/views/season_funnel": at_head,
            "/v1/audit/proof": {"position": 1},
        }
        return method, path, queries.get(template, {}), {"format": "csv"} if template == "/v1/exports" else None

    def ask(self, role: Role, route: str) -> httpx.Response:
        method, path, query, body = self.request(route)
        headers = self.auth(role)
        if route == "GET /v1/feed":  # a stream: its status line, then hang up
            with self.http.stream(method, path, headers=headers) as answer:
                if not answer.is_success:
                    answer.read()
                return answer
        return self.http.request(method, path, params=query, json=body, headers=headers)


def _serve(app: FastAPI, stack: ExitStack) -> str:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    running = threading.Thread(target=server.run)
    running.start()
    stack.callback(running.join)
    stack.callback(setattr, server, "should_exit", True)
    eventually(lambda: server.started, 30, "the server started")
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@pytest.fixture(scope="module", params=STORES)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('access')}/ledger.sqlite3"
        else:
            url = stack.enter_context(new_postgres_database())
        engine = engine_for(url)
        upgrade(engine)
        keys: dict[str, str] = {}
        with engine.begin() as connection:
            for role in Role:
                scope = {Role.MISSION: EGY, Role.COMPANY: COMPANY_1}.get(role)
                keys[role] = agencies.add(connection, role, f"the {role}", scope)[1]
        engine.dispose()
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv(HEARTBEAT_VARIABLE, "0.1")  # the feed's first line comes at once
        app = create_app(season_opened(url))
        http = stack.enter_context(httpx.Client(base_url=_serve(app, stack), timeout=30))
        world = World(app, http, keys, UUID(int=0), "", 0)

        building = world.created("amanah", "/v1/buildings", **building_fields(50, company_id=COMPANY_1))
        world.created("civil_defence", f"/v1/buildings/{building}/inspection-passed", findings="compliant")
        offer = world.created("company", "/v1/offers", **offer_fields(50, [UUID(building)]))
        contract = world.created("mission", "/v1/contracts", offer_id=offer, places=50)
        world.created("company", f"/v1/contracts/{contract}/sign")
        world.journey = UUID(world.post("mission", "/v1/journeys", registration("EGY", NAMES))["aggregate_id"])
        contracted = f"/v1/journeys/{world.journey}/package-contracted"
        world.created("mission", contracted, contract_id=contract, package_id="PKG-1")
        world.head = world.post("auditor", "/v1/audit/checkpoints")["position"]
        project(url)
        world.export = world.post("analyst", "/v1/exports", {"format": "csv"})["export_id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/exports/{world.export}", headers=world.auth("analyst")).json()["state"] == "running":
            assert time.monotonic() < deadline, "the export did not finish"
            time.sleep(0.05)
        yield world


def test_every_route_that_records_nothing_takes_its_roles_from_the_access_table(world: World) -> None:
    routes = {
        f"{method.upper()} {path}": set(operation["x-roles"])
        for method, path, operation in operations(world.app)
        if "recording" not in operation["tags"]
    }
    assert routes == {route: {str(r) for r in readers} for route, readers in ROUTE_READERS.items()}


# 201 for a checkpoint sealed and signed, 202 for an export started; every other read answers 200.
ANSWERS = {"POST /v1/audit/checkpoints": 201, "POST /v1/exports": 202}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("route", list(ROUTE_READERS))
def test_a_role_reads_exactly_what_the_access_table_grants_it(world: World, route: str, role: Role) -> None:
    answer = world.ask(role, route)
    if role in ROUTE_READERS[route]:
        assert answer.status_code == ANSWERS.get(route, 200), answer.text
    else:
        assert refused(answer, role), (answer.status_code, answer.text)


def test_need_to_know_the_municipality_civil_defence_and_road_security_read_no_journey(world: World) -> None:
    """Issue 27: they recorded nothing of a journey, and read every pilgrim's status and history."""
    for role in (Role.AMANAH, Role.CIVIL_DEFENCE, Role.ROAD_SECURITY):
        for route in ("GET /v1/journeys/{journey_id}", "GET /v1/journeys/{journey_id}/history",
                      "GET /v1/views/journey_status"):  # fmt: skip
            assert refused(world.ask(role, route), role), (role, route)
        assert world.ask(role, "GET /v1/summary").json()["in_kingdom"] is None


def test_the_routes_asked_hold_what_they_are_about(world: World) -> None:
    """The reads above answer about the store's own things, not empty pages: the test would not catch a grant that
    answered 200 with nothing in it otherwise."""
    status = world.ask(Role.COMPANY, "GET /v1/journeys/{journey_id}").json()
    assert status["journey_id"] == str(world.journey) and status["company_id"] == COMPANY_1
    assert world.ask(Role.MISSION, "GET /v1/identities/by-name").json()["journey_ids"] == [str(world.journey)]
    assert world.ask(Role.JAWAZAT, "GET /v1/identities/by-passport").json()["journey_ids"] == [str(world.journey)]
    history = world.ask(Role.MINISTRY, "GET /v1/journeys/{journey_id}/history").json()["events"]
    assert [e["event"] for e in history] == ["Registered", "PackageContracted"]
    file = world.ask(Role.ANALYST, "GET /v1/exports/{export_id}/files/{name}")
    assert file.json()["position"] == world.head
