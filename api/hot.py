"""The hottest requests, a journey's status, a view's pages and a single step, answered before FastAPI (its
middleware, routing and dependency injection) when the request is plainly valid; anything else goes the documented
way.

Measured (py-spy, then cProfile): routing through the included routers and solving each route's dependencies cost
more CPU than the query. The Guard middleware asks this first; it takes only requests whose every part it can judge
at a glance: a canonical journey id, a key in the key cache whose role the route allows, and query parameters from a
short list, each given once, with plain values (`min_position`, `limit`, `cursor`, a view's `season`; no filters).
Those it answers itself, with the same reads, scope check and problems as the documented routes. Every other request
(a filter, an odd value, an unknown key, a forbidden role) goes on to the documented route, which validates and
refuses exactly as the OpenAPI document says.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import ROLES, IdempotencyKeyText, Services
from hajj_ledger.api.problems import MAX_BODY, ProblemError, from_ledger
from hajj_ledger.api.recording import command_id, record_batch_in_time, record_parsed
from hajj_ledger.api.routes.commands import batch
from hajj_ledger.api.routes.journeys import status
from hajj_ledger.api.routes.steps import endpoints
from hajj_ledger.api.schemas import BatchCreate
from hajj_ledger.audit.reads import MAX_LIMIT
from hajj_ledger.domain.command_base import CommandBase
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.parsing import parse_command

JOURNEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WHOLE = re.compile(r"[0-9]{1,18}")  # within a database integer: nothing for validation to refuse
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,2000}")
HIJRI_YEAR = re.compile(r"[1-9][0-9]{0,3}")  # 1 to 9999, as `deps.Season` takes it
SEASON = "season"
PAGE_PARAMETERS = frozenset({"min_position", "limit", "cursor"})
IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKeyText)  # as the documented routes take the header
JOURNEYS, VIEWS = "/v1/journeys/", "/v1/views/"


class HotReads:
    """Answers a plainly valid hot read, or says it is not one (None), before the request reaches FastAPI: through
    the documented route's own function, with the values it would have been given."""

    def __init__(self, status: APIRoute, views: dict[str, APIRoute]) -> None:
        self.status = status
        self.views = views
        # The views by season, which take `season` here too.
        self.by_season = {r.path for r in views.values() if SEASON in {p.alias for p in r.dependant.query_params}}

    async def answer(self, scope: Scope) -> Response | None:
        if scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if path.startswith(JOURNEYS) and "/" not in path[len(JOURNEYS) :]:
            route = self.status
        elif path.startswith(VIEWS) and path[len(VIEWS) :] in self.views:
            route = self.views[path[len(VIEWS) :]]
        else:
            return None
        services: Services = scope["app"].state.services
        agency = _agency(services, scope, route)
        query = _query(scope["query_string"])
        if agency is None or query is None:
            return None
        try:
            if route is self.status:
                response = await self._status(services, agency, path[len(JOURNEYS) :], query)
            else:
                response = await self._page(services, agency, route, query)
        except ProblemError as problem:
            response = problem.response()
        if response is not None:
            scope["route"] = route  # what the access log and the metrics name
            scope.setdefault("state", {})["agency"] = agency.agency_id
        return response

    async def _status(self, services: Services, agency: Agency, text: str, query: dict[str, str]) -> Response | None:
        if not JOURNEY_ID.fullmatch(text) or not set(query) <= {"min_position"}:
            return None
        position = _whole(query.get("min_position"))
        if "min_position" in query and position is None:
            return None
        return await status(UUID(text), agency, services.reads, services.archives, position)

    async def _page(self, services: Services, agency: Agency, view: APIRoute, query: dict[str, str]) -> Response | None:
        if not set(query) <= (PAGE_PARAMETERS | {SEASON} if view.path in self.by_season else PAGE_PARAMETERS):
            return None
        limit = _whole(query.get("limit", "100"))
        cursor = query.get("cursor")
        if limit is None or not 1 <= limit <= MAX_LIMIT or (cursor is not None and not CURSOR.fullmatch(cursor)):
            return None
        position = _whole(query.get("min_position"))
        if "min_position" in query and position is None:
            return None
        season = query.get(SEASON)
        if season is not None and not HIJRI_YEAR.fullmatch(season):
            return None
        seasons = {} if season is None else {SEASON: int(season)}
        page: Response = await view.endpoint(
            agency=agency,
            reads=services.reads,
            archives=services.archives,
            cursor=cursor,
            limit=limit,
            min_position=position,
            **seasons,
        )
        return page


def _agency(services: Services, scope: Scope, route: APIRoute) -> Agency | None:
    """The caller, when its key is in the cache and its role may call the route; otherwise None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme != "Bearer" or not key or " " in key:
                return None
            agency = services.keys.cached(key)
            if agency is None or agency.role not in (route.openapi_extra or {}).get(ROLES, ()):
                return None
            return agency
    return None


def _query(raw: bytes) -> dict[str, str] | None:
    """The query parameters, when each is given once; otherwise None."""
    if not raw:
        return {}
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    return found if len(found) == len(pairs) else None


def _whole(text: str | None) -> int | None:
    return int(text) if text is not None and WHOLE.fullmatch(text) else None


class HotWrites:
    """The recording endpoints, answered before FastAPI when plainly valid: a key in the key cache whose role the
    route allows, no query string, a plain Idempotency-Key if any, and a JSON body of known length that makes a valid
    command with the step's event and the path's canonical id, or (the batch endpoint) a valid `BatchCreate`. The body
    is validated once, by the same model the documented route validates it with last; anything else (a refusal
    included) goes to the documented route with the body as read, which answers exactly as the OpenAPI document says.
    The ledger's own refusals are the same either way."""

    def __init__(self, routes: dict[str, tuple[APIRoute, type[CommandBase]]], batch: APIRoute) -> None:
        self.routes = routes  # by path with `{id}` for the target: "/v1/journeys/{id}/visa-issued"
        self.batch = batch

    async def take(self, scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
        """An answer, or None with what the documented route reads the body from."""
        path: str = scope["path"]
        if path == self.batch.path:
            return await self._batch(scope, receive)
        parts = path.split("/")  # "", "v1", "journeys", id, step
        target_id = parts[3] if len(parts) == 5 else None
        key = path if target_id is None else "/".join([*parts[:3], "{id}", parts[4]])
        step = self.routes.get(key) if scope["method"] == "POST" and not scope["query_string"] else None
        if step is None or (target_id is not None and not JOURNEY_ID.fullmatch(target_id)):
            return None, receive
        route, command = step
        plain = await _plain_request(scope, receive, route)
        if plain is None:
            return None, receive
        services, agency, body, key_text = plain
        again = _replay(body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, again
        if not isinstance(data, dict) or "event" in data or (command.target and command.target in data):
            return None, again
        data["event"] = command.model_fields["event"].default
        if target_id is not None:
            data[command.target] = target_id
        if data.get("command_id") is None:
            data["command_id"] = command_id(agency, key_text)
        try:
            parsed = parse_command(data)
        except LedgerError:
            return None, again
        scope["route"] = route  # what the access log and the metrics name
        scope.setdefault("state", {})["agency"] = agency.agency_id
        try:
            return await record_parsed(services.ledger, agency, parsed), again
        except LedgerError as refusal:
            return from_ledger(refusal).response(), again

    async def _batch(self, scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
        """`POST /v1/commands:batch`: the body parsed and validated in one pass by pydantic's own JSON parser, where
        FastAPI decodes it with the standard library's first (a tenth of a batch request's CPU, profiled)."""
        if scope["method"] != "POST" or scope["query_string"]:
            return None, receive
        plain = await _plain_request(scope, receive, self.batch)
        if plain is None:
            return None, receive
        services, agency, body, key_text = plain
        again = _replay(body)
        try:
            commands = BatchCreate.model_validate_json(body).commands
        except ValidationError:
            return None, again
        scope["route"] = self.batch  # what the access log and the metrics name
        scope.setdefault("state", {})["agency"] = agency.agency_id
        return await record_batch_in_time(services.ledger, agency, commands, key_text), again


async def _plain_request(
    scope: Scope, receive: Receive, route: APIRoute
) -> tuple[Services, Agency, bytes, str | None] | None:
    """A write's caller, body and Idempotency-Key, when a hot write may take it: a key in the key cache whose role the
    route allows, a body of known length within the limit (then read), a plain key if any; otherwise None, with
    nothing read."""
    services: Services = scope["app"].state.services
    agency = _agency(services, scope, route)
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)  # a header given twice: the first, as the documented routes read it
    length = headers.get(b"content-length", b"")
    idempotency_key = headers.get(b"idempotency-key")
    key_text = None if idempotency_key is None else idempotency_key.decode("latin-1")
    if (
        agency is None
        or b"transfer-encoding" in headers
        or not length.isdigit()
        or int(length) > MAX_BODY
        or (key_text is not None and not _plain_key(key_text))
    ):
        return None
    return services, agency, await _read(receive), key_text


def hot_writes(router: APIRouter, batch_router: APIRouter) -> HotWrites:
    paths = dict(endpoints())
    routes = {}
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path in paths:
            routes[re.sub(r"\{[a-z_]+\}", "{id}", route.path)] = (route, paths[route.path])
    batch_route = next(r for r in batch_router.routes if isinstance(r, APIRoute) and r.endpoint is batch)
    return HotWrites(routes, batch_route)


def _plain_key(text: str) -> bool:
    try:
        IDEMPOTENCY_KEY.validate_python(text)
    except ValidationError:
        return False
    return True


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A receive that gives the body already read, then whatever the client sends next (a disconnect)."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
