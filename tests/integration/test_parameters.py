"""Every parameter of every operation, on SQLite and PostgreSQL with a season stored: each operation of the app's own
OpenAPI document, called by a role it serves, with each of its query, path and header parameters given NUL, huge,
negative and empty values, answers no 5xx and stores nothing; and the views as of a past position take the filters
of the serving ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from hajj_ledger.domain.commands import Command
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.runner import Runner
from hajj_ledger.simulation.season import simulate
from tests.integration.test_api import Api, api, is_problem, operations  # noqa: F401 (the fixture)
from tests.support import TestClient

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
def season(api: Api) -> tuple[Api, dict[str, Command]]:  # noqa: F811 (the imported fixture)
    """A small simulated season, its views and the trail's index caught up; and a command of each event it made,
    as recorded (a body each step's endpoint takes)."""
    ledger = JourneyLedger(api.url)
    made: dict[str, Command] = {}
    record_batch = ledger.record_batch

    def recording(commands: list[Any], *args: Any, **kwargs: Any) -> Any:
        for command, _ in commands:
            made.setdefault(command.event, command)
        return record_batch(commands, *args, **kwargs)

    ledger.record_batch = recording  # type: ignore[method-assign,assignment]
    try:
        simulate(ledger, 8, 1446, seed=3)
    finally:
        ledger.close()
    runner = Runner(FOLLOWED, api.url)  # the trail's index too: a filtered trail is read through it
    try:
        runner.run(once=True)
    finally:
        runner.close()
    return api, made


async def _no_stream(*args: Any) -> AsyncIterator[bytes]:
    """The feed's stream, ended at once: the test client waits for a response's end, and a stream has none."""
    return
    yield b""


def test_no_parameter_value_makes_a_5xx_or_stores_anything(
    season: tuple[Api, dict[str, Command]], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, made = season
    monkeypatch.setattr(http.app.state.services.feed, "stream", _no_stream)
    journey_id = http.get("ministry", "/v1/views/journey_status", limit=1).json()["items"][0]["journey_id"]
    client = TestClient(http.app, raise_server_exceptions=False)  # every 5xx found, not the first raised
    head = http.head()
    wrong: list[str] = []
    tried = 0
    for method, template, operation in operations(http.app):
        parameters = operation.get("parameters", [])
        body = _body(operation, made)
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
        return journey_id if parameter["name"] == "journey_id" else str(uuid4())
    return GOOD[parameter["name"]]


def _body(operation: dict[str, Any], made: dict[str, Command]) -> dict[str, Any] | None:
    """A body the operation takes, where the season made a command of its event: recorded already (its command id
    with it), so that nothing is stored again; else an empty one (the parameters are checked all the same, but the
    request stops there)."""
    if "requestBody" not in operation:
        return None
    schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    event = schema.removeprefix("#/components/schemas/").removesuffix("Create")
    if event == "Batch":  # every command of the season again
        return {"commands": [c.model_dump(mode="json") for c in made.values()]}
    command = made.get(event)
    if command is None:
        return {}
    return command.model_dump(mode="json", exclude={"event", command.target})


def test_the_views_as_of_a_position_take_the_filters_of_the_serving_ones(
    season: tuple[Api, dict[str, Command]],
) -> None:
    http, _ = season
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
