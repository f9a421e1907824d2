"""The HTTP API on SQLite and PostgreSQL: who may call what, scope, problems, idempotency, batches, views, probes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI
from httpx import Response

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.problems import MAX_BODY
from hajj_ledger.domain.access import WHOLE_VIEW_READERS
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import head, upgrade
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from tests.integration.test_chain import check_offline
from tests.support import (
    NAMES,
    T0,
    TestClient,
    as_json,
    building_fields,
    offer_fields,
    project,
    registration,
    registration_command,
    season_opened,
)

PROBLEM = "application/problem+json"
EGY, PAK = "mission-EGY-1", "mission-PAK-2"
COMPANY_1, COMPANY_2 = "company-1", "company-2"
MAX_WAIT = 0.5


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    url: str
    keys: dict[str, str]  # by role, and by the second mission's and company's ids
    contracts: dict[tuple[str, str], UUID] = field(default_factory=dict)  # by company and mission

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def get(self, who: str, path: str, **params: Any) -> Response:
        return self.client.get(path, headers=self.auth(who), params=params)

    def post(self, who: str, path: str, body: Any, **headers: str) -> Response:
        return self.client.post(path, headers={**self.auth(who), **headers}, json=body)

    def project(self) -> None:
        project(self.url)

    def head(self) -> int:
        answer = self.client.get("/readyz")
        assert answer.status_code == 200, answer.text
        position: int = answer.json()["ledger_position"]
        return position

    def register(self, who: str = "mission", identity: dict[str, Any] | None = None, **headers: str) -> UUID:
        country = "PAK" if who == PAK else "EGY"  # a mission registers its own country's pilgrims
        answer = self.post(who, "/v1/journeys", registration(country, identity), **headers)
        assert answer.status_code == 201, answer.text
        return UUID(answer.json()["aggregate_id"])

    def created(self, who: str, path: str, fields: dict[str, Any]) -> UUID:
        answer = self.post(who, path, as_json({"occurred_at": T0, **fields}))
        assert answer.status_code == 201, answer.text
        return UUID(answer.json()["aggregate_id"])

    def market(self, company: str = COMPANY_1, mission: str = "mission") -> UUID:
        """A signed contract of the mission on the company's housing offer (made once), over HTTP."""
        if (company, mission) not in self.contracts:
            seller = "company" if company == COMPANY_1 else company
            building = self.created("amanah", "/v1/buildings", building_fields(50, company_id=company))
            self.created("civil_defence", f"/v1/buildings/{building}/inspection-passed", {"findings": "compliant"})
            offer = self.created(seller, "/v1/offers", offer_fields(50, [building]))
            contract = self.created(mission, "/v1/contracts", {"offer_id": offer, "places": 50})
            self.created(seller, f"/v1/contracts/{contract}/sign", {})
            self.contracts[company, mission] = contract
        return self.contracts[company, mission]

    def contract(self, journey_id: UUID, company: str, who: str = "mission") -> Response:
        body = {"occurred_at": T0.isoformat(), "contract_id": str(self.market(company)), "package_id": "PKG-1"}
        return self.post(who, f"/v1/journeys/{journey_id}/package-contracted", body)


@pytest.fixture
def api(store_url: str) -> Iterator[Api]:
    """The app on a new store, its agencies' keys made, season 1446 opened by the ministry."""
    yield from _api(store_url, opened=True)


@pytest.fixture
def empty_api(store_url: str) -> Iterator[Api]:
    """The same on a store with nothing in its log."""
    yield from _api(store_url, opened=False)


def _api(store_url: str, *, opened: bool) -> Iterator[Api]:
    engine = engine_for(store_url)
    upgrade(engine)
    keys: dict[str, str] = {}
    with engine.begin() as connection:
        for role in Role:
            scope = {Role.MISSION: EGY, Role.COMPANY: COMPANY_1}.get(role)
            _, keys[str(role)] = agencies.add(connection, role, f"the {role}", scope)
        _, keys[PAK] = agencies.add(connection, Role.MISSION, "Pakistan's mission", PAK)
        _, keys[COMPANY_2] = agencies.add(connection, Role.COMPANY, "the second company", COMPANY_2)
    engine.dispose()
    app = create_app(season_opened(store_url) if opened else store_url, max_wait=MAX_WAIT)
    with TestClient(app) as client:
        yield Api(client, app, store_url, keys)


def is_problem(answer: Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith(PROBLEM), answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"] and body["title"], body
    return body


# 1. Who may call what: every operation of the app's own OpenAPI document, for every role.


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1") and method in ("get", "post", "put", "patch", "delete"):
                found.append((method, path, operation))
    return found


def test_every_v1_operation_declares_its_roles(api: Api) -> None:
    found = operations(api.app)
    assert len(found) > 40
    for method, path, operation in found:
        roles = operation.get("x-roles")
        assert isinstance(roles, list) and roles, f"{method.upper()} {path} declares no x-roles"
        assert set(roles) <= {str(r) for r in Role}, (path, roles)


def test_authorization_matrix(api: Api) -> None:
    wrong: list[str] = []
    for method, template, operation in operations(api.app):
        path = template
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                path = path.replace("{" + parameter["name"] + "}", str(uuid4()))
        assert "{" not in path, path
        allowed = set(operation["x-roles"])
        streams = "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
        for role in Role:
            if streams and str(role) in allowed:
                continue  # a stream never ends by itself here: tests/integration/test_feed.py calls it for these
            headers = api.auth(str(role))
            if method == "post":
                answer = api.client.post(path, headers=headers, json={})
            else:
                answer = api.client.request(method.upper(), path, headers=headers)
            where = f"{method.upper()} {template} as {role}: {answer.status_code} {answer.text[:200]}"
            if str(role) in allowed:
                if answer.status_code in (401, 403) or answer.status_code >= 500:
                    wrong.append(where)
            elif not refused(answer, role):
                wrong.append(where)
    assert not wrong, "\n".join(wrong)


def refused(answer: Response, role: Role) -> bool:
    """A 403 problem naming the role."""
    if answer.status_code != 403 or not answer.headers["content-type"].startswith(PROBLEM):
        return False
    body = answer.json()
    return body.get("role") == str(role) and f"'{role}'" in body["detail"]


def test_no_key_or_a_wrong_key_is_401(api: Api) -> None:
    for method, path in (("GET", "/v1/views/journey_status"), ("POST", "/v1/journeys")):
        bare = api.client.request(method, path, json={} if method == "POST" else None)
        is_problem(bare, 401)
        assert bare.headers["www-authenticate"] == "Bearer"
        fake = "hl_0123456789ab_" + "A" * 43
        for header in (f"Bearer {fake}", "Bearer nonsense", f"Basic {fake}"):
            answer = api.client.request(method, path, headers={"Authorization": header})
            is_problem(answer, 401)
            assert answer.headers["www-authenticate"] == "Bearer"
    # A real key with one character changed is refused too.
    key = api.keys["ministry"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    is_problem(api.client.get("/v1/views/journey_status", headers={"Authorization": f"Bearer {tampered}"}), 401)


def test_the_key_is_checked_before_the_body_is_read(api: Api) -> None:
    """A caller without a key, or in a role the route refuses, learns nothing about what the route would accept:
    a malformed body must not be answered 422 ahead of the 401 or the 403."""
    malformed = {"Content-Type": "application/json"}
    bare = api.client.post("/v1/journeys", headers=malformed, content=b"{nope")
    is_problem(bare, 401)
    auditor = api.client.post("/v1/journeys", headers={**malformed, **api.auth("auditor")}, content=b"{nope")
    is_problem(auditor, 403)


def test_a_revoked_key_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.get("ministry", "/v1/views/journey_status").status_code == 200
    engine = engine_for(api.url)
    with engine.begin() as connection:
        agencies.revoke(connection, "ministry-the-ministry")
    engine.dispose()
    services = api.app.state.services
    monkeypatch.setattr(services, "keys", agencies.Keys(services.engine, ttl=0.0))  # no cached answers to wait out
    is_problem(api.get("ministry", "/v1/views/journey_status"), 401)


# 2. Scope: a mission sees its own journeys, a company those contracted to it; others' are not there at all.


def test_a_mission_sees_only_its_own_journeys(api: Api) -> None:
    journey_id = api.register(identity=NAMES)
    api.project()
    base = f"/v1/journeys/{journey_id}"

    assert api.get("mission", base).json()["mission_id"] == EGY
    assert api.get("mission", f"{base}/history").json()["events"][0]["event"] == "Registered"
    assert api.get("mission", f"{base}/identity").json()["name_latin"] == NAMES["name_latin"]
    listed = api.get("mission", "/v1/views/journey_status").json()["items"]
    assert [row["journey_id"] for row in listed] == [str(journey_id)]
    for name in (NAMES["name_arabic"], "Abdelrahman Elansary"):
        assert api.get("mission", "/v1/identities/by-name", name=name).json()["journey_ids"] == [str(journey_id)]

    is_problem(api.get(PAK, base), 404)
    is_problem(api.get(PAK, f"{base}/history"), 404)
    assert api.get(PAK, f"{base}/identity").status_code in (403, 404)
    assert api.get(PAK, "/v1/views/journey_status").json()["items"] == []
    assert api.get(PAK, "/v1/identities/by-name", name=NAMES["name_arabic"]).json()["journey_ids"] == []
    passport = {"number": NAMES["passport_number"], "country": "EGY"}
    assert api.get("mission", "/v1/identities/by-passport", **passport).json()["journey_ids"] == [str(journey_id)]
    assert api.get(PAK, "/v1/identities/by-passport", **passport).json()["journey_ids"] == []
    body = is_problem(api.post(PAK, f"{base}/visa-requested", {"occurred_at": T0.isoformat()}), 403)
    assert body["role"] == "mission"
    is_problem(api.contract(journey_id, COMPANY_1, who=PAK), 403)
    # and nothing of it was recorded
    assert [e["event"] for e in api.get("mission", f"{base}/history").json()["events"]] == ["Registered"]


def test_a_company_sees_only_the_journeys_contracted_to_it(api: Api) -> None:
    journey_id = api.register(identity=NAMES)
    assert api.contract(journey_id, COMPANY_1).status_code == 201
    api.project()
    base = f"/v1/journeys/{journey_id}"

    assert api.get("company", base).json()["company_id"] == COMPANY_1
    assert len(api.get("company", f"{base}/history").json()["events"]) == 2
    assert api.get("company", f"{base}/identity").json()["passport_number"] == NAMES["passport_number"]
    listed = api.get("company", "/v1/views/journey_status").json()["items"]
    assert [row["journey_id"] for row in listed] == [str(journey_id)]

    is_problem(api.get(COMPANY_2, base), 404)
    is_problem(api.get(COMPANY_2, f"{base}/history"), 404)
    assert api.get(COMPANY_2, f"{base}/identity").status_code in (403, 404)
    assert api.get(COMPANY_2, "/v1/views/journey_status").json()["items"] == []
    passport = {"number": NAMES["passport_number"], "country": "EGY"}
    assert api.get("company", "/v1/identities/by-passport", **passport).json()["journey_ids"] == [str(journey_id)]
    assert api.get(COMPANY_2, "/v1/identities/by-passport", **passport).json()["journey_ids"] == []
    body = {"occurred_at": T0.isoformat(), "site": "makkah"}
    is_problem(api.post(COMPANY_2, f"{base}/reported-missing", {"occurred_at": T0.isoformat()}), 403)
    is_problem(api.post(COMPANY_2, f"{base}/moved-to-site", body), 403)
    # A journey contracted to nobody yet is nobody's company's.
    other = api.register()
    api.project()
    is_problem(api.get("company", f"/v1/journeys/{other}"), 404)
    # The ministry reads across agencies.
    assert api.get("ministry", base).status_code == 200
    assert len(api.get("ministry", "/v1/views/journey_status").json()["items"]) == 2


# 3. Problems.


def test_invalid_fields_are_named(api: Api) -> None:
    body = registration(country="egypt", colour="green")
    body["season"] = 12
    answer = is_problem(api.post("mission", "/v1/journeys", body), 422)
    paths = {e["path"] for e in answer["errors"]}
    assert {p.rsplit(".", 1)[-1] for p in paths} >= {"country", "colour", "season"}, paths
    assert all(p.startswith("body") for p in paths), paths
    # a bad identity field names its path inside the identity
    answer = is_problem(api.post("mission", "/v1/journeys", registration(identity={**NAMES, "gender": "x"})), 422)
    assert any(e["path"].endswith("identity.gender") for e in answer["errors"]), answer
    # a query parameter
    answer = is_problem(api.get("ministry", "/v1/views/journey_status", limit=0), 422)
    assert any(e["path"] == "query.limit" for e in answer["errors"]), answer
    # a path parameter that is not a UUID
    is_problem(api.get("ministry", "/v1/journeys/not-a-uuid"), 422)
    # a body that is not JSON at all
    not_json = api.client.post(
        "/v1/journeys", headers={**api.auth("mission"), "Content-Type": "application/json"}, content=b"{nope"
    )
    is_problem(not_json, 422)


def test_media_type_and_size(api: Api) -> None:
    text = api.client.post(
        "/v1/journeys", headers={**api.auth("mission"), "Content-Type": "text/plain"}, content=b'{"a": 1}'
    )
    is_problem(text, 415)
    form = api.client.post("/v1/journeys", headers=api.auth("mission"), data={"a": "1"})
    is_problem(form, 415)
    big = b'{"x": "' + b"a" * MAX_BODY + b'"}'
    json_headers = {**api.auth("mission"), "Content-Type": "application/json"}
    is_problem(api.client.post("/v1/journeys", headers=json_headers, content=big), 413)
    # under the limit, the same shape is an ordinary 422
    is_problem(api.client.post("/v1/journeys", headers=json_headers, content=b'{"x": "a"}'), 422)


def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    """Without a Content-Length the limit is enforced while reading: still 413, not another status."""

    def chunks() -> Iterator[bytes]:
        yield b'{"x": "'
        for _ in range(3):
            yield b"a" * (MAX_BODY // 2)
        yield b'"}'

    headers = {**api.auth("mission"), "Content-Type": "application/json"}
    answer = api.client.post("/v1/journeys", headers=headers, content=chunks())
    is_problem(answer, 413)


def test_an_illegal_step_is_409_with_the_stage_and_the_allowed_steps(api: Api) -> None:
    journey_id = api.register()
    answer = api.post("mission", f"/v1/journeys/{journey_id}/visa-requested", {"occurred_at": T0.isoformat()})
    body = is_problem(answer, 409)
    assert body["current_stage"] == "registered"
    assert "PackageContracted" in body["allowed"] and "VisaRequested" not in body["allowed"]


def test_unknown_things_are_404(api: Api) -> None:
    missing = uuid4()
    is_problem(api.get("ministry", f"/v1/journeys/{missing}"), 404)
    is_problem(api.get("ministry", f"/v1/journeys/{missing}/history"), 404)
    is_problem(api.get("ministry", f"/v1/journeys/{missing}/identity"), 404)
    is_problem(api.post("mission", f"/v1/journeys/{missing}/visa-requested", {"occurred_at": T0.isoformat()}), 404)
    is_problem(api.get("ministry", "/v1/nothing-here"), 404)
    is_problem(api.client.get("/nothing-here"), 404)
    is_problem(api.client.delete("/v1/journeys", headers=api.auth("mission")), 405)


# 4. Idempotency.


def test_the_same_idempotency_key_repeats_the_first_outcome(api: Api) -> None:
    body = registration(identity=NAMES)
    headers = {**api.auth("mission"), "Idempotency-Key": "register-42"}
    first = api.client.post("/v1/journeys", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["repeated"] is False
    position = api.head()
    again = api.client.post("/v1/journeys", headers=headers, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["repeated"] is True
    assert again.json()["position"] == first.json()["position"] == position
    assert again.json()["command_id"] == first.json()["command_id"]
    assert api.head() == position
    # The key is the agency's own: another mission's same key is another command.
    another = registration(country="PAK")
    other = api.client.post("/v1/journeys", headers={**api.auth(PAK), "Idempotency-Key": "register-42"}, json=another)
    assert other.status_code == 201 and other.json()["command_id"] != first.json()["command_id"], other.text
    # The same key for a different command is refused, not silently answered with the first outcome.
    different = api.client.post("/v1/journeys", headers=headers, json=registration())
    is_problem(different, 409)


def test_the_same_command_id_repeats_the_first_outcome(api: Api) -> None:
    journey_id = api.register()
    contract_id = str(api.market())
    body = {
        "occurred_at": T0.isoformat(),
        "contract_id": contract_id,
        "package_id": "PKG-1",
        "command_id": str(uuid4()),
    }
    path = f"/v1/journeys/{journey_id}/package-contracted"
    first = api.post("mission", path, body)
    assert first.status_code == 201 and first.json()["repeated"] is False, first.text
    position = api.head()
    again = api.post("mission", path, body)
    assert again.status_code == 200, again.text
    assert again.json()["repeated"] is True and again.json()["position"] == first.json()["position"]
    assert again.json()["command_id"] == body["command_id"]
    assert api.head() == position


# 5. Batches.


def test_a_batch_answers_each_command_in_order(api: Api) -> None:
    journey_id = api.register()
    at = T0.isoformat()
    contract = {"contract_id": str(api.market()), "package_id": "PKG-1"}
    commands: list[dict[str, Any]] = [
        registration_command(identity=NAMES),
        {"event": "PackageContracted", "journey_id": str(journey_id), "occurred_at": at, **contract},
        registration_command("egypt"),  # malformed
        {"event": "Cancelled", "journey_id": str(journey_id), "occurred_at": at, "reason": "withdrawn"},
        {"event": "VisaIssued", "journey_id": str(journey_id), "occurred_at": at, "valid_until": at},  # not a mofa
        registration_command(),
        {"event": "NoSuchStep", "occurred_at": at},
    ]
    # the visa above is recorded by a mission: refused whatever the stage; and one illegal step after the cancel:
    commands.append({"event": "VisaRequested", "journey_id": str(journey_id), "occurred_at": at})
    commands.append({"event": "VisaRequested", "journey_id": str(uuid4()), "occurred_at": at})  # unknown journey
    answer = api.post("mission", "/v1/commands:batch", {"commands": commands})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == list(range(len(commands)))
    statuses = [r["status"] for r in results]
    assert statuses[:2] == [201, 201] and statuses[5] == 201, results
    assert statuses[2] == 422 and statuses[6] == 422, results
    assert any(e["path"] == "country" for e in results[2]["problem"]["errors"]), results[2]
    assert statuses[3] == 201, results[3]  # cancelled after the contract: legal
    assert statuses[4] == 403 and results[4]["problem"]["role"] == "mission", results[4]
    assert statuses[7] == 409 and results[7]["problem"]["current_stage"] == "cancelled", results[7]
    assert statuses[8] == 404, results[8]
    good = [r for r in results if r["status"] == 201]
    positions = [r["outcome"]["position"] for r in good]
    assert all(p > 0 for p in positions) and len(set(positions)) == len(positions)
    assert all(r["problem"] is None for r in good) and all(r["outcome"] is None for r in results if r not in good)
    assert api.head() == max(positions)


def test_a_batch_with_an_idempotency_key_is_repeated_whole(api: Api) -> None:
    commands = [registration_command() for _ in range(3)]
    headers = {"Idempotency-Key": "batch-1"}
    first = api.post("mission", "/v1/commands:batch", {"commands": commands}, **headers)
    position = api.head()
    again = api.post("mission", "/v1/commands:batch", {"commands": commands}, **headers)
    assert [r["status"] for r in first.json()["results"]] == [201] * 3, first.text
    assert [r["status"] for r in again.json()["results"]] == [200] * 3, again.text
    assert [r["outcome"]["position"] for r in again.json()["results"]] == [
        r["outcome"]["position"] for r in first.json()["results"]
    ]
    assert api.head() == position


def test_a_batch_is_at_most_1000_commands_and_at_least_one(api: Api) -> None:
    position = api.head()
    too_many = [registration_command() for _ in range(1001)]
    body = is_problem(api.post("mission", "/v1/commands:batch", {"commands": too_many}), 422)
    assert any(e["path"].endswith("commands") for e in body["errors"]), body
    is_problem(api.post("mission", "/v1/commands:batch", {"commands": []}), 422)
    is_problem(api.post("mission", "/v1/commands:batch", {"commands": [], "extra": 1}), 422)
    assert api.head() == position


# 6. Views.


def test_pages_follow_the_cursor_and_reads_wait_for_a_position(api: Api) -> None:
    commands = [registration_command() for _ in range(25)]
    answer = api.post("mission", "/v1/commands:batch", {"commands": commands})
    assert [r["status"] for r in answer.json()["results"]] == [201] * 25, answer.text
    registered = {r["outcome"]["aggregate_id"] for r in answer.json()["results"]}
    last = max(r["outcome"]["position"] for r in answer.json()["results"])

    # Before the views catch up, a read asking for the last write waits, then says the views are behind.
    started = time.monotonic()
    behind = is_problem(api.get("mission", "/v1/views/journey_status", min_position=last), 503)
    assert MAX_WAIT * 0.8 <= time.monotonic() - started < MAX_WAIT + 5
    assert behind["wanted"] == last and behind["reached"] < last
    assert api.client.get("/metrics").status_code == 200

    api.project()
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10, "min_position": last}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.get("mission", "/v1/views/journey_status", **params)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 10 and page.json()["position"] >= last
        seen += [row["journey_id"] for row in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 25 and set(seen) == registered

    # A filter by a column; and another mission's page is empty.
    filtered = api.get("mission", "/v1/views/journey_status", stage="registered", limit=1000).json()["items"]
    assert len(filtered) == 25
    assert api.get("mission", "/v1/views/journey_status", stage="contracted").json()["items"] == []
    assert api.get(PAK, "/v1/views/journey_status").json()["items"] == []

    for garbage in ("garbage", "!!!", "W10", "WyJub3QtYS11dWlkIl0"):
        body = is_problem(api.get("mission", "/v1/views/journey_status", cursor=garbage), 422)
        assert body["errors"][0]["path"] == "query.cursor"

    head = api.head()
    too_far = api.get("mission", "/v1/views/journey_status", min_position=head + 1000)
    body = is_problem(too_far, 422)  # a position the ledger has not reached: nothing to wait for
    assert body["errors"][0]["path"] == "query.min_position" and f"({head})" in body["detail"]
    at_head = api.get("mission", "/v1/journeys/" + seen[0], min_position=head)
    assert at_head.status_code == 200, at_head.text
    assert api.get("mission", "/v1/views/journey_status", min_position=head).status_code == 200


def test_every_view_answers_its_readers(api: Api) -> None:
    """Each view, for each role that may read it, with a few journeys in it: 200 and exactly the rows of the
    caller's scope (a mission's own journeys, a company's contracted ones; every row for the other roles, and for a
    scoped role that reads a view whole)."""
    journey_id = api.register()
    assert api.contract(journey_id, COMPANY_1).status_code == 201
    api.register(PAK)
    api.project()
    scopes = {"mission": ("mission_id", EGY), "company": ("company_id", COMPANY_1)}
    views = [(path, operation) for _, path, operation in operations(api.app) if path.startswith("/v1/views/")]
    assert len(views) == len(PROJECTIONS)
    shown = hidden = 0  # scoped rows: shown to their own agency, hidden from another
    for path, operation in views:
        every_row = api.get("ministry", path).json()["items"]  # the ministry reads every view, unscoped
        for role in operation["x-roles"]:
            answer = api.get(role, path)
            assert answer.status_code == 200, (path, role, answer.text)
            expected = every_row
            if role in scopes and role not in WHOLE_VIEW_READERS.get(path.removeprefix("/v1/views/"), ()):
                column, mine = scopes[role]
                expected = [row for row in every_row if row[column] == mine]
                shown, hidden = shown + len(expected), hidden + len(every_row) - len(expected)
            assert answer.json()["items"] == expected, (path, role)
    assert shown and hidden, "no view held rows of one agency and another's"


# 7. Operations.


def test_probes_and_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready" and ready.json()["migration"] == head() == "0009"
    api.register()
    answer = api.client.get("/metrics")
    assert answer.status_code == 200
    text = answer.text
    assert "hajj_ledger_http_requests_total" in text
    assert "hajj_ledger_events_appended_total" in text
    assert 'route="/v1/journeys"' in text and 'status="201"' in text
    assert "hajj_ledger_projection_lag_events" in text
    assert answer.headers["x-request-id"]
    mine = api.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"


def test_query_values_are_what_they_say(api: Api) -> None:
    """Found by Schemathesis: "0.0" taken for a whole number, a number for a date, the last of a repeated value."""
    for params in ({"limit": "10.0"}, {"min_position": "1e3"}, {"visa_valid_until": "1700000000"},
                   {"stage": ["registered", "received"]}):  # fmt: skip
        answer = api.client.get("/v1/views/journey_status", params=params, headers=api.auth("ministry"))
        body = is_problem(answer, 422)
        assert body["errors"][0]["path"] == f"query.{next(iter(params))}", body


# The hash chain: checkpoints published to every agency, made on demand by auditors, keys, proofs.


def test_an_empty_ledger_has_nothing_to_checkpoint(empty_api: Api) -> None:
    is_problem(empty_api.client.post("/v1/audit/checkpoints", headers=empty_api.auth("auditor")), 409)
    assert empty_api.get("mission", "/v1/audit/checkpoints").json() == {"items": [], "next_after": None}


def test_checkpoints_keys_and_a_proof_an_auditor_checks_offline(api: Api, tmp_path: Path) -> None:
    ledger = JourneyLedger(api.url)
    simulate(ledger, 6, 1446, 3)
    head = ledger.head()
    ledger.close()

    made = api.client.post("/v1/audit/checkpoints", headers=api.auth("auditor"))
    assert made.status_code == 201, made.text
    checkpoint = made.json()
    assert checkpoint["position"] == head
    again = api.client.post("/v1/audit/checkpoints", headers=api.auth("ministry"))
    assert again.status_code == 201 and again.json() == checkpoint  # nothing new since: the same checkpoint
    ledger = JourneyLedger(api.url)
    simulate(ledger, 2, 1445, 3)
    head = ledger.head()
    ledger.close()
    checkpoint = api.client.post("/v1/audit/checkpoints", headers=api.auth("auditor")).json()
    assert checkpoint["position"] == head

    listed = api.get("mission", "/v1/audit/checkpoints", limit=1000).json()  # published to every agency
    assert listed["items"][-1] == checkpoint and listed["next_after"] is None
    assert [c["position"] for c in listed["items"]] == sorted(c["position"] for c in listed["items"])
    first = api.get("gaca", "/v1/audit/checkpoints", limit=1).json()
    assert len(first["items"]) == 1 and first["next_after"] == first["items"][0]["position"]
    rest = api.get("gaca", "/v1/audit/checkpoints", after=first["next_after"], limit=1000).json()
    assert [first["items"][0], *rest["items"]] == listed["items"]

    keys = api.get("naqaba", "/v1/audit/keys")
    assert keys.status_code == 200 and checkpoint["key_id"] in keys.json()["keys"]

    for position in (1, head // 2, head):
        proof = api.get("auditor", "/v1/audit/proof", position=position)
        assert proof.status_code == 200, proof.text
        checked = check_offline(tmp_path, proof.json(), keys.json())
        assert checked.returncode == 0, checked.stderr
    is_problem(api.get("auditor", "/v1/audit/proof", position=head + 5), 404)
    is_problem(api.get("auditor", "/v1/audit/proof", position="x"), 422)
    is_problem(api.get("mission", "/v1/audit/proof", position=1), 403)
