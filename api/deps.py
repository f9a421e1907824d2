"""What routes depend on: the services, the calling agency (authorised against the route's declared roles), and the
parameters they take, each declared once here with the checks of what it is compared with or stored as.

Routes open their read connections themselves: a connection held by a yield dependency is given back only after
the response, and under load every pool thread waited for a connection that only a queued teardown could give
back (30 s, then an error)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin
from uuid import UUID

import sqlalchemy as sa
from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, Field
from pydantic.config import JsonDict
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from hajj_ledger.api.agencies import Agency, Keys
from hajj_ledger.api.archives import ClosedSeasons
from hajj_ledger.api.examples import PATH_EXAMPLES
from hajj_ledger.api.feed import Feed
from hajj_ledger.api.front import answered_for, bearer_key
from hajj_ledger.api.problems import from_ledger, invalid, unauthorized
from hajj_ledger.api.reads import Reads
from hajj_ledger.api.schemas import HIJRI_YEAR, QueryInt
from hajj_ledger.audit.chain import Chain
from hajj_ledger.audit.reads import MAX_LIMIT
from hajj_ledger.domain import access
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.errors import PermissionDeniedError
from hajj_ledger.domain.vocabulary import Day, Moment, Role
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections.framework import ONE_OF
from hajj_ledger.projections.read_season import default_season
from hajj_ledger.projections.replay import PastViews

ROLES = "x-roles"  # the OpenAPI extension naming the roles a route serves


def allow(roles: Iterable[Role]) -> dict[str, Any]:
    """A route's `openapi_extra`: who may call it. A route without it refuses everybody."""
    return {ROLES: sorted(str(r) for r in roles)}


@dataclass
class Services:
    ledger: JourneyLedger
    engine: Engine  # the read models
    keys: Keys
    max_wait: float  # how long a read waits for `min_position`, seconds
    past: PastViews  # auditors' views as of past positions, built apart
    chain: Chain  # the hash chain's checkpoints and proofs
    reads: Reads  # the hot reads: a journey's status, the views' pages
    feed: Feed  # the change feed's hub
    archives: ClosedSeasons  # closed seasons, read from their archives
    database_url: str | None = None  # the store, for work done in threads of its own (exports)


class CurrentSeason:
    """The current season of one process's read models, looked up at most once a second (`FRESH_FOR`): every read
    that names no season asks for it, and it changes only when the ministry opens a season or a day turns."""

    FRESH_FOR = 1.0  # seconds

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.season: int | None = None
        self.until = 0.0  # monotonic time until which `season` is fresh

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.until

    def read(self) -> int | None:
        """The current season (None: no season in the views yet); it may ask the database, so an async route calls
        it on a thread of the pool unless it is `fresh`."""
        if not self.fresh:
            with self.engine.connect() as connection:
                self.season = default_season(connection)
            self.until = time.monotonic() + self.FRESH_FOR
        return self.season


_CURRENT: weakref.WeakKeyDictionary[Engine, CurrentSeason] = weakref.WeakKeyDictionary()


def current_season_of(engine: Engine) -> CurrentSeason:
    """The current season of the read models behind `engine`, one lookup a second for the whole process."""
    found = _CURRENT.get(engine)
    if found is None:
        found = _CURRENT[engine] = CurrentSeason(engine)
    return found


async def season_or_current(engine: Engine, season: int | None) -> int | None:
    """The season a read shows: the one asked for, else the current one (on a thread of the pool, if it must ask)."""
    if season is not None:
        return season
    current = current_season_of(engine)
    return current.season if current.fresh else await run_in_threadpool(current.read)


# Each service dependency's field in Services, by the function FastAPI calls for it: the hot routes give an
# endpoint the same services without FastAPI (api/hot.py).
SERVICE_FIELDS: dict[Callable[..., Any], str] = {}


def _service(name: str) -> Any:
    """A route's dependency on one of the app's services, by its field in Services."""

    async def service(request: Request) -> Any:  # async: no trip through the thread pool for a lookup
        return getattr(request.app.state.services, name)

    service.__name__ = name
    SERVICE_FIELDS[service] = name
    return Depends(service)


# What routes depend on, each by what it is.
LedgerDep = Annotated[JourneyLedger, _service("ledger")]
ReadModelsDep = Annotated[Engine, _service("engine")]
KeysDep = Annotated[Keys, _service("keys")]
PastViewsDep = Annotated[PastViews, _service("past")]
ChainDep = Annotated[Chain, _service("chain")]
ReadsDep = Annotated[Reads, _service("reads")]
StoreUrlDep = Annotated[str | None, _service("database_url")]
FeedDep = Annotated[Feed, _service("feed")]
ArchivesDep = Annotated[ClosedSeasons, _service("archives")]
_bearer = HTTPBearer(auto_error=False, description="the agency's API key (`hajj-ledger agency add`)")


async def caller(  # async, as the key is nearly always in the cache: one thread-pool trip a request, not three
    request: Request,
    keys: KeysDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Agency:
    return authorized(request, _agency(keys, None if credentials is None else credentials.credentials))


def check_caller(request: Request) -> None:
    """The caller check, for a request refused before its dependencies ran (a body that is not even JSON): the
    key and the role still come first, so that a caller the route refuses learns nothing of what it accepts."""
    authorized(request, _agency(request.app.state.services.keys, bearer_key(request.headers.get("authorization"))))


def _agency(keys: Keys, key: str | None) -> Agency:
    """The agency of a key (`bearer_key`'s); 401 without one, or for one unknown or revoked."""
    if key is None:
        raise unauthorized()
    agency = keys.agency(key)
    if agency is None:
        raise unauthorized("the key is unknown or revoked")
    return agency


def route_roles(route: Any) -> list[str]:
    """The roles a route serves, as it declares them (`allow`); none for a route that declares none."""
    roles: list[str] = (getattr(route, "openapi_extra", None) or {}).get(ROLES, [])
    return roles


def check_role(route: Any, method: str, agency: Agency) -> None:
    """Refuse a caller whose role the route does not serve (403, naming the roles it does): the domain's one check
    of a role, made alike by the documented routes (`caller`) and the hot ones."""
    roles = route_roles(route)
    try:
        access.check_role(agency.role, roles, route.path, verb=method)
    except PermissionDeniedError as refusal:
        problem = from_ledger(refusal)
        problem.extra["allowed_roles"] = roles
        raise problem from None


def authorized(request: Request, agency: Agency) -> Agency:
    route = request.scope.get("route")
    check_role(route, request.method, agency)
    repeated = sorted(n for n in set(request.query_params) - _lists(route) if len(request.query_params.getlist(n)) > 1)
    if repeated:  # otherwise the last would silently win
        raise invalid(
            f"query parameters given more than once: {', '.join(repeated)}",
            [{"path": f"query.{name}", "reason": "given more than once"} for name in repeated],
        )
    unknown = sorted(set(request.query_params) - query_names(route))
    if unknown:
        raise invalid(
            f"unknown query parameters: {', '.join(unknown)}",
            [{"path": f"query.{name}", "reason": "unknown parameter"} for name in unknown],
        )
    answered_for(request.scope, agency)
    return agency


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def query_names(route: Any) -> frozenset[str]:
    """The query parameters a route declares: any other is refused (a misspelt filter would match everything)."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = frozenset(_declared(route.dependant))
    return names


def _declared(dependant: Any) -> set[str]:
    return {p.alias for p in dependant.query_params}.union(*(_declared(d) for d in dependant.dependencies))


_LISTS: dict[int, frozenset[str]] = {}


def _lists(route: Any) -> frozenset[str]:
    """The query parameters a route takes several of (`?event=A&event=B`): only these may be repeated."""
    names = _LISTS.get(id(route))
    if names is None:
        names = _LISTS[id(route)] = frozenset(
            p.alias for p in route.dependant.query_params if _many(p.field_info.annotation)
        )
    return names


def _many(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(_many(a) for a in get_args(annotation))


Caller = Annotated[Agency, Depends(caller)]


# The parameters routes take (query, path, header), each declared once, here, with the checks of the column it is
# compared with or stored as: no value reaches a database to be refused there (a 500). Routes give each its `Query`,
# `Header` or `Path` and description.


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


_NO_NUL: JsonDict = {"pattern": r"^[^\x00]*$"}  # for the OpenAPI document; `_no_nul` says why a value is refused
# Text without NUL (PostgreSQL refuses it in text); each use bounds its length as its column does.
Text = Annotated[str, Field(json_schema_extra=_NO_NUL), AfterValidator(_no_nul)]
# The range of each integer column type: the database refuses a value beyond it ("integer out of range").
_INTEGER_BITS = ((sa.BigInteger, 64), (sa.SmallInteger, 16), (sa.Integer, 32))


def column_type(column: sa.Column[Any]) -> Any:
    """What a value compared with the column may be: of its type and within what the column holds. Integers within
    the column's range (a 32-bit INTEGER is not a BIGINT), text within its length and without NUL, or one of the
    only values it holds (a stage, a status: any other is a mistake, not a filter that finds nothing), times and
    dates written out (never a number read as seconds since 1970)."""
    kind = column.type
    if isinstance(kind, sa.Integer):
        bits = next(b for t, b in _INTEGER_BITS if isinstance(kind, t))
        return Annotated[QueryInt, Field(ge=-(2 ** (bits - 1)), le=2 ** (bits - 1) - 1)]
    if values := column.info.get(ONE_OF):
        return Literal[values]
    if isinstance(kind, sa.String):
        return Annotated[Text, Field(max_length=kind.length)]
    return {datetime: Moment, date: Day}.get(kind.python_type, kind.python_type)


AgencyId = Annotated[Text, Field(max_length=64)]  # as the agencies table and the views' mission_id, company_id hold it
Position = Annotated[QueryInt, Field(ge=0)]  # a position in the log (BIGINT)
Limit = Annotated[QueryInt, Field(ge=1, le=MAX_LIMIT)]  # items in a page
Season = Annotated[QueryInt, HIJRI_YEAR]  # a Hijri year
# Every read is of one season: the one asked for, else the current one (`season_or_current`).
SeasonQuery = Annotated[
    Season | None, Query(description="a season (Hijri year); default: the current season (GET /v1/seasons says which)")
]
PageCursor = Annotated[Text, Field(max_length=2000)]  # a view's `next_cursor`: its key's values, encoded
if TYPE_CHECKING:
    EventName = str
else:
    EventName = Literal[tuple(STEPS)]  # an event's name, such as VisaIssued: any other is refused, naming them
MinPosition = Annotated[
    Position | None, Query(description="wait (bounded) until the views have applied the log up to here")
]
# A journey named in a path, with the example story's journey (api/examples.py) for "Try it out".
JourneyId = Annotated[
    UUID, Path(openapi_examples={"story": {"summary": "the story's journey", "value": PATH_EXAMPLES["journey_id"]}})
]
IdempotencyKeyText = Annotated[Text, Field(min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    IdempotencyKeyText | None,
    Header(description="repeating a request with the same key repeats its first outcome"),
]
