"""Every parameter of every operation, on SQLite and PostgreSQL with a season stored: each operation of the app's own
OpenAPI document, called by a role it serves, with each of its query, path and header parameters given NUL, huge,
negative and empty values, answers no 5xx and stores nothing; and the views as of a past position take the filters
of the serving ones."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.runner import Runner
from hajj_ledger.simulation.season import simulate
from tests.integration.test_api import Api, api, is_problem, operations  # noqa: F401 (the fixture)
from tests.support import T0, TestClient, registration

BAD = {
    "NUL": "a\x00b",
    "huge text": "9" * 60_000,  # about the most a request's URL or head holds (64 KiB: httpx's limit, and h11's)
    "huge number": str(10**30),
    "greatest": str(2**63 - 1),
    "negative": "-1",
    "empty": "",
}
# What a required parameter is given while another one is tried (a path's id: a journey of the season).
GOOD = {"number": "AB1234567", "country": "EGY", "name": "Ahmad", "position": "1"}


@pytest.fixture
def season(api: Api) -> Api:  # noqa: F811 (the imported fixture)
    """A small simulated season, its views and the trail's index caught up."""
    ledger = JourneyLedger(api.url)
    try:
        simulate(ledger, 8, 1446, seed=3)
    finally:
        ledger.close()
    runner = Runner(FOLLOWED, api.url)  # the trail's index too: a filtered trail is read through it
    try:
        runner.run(once=True)
    finally:
        runner.close()
    return api


async def _no_stream(*args: Any) -> AsyncIterator[bytes]:
    """The feed's stream, ended at once: the test client waits for a response's end, and a stream has none."""
    return
    yield b""


def test_no_parameter_value_makes_a_5xx_or_stores_anything(season: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    http = season
    monkeypatch.setattr(http.app.state.services.feed, "stream", _no_stream)
    journey_id = http.get("ministry", "/v1/views/journey_status", limit=1).json()["items"][0]["journey_id"]
    used = http.get("auditor", "/v1/audit/events", limit=1).json()["items"][0]["command_id"]
    schemas = http.app.openapi()["components"]["schemas"]
    client = TestClient(http.app, raise_server_exceptions=False)  # every 5xx found, not the first raised
    head = http.head()
    wrong: list[str] = []
    tried = 0
    for method, template, operation in operations(http.app):
        parameters = operation.get("parameters", [])
        body = _body(operation, schemas, used)
        for parameter in parameters:
            for label, value in BAD.items():
                path, query, headers = template, {}, http.auth(operation["x-roles"][0])
                for other in parameters:
                    given = value if other is parameter else _good(other, journey_id)
                    if given is None:
                        continue
                    if other["in"] == "path":
                        path = path.replace("{" + other["name"] + "}", quote(given, safe=""))
                    elif other["in"] == "query":
                        query[other["name"]] = given
                    else:
                        headers[other["name"]] = given
                answer = client.request(method.upper(), path, params=query, headers=headers, json=body)
                tried += 1
                if answer.status_code >= 500:
                    wrong.append(f"{method.upper()} {template} {parameter['name']}={label}: {answer.text[:300]}")
    assert tried > 500
    assert not wrong, "\n".join(wrong)
    assert http.head() == head  # nothing stored


def _good(parameter: dict[str, Any], journey_id: str) -> str | None:
    """A value the parameter takes: its own if required, else none."""
    if not parameter.get("required"):
        return None
    if parameter["in"] == "path":
        # A season's path takes its year: a uuid there was refused before any other parameter reached the handler.
        return {"journey_id": journey_id, "season": "1446"}.get(parameter["name"], str(uuid4()))
    return GOOD[parameter["name"]]


def _body(operation: dict[str, Any], schemas: dict[str, Any], used: str) -> dict[str, Any] | None:
    """A body the operation takes, with the id of a command recorded already: a step is then refused or repeated,
    never stored again, whatever its parameters."""
    if "requestBody" not in operation:
        return None
    body: dict[str, Any] = _example(operation["requestBody"]["content"]["application/json"]["schema"], schemas)
    if "commands" in body:  # a batch: of one registration
        registration = _example({"$ref": "RegisteredCreate"}, schemas)
        return {"commands": [{**registration, "event": "Registered", "command_id": used}]}
    return {**body, "command_id": used}


# Text: the first the field's pattern takes.
EXAMPLES = ("x", "X1", "EGY", "SV123", "AB1234567", "file:///archive", "0" * 64)


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A value the schema takes: an object's required fields only."""
    if "$ref" in schema:
        return _example(schemas[schema["$ref"].split("/")[-1]], schemas)
    if "enum" in schema or "anyOf" in schema:
        return schema["enum"][0] if "enum" in schema else _example(schema["anyOf"][0], schemas)
    match schema.get("type"), schema.get("format"):
        case "object", _:
            required = schema.get("required", ())
            return {k: _example(v, schemas) for k, v in schema.get("properties", {}).items() if k in required}
        case "string", "date-time":
            return T0.isoformat()
        case "string", "date":
            return "1980-01-01"
        case "string", "uuid":
            return str(uuid4())
        case "string", _:
            return next(e for e in EXAMPLES if re.fullmatch(schema.get("pattern", ".*"), e))
        case "integer" | "number", _:
            return schema.get("minimum", 1)
        case "boolean", _:
            return False
    return []


def test_a_header_is_refused_alike_before_fastapi_and_through_it(api: Api) -> None:  # noqa: F811 (the fixture)
    """A plainly valid step is recorded before FastAPI (api/hot.py): an Idempotency-Key it refuses there goes on to
    the documented route, which refuses it naming the header, and nothing is stored."""
    head = api.head()
    assert api.register() and api.head() == head + 1  # the mission's key in the cache: the next may go before FastAPI
    for key in ("a\x00b", "k" * 201, ""):
        answer = api.post("mission", "/v1/journeys", registration(), **{"Idempotency-Key": key})
        assert [e["path"] for e in is_problem(answer, 422)["errors"]] == ["header.idempotency-key"], key
    assert api.head() == head + 1


def test_the_views_as_of_a_position_take_the_filters_of_the_serving_ones(season: Api) -> None:
    http = season
    head = http.head()
    journeys = http.get("ministry", "/v1/views/journey_status", limit=1000).json()["items"]
    for name, filters in (
        ("journey_status", {"country": journeys[0]["country"], "stage": journeys[0]["stage"]}),
        ("journey_status", {"mission_id": journeys[0]["mission_id"]}),
        ("season_funnel", {"season": 1446, "stage": "arrived"}),
    ):
        now = http.get("ministry", f"/v1/views/{name}", limit=1000, **filters).json()["items"]
        assert now and len(now) < len(http.get("ministry", f"/v1/views/{name}", limit=1000).json()["items"])
        assert _pages(http, f"/v1/audit/views/{name}", position=head, **filters) == now, (name, filters)
    for params, field in (
        ({"season": "1446x"}, "query.season"),
        ({"season": str(2**31)}, "query.season"),
        ({"stage": "flying"}, "query.stage"),
        ({"country": "EG\x00"}, "query.country"),
        ({"country": "EGYPT"}, "query.country"),
        ({"day": "1446"}, "query.day"),
    ):
        body = is_problem(http.get("auditor", "/v1/audit/views/season_funnel", position=head, **params), 422)
        assert [e["path"] for e in body["errors"]] == [field], body
    is_problem(http.get("auditor", "/v1/audit/views/journey_status", position=head, stage="flying"), 422)


def _pages(http: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a view, a page of two at a time."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = http.get("auditor", path, limit=2, **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items
