"""The hot routes (api/hot.py) answer exactly as the documented routes do: every request below, odd ones included,
gets the same status, media type and body with the hot route in front as without it; and the plainly valid ones
are answered by the hot route itself. Reads, then single steps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.hot import HotReads, HotWrites
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.support import T0, TestClient, open_market, project, registration, registration_command, season_opened

EGY, PAK = "mission-EGY-1", "mission-PAK-2"


@pytest.fixture
def keys_and_url(store_url: str) -> tuple[dict[str, str], str]:
    engine = engine_for(store_url)
    upgrade(engine)
    keys: dict[str, str] = {}
    with engine.begin() as connection:
        for role in Role:
            scope = {Role.MISSION: EGY, Role.COMPANY: "company-1"}.get(role)
            _, keys[str(role)] = agencies.add(connection, role, f"the {role}", scope)
        _, keys[PAK] = agencies.add(connection, Role.MISSION, "Pakistan's mission", PAK)
    engine.dispose()
    return keys, season_opened(store_url)


@pytest.fixture
def client(keys_and_url: tuple[dict[str, str], str]) -> Iterator[TestClient]:
    with TestClient(create_app(keys_and_url[1], max_wait=0.3)) as found:
        yield found


def _requests(keys: dict[str, str], mine: str, theirs: str, head: int, cursor: str) -> list[tuple[str, str, Any]]:
    """(key, path, query) of plainly valid requests first, then odd ones."""
    status, view = f"/v1/journeys/{mine}", "/v1/views/journey_status"
    valid: list[tuple[str, str, Any]] = [
        (keys["ministry"], status, {}), (keys["mission"], status, {}),
        (keys["ministry"], status, {"min_position": head}),
        (keys["mission"], f"/v1/journeys/{theirs}", {}),  # another mission's: not found for this one
        (keys["ministry"], f"/v1/journeys/{uuid4()}", {}),
        (keys["ministry"], view, {}), (keys["mission"], view, {"limit": 1}), (keys[PAK], view, {"limit": 1000}),
        (keys["ministry"], view, {"limit": 1, "cursor": cursor, "min_position": 0}),
        (keys["ministry"], "/v1/views/season_funnel", {}),
        (keys["ministry"], view, {"season": 1446}), (keys["mission"], view, {"season": 1447, "limit": 1}),
        # Values as the routes' declarations take them: any form of a uuid, a filter, a cursor refused by the view.
        (keys["ministry"], f"/v1/journeys/{mine.upper()}", {}),
        (keys["ministry"], f"/v1/journeys/{UUID(mine).hex}", {}),
        (keys["ministry"], view, {"stage": "registered"}), (keys["mission"], view, {"stage": "registered"}),
        (keys["ministry"], view, {"cursor": "!!"}),
    ]  # fmt: skip
    odd: list[tuple[str, str, Any]] = [
        (keys["ministry"], status, {"min_position": head + 1000}), (keys["ministry"], status, {"min_position": "1e3"}),
        (keys["ministry"], status, {"min_position": "-1"}), (keys["ministry"], status, {"min_position": ""}),
        (keys["ministry"], status, {"min_position": [1, 1]}), (keys["ministry"], status, {"limit": 1}),
        (keys["ministry"], "/v1/journeys/not-a-uuid", {}), (keys["ministry"], f"/v1/journeys/{mine}/", {}),
        (keys["company"], status, {}), ("hl_000000000000_" + "x" * 43, status, {}),
        (keys["ministry"], view, {"limit": 0}), (keys["ministry"], view, {"limit": 1001}),
        (keys["ministry"], view, {"limit": "ten"}), (keys["ministry"], view, {"cursor": "garbage"}),
        (keys["ministry"], view, {"unknown": 1}), (keys["ministry"], view, {"limit": [1, 2]}),
        (keys["ministry"], view, {"min_position": head + 1000}), (keys["ministry"], "/v1/views/nothing", {}),
        (keys["ministry"], view, {"season": 0}), (keys["ministry"], view, {"season": "01446"}),
        (keys["ministry"], view, {"season": 10000}), (keys["ministry"], view, {"season": [1446, 1446]}),
        (keys["ministry"], "/v1/views/trip_manifest", {"season": 1446}),  # trips are of no season
    ]  # fmt: skip
    return valid + odd


def test_the_hot_route_answers_as_the_documented_routes(
    client: TestClient, keys_and_url: tuple[dict[str, str], str]
) -> None:
    keys, url = keys_and_url
    registered = []
    for who, country in (("mission", "EGY"), (PAK, "PAK")):
        answer = client.post(
            "/v1/journeys", json=registration(country), headers={"Authorization": f"Bearer {keys[who]}"}
        )
        assert answer.status_code == 201, answer.text
        registered.append(answer.json())
    project(url)
    head = max(r["position"] for r in registered)
    ministry = {"Authorization": f"Bearer {keys['ministry']}"}
    cursor = client.get("/v1/views/journey_status", params={"limit": 1}, headers=ministry).json()["next_cursor"]
    assert cursor is not None
    mine, theirs = registered[0]["aggregate_id"], registered[1]["aggregate_id"]
    requests = _requests(keys, mine, theirs, head, cursor)
    hot: HotReads = client.app.state.hot_reads  # type: ignore[attr-defined]
    documented = [read.route for read in hot.reads]
    handed_on: list[str] = []

    def answers() -> list[tuple[int, str, Any, bool]]:
        """Each request's status, media type and body, and whether the hot route handed it on."""
        found = []
        for key, path, query in requests:
            before = len(handed_on)
            answer = client.get(path, params=query, headers={"Authorization": f"Bearer {key}"})
            body = answer.json() if answer.headers["content-type"].endswith("json") else answer.text
            found.append((answer.status_code, answer.headers["content-type"], body, len(handed_on) > before))
        return found

    for route in documented:  # count what goes on to the documented routes
        handle = route.handle

        async def counted(scope: Any, receive: Any, send: Any, handle: Any = handle) -> None:
            handed_on.append(scope["path"])
            await handle(scope, receive, send)

        route.handle = counted  # type: ignore[method-assign]
    answers()  # every key is in the cache from here on
    with_hot = answers()
    valid = 17
    statuses = [200, 200, 200, 404, 404, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 422]
    assert [a[0] for a in with_hot[:valid]] == statuses
    assert not any(a[3] for a in with_hot[:valid])  # answered by the hot route itself
    assert sum(a[3] for a in with_hot[valid:]) >= 15  # most odd ones are handed on; a few it refuses alike
    assert all(a[0] < 500 for a in with_hot)

    client.app.state.hot_reads = None  # type: ignore[attr-defined]
    without = answers()
    for request, one, other in zip(requests, with_hot, without, strict=True):
        assert one[:3] == other[:3], request


def _write_requests(keys: dict[str, str], journey: str) -> list[tuple[str, str, dict[str, str], bytes | Any]]:
    """(key, path, extra headers, body) of plainly valid single steps first, then odd ones; for one journey,
    contracted by its mission."""
    at = {"occurred_at": T0.isoformat()}
    mission, mofa = keys["mission"], keys["mofa"]
    step = f"/v1/journeys/{journey}"
    fresh = registration()
    valid: list[tuple[str, str, dict[str, str], Any]] = [
        (mission, "/v1/journeys", {}, fresh),
        (mission, f"{step}/visa-requested", {"Idempotency-Key": journey}, at),
        (mission, f"{step}/visa-requested", {"Idempotency-Key": journey}, at),  # a repeat: 200
        (mission, f"{step}/visa-requested", {}, at),  # refused by the ledger: the journey is past it (409)
        (mofa, f"{step}/visa-issued", {}, {**at, "valid_until": (T0 + timedelta(days=90)).isoformat()}),
        (mission, f"/v1/journeys/{uuid4()}/visa-requested", {}, at),  # no such journey (404)
        (keys["moh"], f"{step}/hospital-discharged", {}, {**at, "facility": "KFH"}),  # never admitted (409)
        # A target as the route's declaration takes it: any form of the uuid, a season's number.
        (mission, f"/v1/journeys/{journey.upper()}/visa-requested", {}, at),  # past it (409)
        (keys["ministry"], "/v1/seasons/1500/begin-closing", {}, at),  # no such season (404)
    ]  # fmt: skip
    odd: list[tuple[str, str, dict[str, str], Any]] = [
        (mission, f"{step}/visa-requested", {}, {**at, "colour": "red"}),
        (mission, f"{step}/visa-requested", {}, {**at, "event": "VisaRequested"}),
        (mission, f"{step}/visa-requested", {}, {**at, "journey_id": journey}),
        (mission, f"{step}/visa-requested?x=1", {}, at),
        (mofa, f"{step}/visa-requested", {}, at),  # not the mission's step: 403
        (mission, "/v1/journeys/not-a-uuid/visa-requested", {}, at),
        (keys["ministry"], "/v1/seasons/0/begin-closing", {}, at),  # not a Hijri year
        (mission, f"{step}/visa-requested", {}, b"{not json"),
        (mission, f"{step}/visa-requested", {}, b"[1, 2]"),
        (mission, f"{step}/visa-requested", {"Idempotency-Key": "k" * 201}, at),
        (mission, f"{step}/visa-requested", {}, {"occurred_at": 1700000000}),
        (mission, "/v1/journeys", {}, registration(pilgrim_id="nope")),
        (mission, f"{step}/no-such-step", {}, at),
    ]  # fmt: skip
    return valid + odd


def _same(answer: Any) -> Any:
    """What must be the same for the same request on two fresh journeys: all but the ids and positions."""
    if not isinstance(answer, dict):
        return answer
    return {k: _same(v) for k, v in answer.items() if k not in ("aggregate_id", "command_id", "position", "detail")}


def test_the_hot_step_answers_as_the_documented_routes(
    client: TestClient, keys_and_url: tuple[dict[str, str], str]
) -> None:
    keys = keys_and_url[0]
    mission = {"Authorization": f"Bearer {keys['mission']}"}
    hot: HotWrites = client.app.state.hot_writes  # type: ignore[attr-defined]
    handed_on: list[str] = []
    for route, _ in hot.routes.values():  # count what goes on to the documented routes
        handle = route.handle

        async def counted(scope: Any, receive: Any, send: Any, handle: Any = handle) -> None:
            handed_on.append(scope["path"])
            await handle(scope, receive, send)

        route.handle = counted  # type: ignore[method-assign]

    market = open_market(client.app.state.services.ledger, 10, mission=EGY)  # type: ignore[attr-defined]

    def answers() -> list[tuple[int, str, Any, bool]]:
        journey = client.post("/v1/journeys", json=registration(), headers=mission).json()["aggregate_id"]
        contract = {"occurred_at": T0.isoformat(), "contract_id": str(market.contract_id), "package_id": "P"}
        assert client.post(f"/v1/journeys/{journey}/package-contracted", json=contract, headers=mission).is_success
        found = []
        for key, path, headers, content in _write_requests(keys, journey):
            before = len(handed_on)
            raw = content if isinstance(content, bytes) else orjson.dumps(content)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers}
            answer = client.post(path, content=raw, headers=headers)
            parsed = answer.json() if answer.headers["content-type"].endswith("json") else answer.text
            found.append((answer.status_code, answer.headers["content-type"], _same(parsed), len(handed_on) > before))
        return found

    answers()  # every key is in the cache from here on
    with_hot = answers()
    valid = 9
    assert [a[0] for a in with_hot[:valid]] == [201, 201, 200, 409, 201, 404, 409, 409, 404], with_hot[:valid]
    assert not any(a[3] for a in with_hot[:valid])  # answered by the hot route itself
    assert all(a[3] for a in with_hot[valid:-1])  # the odd ones are handed on (the last matches no step at all)
    assert all(a[0] < 500 for a in with_hot)

    client.app.state.hot_writes = None  # type: ignore[attr-defined]
    without = answers()
    for number, (one, other) in enumerate(zip(with_hot, without, strict=True)):
        assert one[:3] == other[:3], number


def _batch_requests(keys: dict[str, str]) -> list[tuple[str, str, dict[str, str], bytes | Any]]:
    """(key, path, extra headers, body) of plainly valid batches first (with a refused and a malformed command in
    one), then odd ones; fresh pilgrims and keys each time."""
    mission, path = keys["mission"], "/v1/commands:batch"
    once = {"Idempotency-Key": str(uuid4())}
    commands = [registration_command(), registration_command(), registration_command(country="PAK")]
    keyed = {"event": "Registered", **registration()}  # its command id from the Idempotency-Key
    valid: list[tuple[str, str, dict[str, str], Any]] = [
        (mission, path, {}, {"commands": [*commands, {"event": "Registered"}]}),  # 201, 201, 403, 422 within
        (mission, path, once, {"commands": [keyed]}),
        (mission, path, once, {"commands": [keyed]}),  # the same key: answered as before (200)
        (keys["mofa"], path, {}, {"commands": [registration_command()]}),  # not its step: 403 within
    ]
    odd: list[tuple[str, str, dict[str, str], Any]] = [
        (mission, path, {}, {"commands": []}),
        (mission, path, {}, {"commands": [registration_command()], "colour": "red"}),
        (mission, path, {}, {"commands": [registration_command()] * 1001}),
        (mission, path, {}, {"commands": {"event": "Registered"}}),
        (mission, path, {}, b"{not json"),
        (mission, path, {}, b"[1, 2]"),
        (mission, f"{path}?x=1", {}, {"commands": [registration_command()]}),
        (mission, path, {"Idempotency-Key": "k" * 201}, {"commands": [registration_command()]}),
        (keys["auditor"], path, {}, {"commands": [registration_command()]}),  # a role that records nothing: 403
    ]
    return valid + odd


def _same_anywhere(answer: Any) -> Any:
    """`_same`, into lists too (a batch's results)."""
    if isinstance(answer, list):
        return [_same_anywhere(a) for a in answer]
    if isinstance(answer, dict):
        return {k: _same_anywhere(v) for k, v in _same(answer).items()}
    return answer


def test_the_hot_batch_answers_as_the_documented_route(
    client: TestClient, keys_and_url: tuple[dict[str, str], str]
) -> None:
    keys = keys_and_url[0]
    hot: HotWrites = client.app.state.hot_writes  # type: ignore[attr-defined]
    handed_on: list[str] = []
    handle = hot.batch.handle

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope["path"])
        await handle(scope, receive, send)

    hot.batch.handle = counted  # type: ignore[method-assign]

    def answers() -> list[tuple[int, str, Any, bool]]:
        found = []
        for key, path, headers, content in _batch_requests(keys):
            before = len(handed_on)
            raw = content if isinstance(content, bytes) else orjson.dumps(content)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers}
            answer = client.post(path, content=raw, headers=headers)
            parsed = answer.json() if answer.headers["content-type"].endswith("json") else answer.text
            found.append((answer.status_code, answer.headers["content-type"], _same_anywhere(parsed),
                          len(handed_on) > before))  # fmt: skip
        return found

    answers()  # every key is in the cache from here on
    with_hot = answers()
    valid = 4
    assert [a[0] for a in with_hot[:valid]] == [200, 200, 200, 200], with_hot[:valid]
    assert [r["status"] for r in with_hot[0][2]["results"]] == [201, 201, 403, 422]
    assert [r["status"] for r in with_hot[2][2]["results"]] == [200]
    assert [r["status"] for r in with_hot[3][2]["results"]] == [403]
    assert not any(a[3] for a in with_hot[:valid])  # answered by the hot route itself
    assert all(a[3] for a in with_hot[valid:])  # the odd ones are handed on
    assert all(a[0] < 500 for a in with_hot)

    client.app.state.hot_writes = None  # type: ignore[attr-defined]
    without = answers()
    for number, (one, other) in enumerate(zip(with_hot, without, strict=True)):
        assert one[:3] == other[:3], number


def test_a_header_given_twice_is_read_as_the_documented_routes_read_it(
    client: TestClient, keys_and_url: tuple[dict[str, str], str]
) -> None:
    """Two Idempotency-Key headers: the documented routes take the first (Starlette's headers), so the hot ones must
    too, or the same request stands for another command id depending on which route answers it."""
    plain = [("Authorization", f"Bearer {keys_and_url[0]['mission']}"), ("Content-Type", "application/json")]
    hot_writes = client.app.state.hot_writes  # type: ignore[attr-defined]
    assert client.post("/v1/journeys", json=registration(), headers=plain).status_code == 201  # the key in the cache
    for path, body in (("/v1/commands:batch", {"commands": [{"event": "Registered", **registration()}]}),
                       ("/v1/journeys", registration())):  # fmt: skip
        first, second = ("Idempotency-Key", str(uuid4())), ("Idempotency-Key", str(uuid4()))
        hot = client.post(path, content=orjson.dumps(body), headers=[*plain, first, second])
        assert hot.status_code in (200, 201), hot.text
        client.app.state.hot_writes = None  # type: ignore[attr-defined]
        again = client.post(path, content=orjson.dumps(body), headers=[*plain, first]).json()
        client.app.state.hot_writes = hot_writes  # type: ignore[attr-defined]
        # The first header's key: the command recorded above, answered again.
        assert (again["results"][0]["outcome"] if "results" in again else again)["repeated"], again


def test_a_key_is_read_alike_however_its_scheme_is_spelt(
    client: TestClient, keys_and_url: tuple[dict[str, str], str]
) -> None:
    """`Authorization` as FastAPI's HTTPBearer reads it for the documented routes (the scheme in any case, the key
    trimmed): the hot routes take the same key from it, and answer as the documented routes do."""
    key = keys_and_url[0]["mission"]
    path = "/v1/views/journey_status"
    spellings = [f"Bearer {key}", f"bearer {key}", f"BEARER  {key}", f"Bearer {key} ", f"Basic {key}", "Bearer "]
    client.get(path, headers={"Authorization": f"Bearer {key}"})  # the key in the cache
    hot_reads = client.app.state.hot_reads  # type: ignore[attr-defined]
    with_hot = [client.get(path, headers={"Authorization": given}) for given in spellings]
    client.app.state.hot_reads = None  # type: ignore[attr-defined]
    without = [client.get(path, headers={"Authorization": given}) for given in spellings]
    client.app.state.hot_reads = hot_reads  # type: ignore[attr-defined]
    assert [a.status_code for a in with_hot] == [200, 200, 200, 200, 401, 401]
    assert [(a.status_code, a.json()) for a in with_hot] == [(a.status_code, a.json()) for a in without]
