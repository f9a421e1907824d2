"""The hottest requests, a journey's status, a view's pages, a single step and a batch, answered before FastAPI (its
middleware, routing and dependency injection) when plainly valid; anything else goes the documented way.

Measured (py-spy, then cProfile): routing through the included routers and solving each route's dependencies cost
more CPU than a read's query; a batch's body was decoded by the standard library before it was validated
(bench/NOTES.md, "The HTTP batch endpoint"). The Guard (api/front.py) asks these first, with the headers and the
body as it read them. A hot route is the documented route taken a shorter way: its parameters are validated by
FastAPI's own function against the route's own declarations, its caller is checked by the same function
(`deps.check_role`), its endpoint is given what FastAPI would give it, and an error it raises is answered by the
Guard with the problem the app's handlers give. A request it cannot judge at a glance (a key not in the key cache, a
role the route does not serve, a parameter given twice or unknown, a value its declaration refuses, a body that is
not a plain command) goes on to the documented route, which validates and refuses as the OpenAPI document says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from inspect import iscoroutinefunction
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import SERVICE_FIELDS, Services, caller, check_role
from hajj_ledger.api.front import answered_for, bearer_key
from hajj_ledger.api.problems import ProblemError
from hajj_ledger.api.recording import command_id, record_batch_in_time, record_parsed
from hajj_ledger.api.routes.commands import batch
from hajj_ledger.api.routes.steps import endpoints
from hajj_ledger.api.schemas import BatchCreate
from hajj_ledger.domain.command_base import CommandBase
from hajj_ledger.domain.errors import LedgerError
from hajj_ledger.domain.parsing import parse_command

IMMUTABLE = (type(None), bool, int, str)  # a parameter's default shared by every call


class HotRead:
    """A documented GET route, as a hot read calls it: what its endpoint is given besides its parameters."""

    def __init__(self, route: APIRoute) -> None:
        assert iscoroutinefunction(route.endpoint), f"{route.path}: a hot read runs on the event loop"
        self.route = route
        self.caller = ""  # the endpoint's parameter taking the caller
        self.services: dict[str, str] = {}  # the endpoint's parameters taking a service: their fields in Services
        for dependency in route.dependant.dependencies:
            if dependency.call is caller:
                self.caller = dependency.name or self.caller  # unnamed: the router's own check of the caller
            elif dependency.name is not None:
                field = SERVICE_FIELDS.get(dependency.call) if dependency.call is not None else None
                assert field is not None, f"{route.path}: {dependency.name} is none of the services"
                self.services[dependency.name] = field
        assert self.caller, f"{route.path}: a hot read is given its caller"
        self.query = {field.alias: field for field in route.dependant.query_params}
        self.defaults, missing = request_params_to_args(route.dependant.query_params, {})
        assert not missing and all(isinstance(v, IMMUTABLE) for v in self.defaults.values()), route.path

    def arguments(
        self, services: Services, agency: Agency, path: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """What the endpoint is given, as FastAPI would give it; None when a parameter is one its declaration
        refuses."""
        path_values = _declared(self.route.dependant.path_params, path)
        query_values = _declared([self.query[name] for name in query], query)
        if path_values is None or query_values is None:
            return None
        given = {name: getattr(services, field) for name, field in self.services.items()}
        return {**self.defaults, **query_values, **path_values, **given, self.caller: agency}


class HotReads:
    """Answers a plainly valid GET of one of `routes`, or says it is not one (None), before the request reaches
    FastAPI: through the documented route's own endpoint, with the values FastAPI would have given it."""

    def __init__(self, routes: Iterable[APIRoute]) -> None:
        self.reads = [HotRead(route) for route in routes]
        self.by_path = {read.route.path: read for read in self.reads if not read.route.param_convertors}
        self.by_pattern = [read for read in self.reads if read.route.param_convertors]

    async def answer(self, scope: Scope, headers: Mapping[str, str]) -> Response | None:
        if scope["method"] != "GET":
            return None
        found = self._match(scope)
        if found is None:
            return None
        read, path = found
        services: Services = scope["app"].state.services
        agency = cached_caller(services, headers, read.route, "GET")
        query = _query(scope["query_string"])
        if agency is None or query is None or not query.keys() <= read.query.keys():
            return None
        arguments = read.arguments(services, agency, path, query)
        if arguments is None:
            return None
        _taken(scope, read.route, agency)
        answer: Response = await read.route.endpoint(**arguments)
        return answer

    def _match(self, scope: Scope) -> tuple[HotRead, dict[str, str]] | None:
        """The route of the request's path and its path parameters, as Starlette's routing finds them."""
        if (read := self.by_path.get(scope["path"])) is not None:
            return read, {}
        for read in self.by_pattern:
            match, child = read.route.matches(scope)
            if match is Match.FULL:
                return read, child["path_params"]
        return None


def cached_caller(services: Services, headers: Mapping[str, str], route: APIRoute, method: str) -> Agency | None:
    """The caller, when its key is in the key cache and its role may call the route; otherwise None (the documented
    route looks the key up, or refuses the role, itself)."""
    key = bearer_key(headers.get("authorization"))
    agency = None if key is None else services.keys.cached(key)
    if agency is None:
        return None
    try:
        check_role(route, method, agency)
    except ProblemError:
        return None
    return agency


def _taken(scope: Scope, route: APIRoute, agency: Agency) -> None:
    """The request taken by a hot route: the route and the caller, as the access log and the metrics name them."""
    scope["route"] = route
    answered_for(scope, agency)


def _query(raw: bytes) -> dict[str, str] | None:
    """The query parameters, when each is given once; otherwise None."""
    if not raw:
        return {}
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    return found if len(found) == len(pairs) else None


class HotWrites:
    """The recording endpoints, answered before FastAPI when plainly valid: a key in the key cache whose role the
    route allows, no query string, the headers the route declares (an Idempotency-Key) as it takes them, and a JSON
    body that makes a valid command with the step's event and the path's target, or (the batch endpoint) a valid
    `BatchCreate`. The body is validated once, by the same model the documented route validates it with last;
    anything else (a refusal included) goes to the documented route, which answers exactly as the OpenAPI document
    says. The ledger's own refusals are the same either way."""

    def __init__(self, routes: dict[str, tuple[APIRoute, type[CommandBase]]], batch: APIRoute) -> None:
        self.routes = routes  # by path with `{id}` for the target: "/v1/journeys/{id}/visa-issued"
        self.batch = batch

    async def answer(self, scope: Scope, headers: Mapping[str, str], body: bytes) -> Response | None:
        if scope["method"] != "POST" or scope["query_string"]:
            return None
        path: str = scope["path"]
        if path == self.batch.path:
            return await self._batch(scope, headers, body)
        parts = path.split("/")  # "", "v1", "journeys", id, step
        target = parts[3] if len(parts) == 5 else None
        step = self.routes.get(path if target is None else "/".join([*parts[:3], "{id}", parts[4]]))
        if step is None:
            return None
        route, command = step
        plain = _plain_request(scope, headers, route)
        path_values = _declared(route.dependant.path_params, {command.target: target} if target else {})
        if plain is None or path_values is None:
            return None
        services, agency, key = plain
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or "event" in data or (command.target and command.target in data):
            return None  # fields the step's body does not take: refused by the documented route
        data["event"] = command.model_fields["event"].default
        data.update(path_values)
        if data.get("command_id") is None:
            data["command_id"] = command_id(agency, key)
        try:
            parsed = parse_command(data)
        except LedgerError:
            return None
        _taken(scope, route, agency)
        return await record_parsed(services.ledger, agency, parsed)

    async def _batch(self, scope: Scope, headers: Mapping[str, str], body: bytes) -> Response | None:
        """`POST /v1/commands:batch`: the body parsed and validated in one pass by pydantic's own JSON parser, where
        FastAPI decodes it with the standard library's first (a tenth of a batch request's CPU, profiled)."""
        plain = _plain_request(scope, headers, self.batch)
        if plain is None:
            return None
        services, agency, key = plain
        try:
            commands = BatchCreate.model_validate_json(body).commands
        except ValidationError:
            return None
        _taken(scope, self.batch, agency)
        return await record_batch_in_time(services.ledger, agency, commands, key)


def _plain_request(
    scope: Scope, headers: Mapping[str, str], route: APIRoute
) -> tuple[Services, Agency, str | None] | None:
    """A write's services, caller and Idempotency-Key, when a hot write may take it: a key in the key cache whose
    role the route allows, and the headers the route declares as it takes them; otherwise None."""
    services: Services = scope["app"].state.services
    agency = cached_caller(services, headers, route, "POST")
    declared = _declared(route.dependant.header_params, headers)
    if agency is None or declared is None:
        return None
    key: str | None = declared.get("idempotency_key")
    return services, agency, key


def _declared(fields: Sequence[Any], given: Mapping[str, str | None]) -> dict[str, Any] | None:
    """The values of a route's parameters, validated by FastAPI's own function against their declarations, as the
    documented route gets them; None when one is refused."""
    values, errors = request_params_to_args(fields, given)
    return None if errors else values


def hot_writes(router: APIRouter, batch_router: APIRouter) -> HotWrites:
    paths = dict(endpoints())
    routes = {}
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path in paths:
            routes[re.sub(r"\{[a-z_]+\}", "{id}", route.path)] = (route, paths[route.path])
    batch_route = next(r for r in batch_router.routes if isinstance(r, APIRoute) and r.endpoint is batch)
    return HotWrites(routes, batch_route)
