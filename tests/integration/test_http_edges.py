"""The HTTP edges on SQLite and PostgreSQL: query values outside their column, refusals that store nothing (chunked
bodies cut anywhere), the caller checked before a repeat is answered, `Allow` on 405s, and docs served offline."""

from __future__ import annotations

import base64
import itertools
import re
import socket
import threading
import time
from datetime import timedelta
from typing import Any
from uuid import uuid4

import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from hajj_ledger.api import agencies, recording
from hajj_ledger.api.app import create_app
from hajj_ledger.api.problems import MAX_BODY
from hajj_ledger.api.routes.views import FILTERABLE
from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.framework import AT_LEAST
from hajj_ledger.projections.schema import engine_for
from tests.integration.test_api import COMPANY_1, EGY, PAK, Api, api, is_problem  # noqa: F401 (the fixture)
from tests.support import T0, registration, season_opened


@pytest.fixture
def http(api: Api) -> Api:  # noqa: F811 (the imported fixture)
    return api


# 1. Query values: every filter of every view, and the cursor, checked against the column before any SQL.


@pytest.mark.parametrize(
    ("view", "name", "value"),
    [
        ("journey_status", "country", "\x00"),
        ("journey_status", "country", "EG\x00"),
        ("journey_status", "season", "2147483648"),
        ("journey_status", "season", "-2147483649"),
        ("port_arrivals", "booked", "2147483648"),
        ("journey_status", "country", "EGYPT"),  # longer than the column holds
    ],
)
def test_a_filter_its_column_cannot_hold_is_422_naming_it(http: Api, view: str, name: str, value: str) -> None:
    body = is_problem(http.get("ministry", f"/v1/views/{view}", **{name: value}), 422)
    assert [e["path"] for e in body["errors"]] == [f"query.{name}"], body
    assert body["errors"][0]["reason"], body


def test_the_edges_of_a_column_are_accepted(http: Api) -> None:
    for season in ("1", "9999"):  # a Hijri year, as every season parameter takes it
        assert http.get("ministry", "/v1/views/journey_status", season=season).status_code == 200
    for capacity in ("2147483647", "-2147483648", "0"):
        assert http.get("ministry", "/v1/views/trip_manifest", capacity=capacity).status_code == 200
    assert http.get("ministry", "/v1/views/journey_status", country="EGY").status_code == 200
    assert http.get("ministry", "/v1/views/journey_status", country="مصر").status_code == 200


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("view", "values", "extra"),
    [
        ("site_headcount", ["1446", "company\x00", "MINA", "B1"], {}),  # a text key, on the hot path
        ("site_headcount", ["1446", "company\x00", "MINA", "B1"], {"site": "MINA"}),  # and through the documented route
        ("port_arrivals", ["1446", "JED-HAJJ", "SV\x00", "2025-05-01"], {}),
        ("port_arrivals", ["1446", "JED-HAJJ", "SV123", "99999-01-01"], {"port": "JED-HAJJ"}),
        ("port_arrivals", ["1446", "JED-HAJJ", "SV123456789", "2025-05-01"], {}),  # longer than the column
        ("port_arrivals", ["1446", "JED", "SV123", "2025-05-01"], {}),  # not a port
        ("port_arrivals", ["2147483648", "JED-HAJJ", "SV123", "2025-05-01"], {}),  # beyond the column
        ("journey_status", ["not-a-uuid"], {"stage": "registered"}),
    ],
)
def test_a_cursor_outside_its_columns_is_422(http: Api, view: str, values: list[Any], extra: dict[str, Any]) -> None:
    params = {"cursor": _cursor(values), **extra}
    body = is_problem(http.get("ministry", f"/v1/views/{view}", **params), 422)
    assert body["errors"][0]["path"] == "query.cursor", body


EDGES = [
    "", " ", "\x00", "a\x00b", "\x00" * 3, "مكة", "٣", "😀", "\u202e", "null", "true", "-0", "0", "-1", "1.5", "1e3",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", str(10**40), "2025-05-01", "0001-01-01", "9999-12-31", "2025-05-01T08:00:00Z",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", str(uuid4()), "a" * 5000,
]  # fmt: skip
FILTERS = [
    (p.name, c.name)
    for p in PROJECTIONS
    for c in p.models[0].view().c
    if c.type.python_type in FILTERABLE and c.name != "position"
] + [
    (p.name, name)
    for p in PROJECTIONS
    for name in (*(f"{AT_LEAST}{c}" for c in p.models[0].at_least), *p.models[0].read_columns())
]
VALUES = st.one_of(st.sampled_from(EDGES), st.text(max_size=40), st.integers().map(str))


@given(target=st.sampled_from(FILTERS), value=VALUES, as_cursor=st.booleans())
@example(target=("journey_status", "country"), value="\x00", as_cursor=False)
@example(target=("port_arrivals", "booked"), value="2147483648", as_cursor=False)
@example(target=("site_headcount", "company_id"), value="\x00", as_cursor=True)
@example(target=("trips_on_road", "overdue"), value="2", as_cursor=False)
@example(target=("service_offers", "min_free"), value="2147483648", as_cursor=False)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_filter_value_makes_a_5xx(http: Api, target: tuple[str, str], value: str, as_cursor: bool) -> None:
    view, column = target
    if as_cursor:  # every key column given the same edge value
        model = next(p for p in PROJECTIONS if p.name == view).models[0]
        params = {"cursor": _cursor([value] * len(model.key))}
    else:
        params = {column: value}
    answer = http.get("ministry", f"/v1/views/{view}", **params)
    assert answer.status_code in (200, 422), (params, answer.status_code, answer.text[:300])
    if answer.status_code == 422:
        assert answer.json()["errors"][0]["path"] in (f"query.{column}", "query.cursor"), answer.text


# 2. Refusals store nothing.


def _visa_requested(http: Api) -> str:
    journey_id = str(http.register())
    assert http.contract(journey_id, COMPANY_1).status_code == 201  # type: ignore[arg-type]
    requested = http.post("mission", f"/v1/journeys/{journey_id}/visa-requested", {"occurred_at": T0.isoformat()})
    assert requested.status_code == 201, requested.text
    return journey_id


def test_every_refusal_stores_nothing(http: Api) -> None:
    journey_id = _visa_requested(http)
    visa = {"occurred_at": T0.isoformat(), "valid_until": (T0 + timedelta(days=60)).isoformat()}
    visa_path = f"/v1/journeys/{journey_id}/visa-issued"
    json_type = {"Content-Type": "application/json"}
    position = http.head()
    refusals = {
        401: http.client.post("/v1/journeys", json=registration()),
        403: http.post("naqaba", visa_path, visa),
        404: http.post("mofa", f"/v1/journeys/{uuid4()}/visa-issued", visa),
        409: http.post("mission", f"/v1/journeys/{journey_id}/visa-requested", {"occurred_at": T0.isoformat()}),
        413: http.client.post(
            "/v1/journeys", headers={**http.auth("mission"), **json_type, "Content-Length": str(MAX_BODY + 1)},
            content=orjson.dumps(registration()).ljust(MAX_BODY + 1),
        ),
        415: http.client.post(
            visa_path, headers={**http.auth("mofa"), "Content-Type": "text/plain"}, content=orjson.dumps(visa)
        ),
        422: http.post("mofa", visa_path, {**visa, "valid_until": "soon"}),
    }  # fmt: skip
    for status, answer in refusals.items():
        is_problem(answer, status)
    assert http.head() == position
    assert http.post("mofa", visa_path, visa).status_code == 201  # and the same command, allowed, is stored


def _post_chunked(http: Api, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """A POST straight to the app, its body in these messages as a server passes a chunked body on (the test client
    joins a body into one message)."""
    headers = {**http.auth("mission"), "content-type": "application/json", "transfer-encoding": "chunked"}
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "state": {},
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    answer: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        answer.append(message)

    http.client.portal.call(http.app, scope, receive, send)  # type: ignore[union-attr]
    status = next(m["status"] for m in answer if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)]


@pytest.mark.parametrize("path", ["/v1/journeys", "/v1/commands:batch"])
def test_a_chunked_body_past_the_limit_stores_nothing_wherever_it_is_cut(http: Api, path: str) -> None:
    """A valid command then whitespace (valid JSON still) past 2 MiB, sent without a length, cut at every boundary
    that matters: inside the command, right after it, around the limit; none of it reaches the app."""
    position = http.head()

    def command() -> bytes:
        one = registration()
        return orjson.dumps(one if path == "/v1/journeys" else {"commands": [{"event": "Registered", **one}]})

    for size in (MAX_BODY + 1, MAX_BODY * 2):
        short = len(command())
        cutting = [[1], [short - 1], [short], [short + 1], [MAX_BODY - 1], [MAX_BODY], [MAX_BODY + 1],
                   [short, MAX_BODY], list(range(short, size, 65536))]  # fmt: skip
        for cuts in cutting:
            status, body = _post_chunked(http, path, _cut(command().ljust(size), cuts))
            assert status == 413, (size, cuts, status, body[:300])
            assert orjson.loads(body)["status"] == 413
            assert http.head() == position, (size, cuts)
    # Up to the limit exactly, the same is recorded.
    status, body = _post_chunked(http, path, _cut(command().ljust(MAX_BODY), [short, MAX_BODY // 2]))
    assert status in (200, 201) and http.head() > position, body[:300]


def test_a_chunked_body_past_the_limit_through_a_real_server_stores_nothing(store_url: str) -> None:
    """The same through uvicorn, which hands the app each chunk as it arrives."""
    engine = engine_for(store_url)
    upgrade(engine)
    with engine.begin() as connection:
        _, key = agencies.add(connection, Role.MISSION, "the mission", EGY)
    engine.dispose()
    season_opened(store_url)
    server = uvicorn.Server(uvicorn.Config(create_app(store_url), host="127.0.0.1", port=0, log_level="warning"))
    running = threading.Thread(target=server.run)
    running.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        command = orjson.dumps(registration())
        for body in (command.ljust(MAX_BODY + 1), command.ljust(MAX_BODY)):
            chunks = [body[: len(command)], *(body[i : i + 65536] for i in range(len(command), len(body), 65536))]
            status = _send_chunked(port, key, chunks)
            assert status == (413 if len(body) > MAX_BODY else 201), (len(body), status)
            ledger = JourneyLedger(store_url, create_tables=False)
            try:
                assert ledger.head() == (1 if len(body) > MAX_BODY else 2)  # after the season's opening
            finally:
                ledger.close()
    finally:
        server.should_exit = True
        running.join()


def _send_chunked(port: int, key: str, chunks: list[bytes]) -> int:
    head = (
        "POST /v1/journeys HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(head.encode())
            for chunk in chunks:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the body's end, and closed
        answer = connection.makefile("rb").readline()
    return int(answer.split()[1])


# 3. The caller first: role, then scope, before a repeat is answered; a receipt answers its own agency only.


def test_a_batch_checks_the_role_before_answering_a_repeat(http: Api) -> None:
    journey_id = _visa_requested(http)
    visa = {
        "event": "VisaIssued", "journey_id": journey_id, "occurred_at": T0.isoformat(),
        "valid_until": (T0 + timedelta(days=60)).isoformat(), "command_id": str(uuid4()),
    }  # fmt: skip
    first = http.post("mofa", "/v1/commands:batch", {"commands": [visa]})
    assert first.json()["results"][0]["status"] == 201, first.text
    position = http.head()
    replayed = http.post("naqaba", "/v1/commands:batch", {"commands": [visa]})
    [result] = replayed.json()["results"]
    assert result["status"] == 403 and result["outcome"] is None, result
    assert result["problem"]["role"] == "naqaba", result
    mine = http.post("mofa", "/v1/commands:batch", {"commands": [visa]})
    assert mine.json()["results"][0]["status"] == 200, mine.text  # the recorder still has its repeat
    assert http.head() == position


@pytest.mark.parametrize("through", ["single", "batch"])
def test_another_mission_replaying_a_command_is_refused_as_any_command_of_it(http: Api, through: str) -> None:
    journey_id = http.register()
    contract = {
        "occurred_at": T0.isoformat(), "contract_id": str(http.market()), "package_id": "PKG-1",
        "command_id": str(uuid4()),
    }  # fmt: skip
    path = f"/v1/journeys/{journey_id}/package-contracted"
    assert http.post("mission", path, contract).status_code == 201
    position = http.head()
    if through == "single":
        body = is_problem(http.post(PAK, path, contract), 403)
        leaked = "aggregate_id" in body or "position" in body
    else:
        batch = {"commands": [{"event": "PackageContracted", "journey_id": str(journey_id), **contract}]}
        [result] = http.post(PAK, "/v1/commands:batch", batch).json()["results"]
        assert result["status"] == 403 and result["outcome"] is None, result
        body, leaked = result["problem"], False
    assert "another mission" in body["detail"] and not leaked, body
    # a different body under the same command id: still the scope first, not "the id was used"
    other = {**contract, "package_id": "PKG-2"}
    is_problem(http.post(PAK, path, other), 403)
    assert http.post("mission", path, contract).status_code == 200  # the recorder's repeat
    assert http.head() == position


def test_a_receipt_answers_only_the_agency_that_recorded_it(http: Api) -> None:
    """Two agencies of one unscoped role: the second may record the step, but not claim the first's command."""
    engine = engine_for(http.url)
    with engine.begin() as connection:
        _, second_mofa = agencies.add(connection, Role.MOFA, "a second foreign ministry", None)
    engine.dispose()
    journey_id = _visa_requested(http)
    visa = {
        "occurred_at": T0.isoformat(), "valid_until": (T0 + timedelta(days=60)).isoformat(),
        "command_id": str(uuid4()),
    }  # fmt: skip
    path = f"/v1/journeys/{journey_id}/visa-issued"
    assert http.post("mofa", path, visa).status_code == 201
    position = http.head()
    answer = http.client.post(path, headers={"Authorization": f"Bearer {second_mofa}"}, json=visa)
    body = is_problem(answer, 409)
    assert "another agency" in body["detail"] and "position" not in body, body
    assert http.head() == position


# 4. A 405 says which methods the path takes.


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/journeys", {"POST"}),
        ("PUT", "/v1/views/journey_status", {"GET"}),
        ("POST", "/v1/journeys/00000000-0000-4000-8000-000000000001", {"GET"}),  # the same id in every worker
        ("GET", "/v1/commands:batch", {"POST"}),
        ("DELETE", "/healthz", {"GET"}),
        ("DELETE", "/v1/audit/checkpoints", {"GET", "POST"}),
    ],
)
def test_a_405_names_the_methods_the_path_takes(http: Api, method: str, path: str, allowed: set[str]) -> None:
    answer = http.client.request(method, path, headers=http.auth("ministry"))
    is_problem(answer, 405)
    assert set(re.split(r",\s*", answer.headers["allow"])) - {"HEAD"} == allowed, answer.headers


# 10. The docs are served from the package: no page or asset names an outside address.

ADDRESS = re.compile(rb"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def test_the_docs_and_their_assets_come_from_the_server(http: Api) -> None:
    seen: dict[str, bytes] = {}
    waiting = ["/docs", "/redoc"]
    while waiting:
        path = waiting.pop()
        answer = http.client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        seen[path] = answer.content
        if path.endswith(".js"):
            continue  # a script names no assets of its own to load (the libraries' pages say what they load)
        for match in ADDRESS.finditer(answer.content):
            address = (match.group(1) or match.group(2)).decode()
            if address.startswith(("data:", "#", "blob:")):
                continue
            assert not re.match(r"(https?:)?//", address), (path, address)
            if address not in seen and address.startswith("/"):
                waiting.append(address)
    pages = [seen["/docs"], seen["/redoc"]]
    assert not any(re.search(rb"https?://", page) for page in pages), pages
    assert len(seen) >= 5, sorted(seen)  # the two pages, the bundles, the style sheet
    # the libraries' own outside calls are switched off: the validator badge and the Redocly logo
    assert b"validatorUrl" in seen["/docs"]
    assert all(b"cdn.redoc.ly" not in body for body in seen.values())


# 6. A batch answered within its bound, as a single command is (past it, the server's shutdown grace cut it off).


def test_a_batch_the_ledger_is_slow_to_record_is_answered_503_outcome_unknown_and_settled_by_its_command_ids(
    http: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "WRITE_ANSWER_SECONDS", 0.3)
    ledger: JourneyLedger = http.app.state.services.ledger
    real, done = ledger.record_batch, threading.Event()

    def slow(commands: Any) -> Any:
        time.sleep(1.0)
        try:
            return real(commands)
        finally:
            done.set()

    monkeypatch.setattr(ledger, "record_batch", slow)
    head = http.head()
    commands = [{"event": "Registered", "command_id": str(uuid4()), **registration()} for _ in range(2)]
    answer = http.post("mission", "/v1/commands:batch", {"commands": commands})
    problem = is_problem(answer, 503)
    assert problem["type"].endswith("/outcome-unknown") and answer.headers["retry-after"] == "1", problem
    assert problem["command_ids"] == [c["command_id"] for c in commands]
    assert done.wait(10)  # the batch, under way, ended by itself: recorded
    monkeypatch.setattr(ledger, "record_batch", real)
    again = http.post("mission", "/v1/commands:batch", {"commands": commands})
    assert [r["status"] for r in again.json()["results"]] == [200, 200], again.text  # repeats: recorded once
    assert http.head() == head + 2


def test_a_batch_that_never_reached_the_ledger_in_time_is_answered_503_and_never_recorded(
    http: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "WRITE_ANSWER_SECONDS", 0.3)
    parse, batch, ended = parse_command, recording.record_batch, threading.Event()
    ledger: JourneyLedger = http.app.state.services.ledger
    asked: list[Any] = []
    monkeypatch.setattr(ledger, "record_batch", asked.append)

    def slow(data: dict[str, Any]) -> Any:
        time.sleep(1.0)
        return parse(data)

    def ending(*args: Any) -> Any:
        try:
            return batch(*args)
        finally:
            ended.set()

    monkeypatch.setattr(recording, "parse_command", slow)
    monkeypatch.setattr(recording, "record_batch", ending)
    head = http.head()
    answer = http.post("mission", "/v1/commands:batch", {"commands": [{"event": "Registered", **registration()}]})
    problem = is_problem(answer, 503)
    assert problem["type"].endswith("/unavailable") and "nothing was recorded" in problem["detail"], problem
    assert ended.wait(10)  # the thread, told it was given up, asked the ledger nothing
    assert asked == [] and http.head() == head
