"""The hot reads, a journey's status and the views' pages, answered on the event loop.

On PostgreSQL they go through psycopg's async pool: opened with the app, steady (`HAJJ_LEDGER_READ_POOL_SIZE`
connections, never more, never fewer; no ping on checkout), in autocommit, each view's SQL compiled once per shape.
With `HAJJ_LEDGER_READ_DATABASE_URL` (streaming standbys, comma-separated) they go to a standby, in turn; a read
asking for `min_position` goes to a standby whose views have reached it, else waits (up to `HAJJ_LEDGER_MAX_WAIT`),
then asks the primary, then answers 503 as before. A standby that fails is left out for a few seconds. A journey's
history, the audit trail and a journey as of a past moment are read from a standby's log the same way (through a
read-only ledger per standby), without a position to wait for. Writes, receipts, identities, the chain and the
auditors' past views stay on the primary.

On SQLite (the embedded demo store) the same queries run through SQLAlchemy in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from uuid import UUID

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hajj_ledger.api.agencies import REVOKED, Agency, Revocations, Watched
from hajj_ledger.api.problems import ProblemError, invalid, unauthorized
from hajj_ledger.domain.access import WHOLE_VIEW_READERS
from hajj_ledger.domain.catalogue import SCOPE
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections.framework import AT_LEAST, Model
from hajj_ledger.projections.journey_status import journey_status
from hajj_ledger.projections.schema import positions
from hajj_ledger.settings import settings, variable_for
from hajj_ledger.store.connections import DATABASE_URL_VARIABLE, Postgres, causes, split_urls, with_parameter

READ_POOL_SIZE_VARIABLE = variable_for("read_pool_size")
READ_URL_VARIABLE = variable_for("read_database_url")
LEFT_OUT_FOR = 5.0  # seconds a standby that failed is not asked
STANDBY_TIMEOUT = 0.5  # seconds to wait for a standby's connection before asking another source
PRIMARY_TIMEOUT = 4.0  # seconds to wait for the primary's: longer only while it is away (then 503, within the grace)
POLL = 0.02  # seconds between two looks at the views' positions while waiting for `min_position`

log = logging.getLogger("hajj_ledger.api")
T = TypeVar("T")
Row = dict[str, Any]
Page = tuple[list[Row], int]  # the rows, and the position the view had reached
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
# What a standby that is away raises: another source answers instead.
AWAY = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
AWAY_NAMES = frozenset({"OperationalError", "InterfaceError", "PoolTimeout", "PoolError", "ConnectionTimeout"})


def database_away(error: BaseException) -> bool:
    """Whether the error is what a driver raises while its database is away (the event store's library wraps
    psycopg's errors in its own classes of the same names)."""
    return any(type(cause).__name__ in AWAY_NAMES for cause in causes(error))


def pool_size() -> int:
    return settings().read_pool_size


def standby_urls() -> list[str]:
    """The standbys' URLs, comma-separated; a URL may itself name several hosts (libpq's `h1:5432,h2:5432`)."""
    return split_urls(settings().read_database_url or "")


# The queries, built once per shape with SQLAlchemy (the same SQL either store runs) and compiled once for psycopg.


@functools.cache
def journey_query() -> sa.Select[Any]:
    view = journey_status.view()
    return sa.select(view).where(view.c.journey_id == sa.bindparam("journey_id", type_=view.c.journey_id.type))


@functools.cache
def page_query(model: Model, filters: tuple[str, ...], scope: str | None, after: bool) -> sa.Select[Any]:
    """A page of a view: rows past the cursor's key (if any), filtered, in key order, one more than asked for (so
    that the answer knows whether another page follows)."""
    view = model.view()
    key = [view.c[k] for k in model.key]
    query = model.readable().order_by(*key).limit(sa.bindparam("limit", type_=sa.Integer))
    worked_out = model.read_columns()
    for name in filters:
        bounded = name.removeprefix(AT_LEAST)
        if name in worked_out:
            query = query.where(worked_out[name] == sa.bindparam(f"filter_{name}", type_=sa.Boolean))
        elif bounded != name and bounded in model.at_least:
            query = query.where(view.c[bounded] >= sa.bindparam(f"filter_{name}", type_=view.c[bounded].type))
        else:
            query = query.where(view.c[name] == sa.bindparam(f"filter_{name}", type_=view.c[name].type))
    if scope is not None:
        query = query.where(view.c[scope] == sa.bindparam("scope", type_=view.c[scope].type))
    if after:
        query = query.where(sa.tuple_(*key) > sa.tuple_(*(sa.bindparam(f"after_{c.name}", type_=c.type) for c in key)))
    return query


@functools.cache
def position_query() -> sa.Select[Any]:
    """The lowest position the named views have reached (the serving generation of each)."""
    return sa.select(sa.func.min(positions.c.position)).where(
        positions.c.projection.in_(sa.bindparam("names", expanding=True)), positions.c.serving.is_(True)
    )


@functools.cache
def _postgres(query: sa.Select[Any]) -> str:
    return str(query.compile(dialect=_DIALECT))


_POSITION_SQL = (
    "SELECT min(position) FROM projection_positions WHERE serving AND projection = ANY(%(names)s)"  # position_query
)


def scope_column(name: str, agency: Agency) -> str | None:
    """The column holding the agency's id in the rows of view `name` it may read; None: it reads every row."""
    if agency.role not in SCOPE or agency.role in WHOLE_VIEW_READERS.get(name, ()):
        return None
    return SCOPE[agency.role][0]


def page_parameters(
    model: Model, agency: Agency, filters: dict[str, Any], after: list[Any] | None, limit: int
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The query of a page and its parameters."""
    given = {name: value for name, value in filters.items() if value is not None}
    scope = scope_column(model.name, agency)
    query = page_query(model, tuple(sorted(given)), scope, after is not None)
    parameters: dict[str, Any] = {"limit": limit + 1, **{f"filter_{n}": v for n, v in given.items()}}
    if model.at_read is not None:
        parameters["now"] = datetime.now(UTC)
    if scope is not None:
        parameters["scope"] = agency.agency_id
    if after is not None:
        parameters.update({f"after_{k}": v for k, v in zip(model.key, after, strict=True)})
    return query, parameters


def answer(body: Any) -> Response:
    """A 200 JSON answer written by orjson: what FastAPI would write for the route's response model (UTC as `Z`),
    without validating rows the database just gave."""
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def views_behind(names: Sequence[str], reached: int, wanted: int) -> ProblemError:
    problem = ProblemError(
        503, "views-behind", "Views behind",
        f"the views {', '.join(names)} have reached position {reached}, not yet {wanted}",
        reached=reached, wanted=wanted,
    )  # fmt: skip
    problem.headers["Retry-After"] = "1"
    return problem


def beyond_head(position: int, head: int, path: str = "query.min_position") -> ProblemError:
    """The refusal of a position past the ledger's head, given as `path` (`query.after`, `header.last-event-id`)."""
    return invalid(
        f"{path.partition('.')[2]}: {position} is beyond the ledger's head ({head})",
        [{"path": path, "reason": f"beyond the ledger's head ({head})"}],
    )


class Source:
    """One database the reads may go to: the primary, or a standby."""

    def __init__(self, url: str, size: int, *, standby: bool) -> None:
        found = Postgres.from_url(url, READ_URL_VARIABLE if standby else DATABASE_URL_VARIABLE, writes=not standby)
        # A standby's URL is taken as written: several hosts there are any of them (libpq's default), not the one
        # that takes writes, for its log's reads too (a ledger of its own below).
        self.url = with_parameter(url, "target_session_attrs", "any") if standby else url
        self.standby = standby
        self.ledger: JourneyLedger | None = None  # a standby's, for reads of the log: made when first needed
        self.ledger_made = threading.Lock()
        self.name = found.name
        self.left_out_until = 0.0

        # The schema and, behind a transaction pooler, no prepared statements: as every connection of the ledger.
        self.pool = AsyncConnectionPool(
            found.conninfo, min_size=size, max_size=size, open=False,
            kwargs={"autocommit": True, **found.connect_kwargs()}, name=f"reads-{self.name}",
            timeout=STANDBY_TIMEOUT if standby else PRIMARY_TIMEOUT,
        )  # fmt: skip

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.left_out_until

    def leave_out(self, error: BaseException) -> None:
        log.warning("read standby %s left out for %.0f s: %s", self.name, LEFT_OUT_FOR, error)
        self.left_out_until = time.monotonic() + LEFT_OUT_FOR


class Reads:
    """Where the hot reads go and how they wait for a position; `engine` only on SQLite."""

    def __init__(
        self,
        ledger: JourneyLedger,
        database_url: str,
        max_wait: float,
        engine: Engine,
        revocations: Revocations,
        *,
        standbys: Sequence[str] = (),
        size: int | None = None,
    ) -> None:
        self.ledger = ledger  # the primary's
        self.max_wait = max_wait
        self.head = ledger.head  # a position a client was given is the primary's
        self.engine = engine
        self.revocations = revocations  # whether the key of a read waiting for a position was revoked meanwhile
        self.postgres = database_url.startswith(("postgresql://", "postgres://"))
        size = pool_size() if size is None else size
        self.primary = Source(database_url, size, standby=False) if self.postgres else None
        self.standbys = [Source(url, size, standby=True) for url in standbys] if self.postgres else []
        self._turn = itertools.count()

    async def open(self) -> None:
        if self.primary is not None:
            await self.primary.pool.open(wait=False)
        for standby in self.standbys:  # a standby that is away is left out, never waited for
            await standby.pool.open(wait=False)

    async def close(self) -> None:
        for source in [*self.standbys, *([self.primary] if self.primary else [])]:
            await source.pool.close()
            if source.ledger is not None:
                source.ledger.close()

    def from_log(self, read: Callable[[JourneyLedger], T]) -> T:
        """`read` on a standby's log (any standby that is up, in turn), else on the primary's. In a thread."""
        for source in self._sources(primary=False) if self.standbys else []:
            if not source.standby:
                break
            try:
                return read(self._ledger(source))
            except Exception as error:
                if not database_away(error):
                    raise
                source.leave_out(error)
        return read(self.ledger)

    def _ledger(self, source: Source) -> JourneyLedger:
        with source.ledger_made:
            if source.ledger is None:
                source.ledger = JourneyLedger(source.url, create_tables=False)
            return source.ledger

    # The reads.

    async def journey(self, journey_id: UUID, min_position: int | None, agency: Agency) -> Row | None:
        if not self.postgres:
            return await run_in_threadpool(self._journey_sqlite, journey_id, min_position, agency)
        sql = _postgres(journey_query())

        async def read(connection: psycopg.AsyncConnection[Any]) -> Row | None:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(sql, {"journey_id": journey_id})
            return await cursor.fetchone()

        return await self._read(["journey_status"], min_position, read, agency)

    async def page(
        self,
        name: str,
        model: Model,
        agency: Agency,
        filters: dict[str, Any],
        after: list[Any] | None,
        limit: int,
        min_position: int | None,
    ) -> Page:
        query, parameters = page_parameters(model, agency, filters, after, limit)
        if not self.postgres:
            return await run_in_threadpool(self._page_sqlite, name, query, parameters, min_position, agency)
        sql = _postgres(query)

        async def read(connection: psycopg.AsyncConnection[Any]) -> Page:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(sql, parameters)
            rows = await cursor.fetchall()
            await cursor.execute(_POSITION_SQL, {"names": [name]})
            reached = await cursor.fetchone()
            return rows, (reached or {}).get("min") or 0

        return await self._read([name], min_position, read, agency)

    # PostgreSQL: choosing the source.

    async def _read(
        self,
        names: Sequence[str],
        position: int | None,
        read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        agency: Agency,
    ) -> T:
        assert self.primary is not None
        deadline = time.monotonic() + self.max_wait
        checked_head = False
        key: Watched | None = None  # the agency's key is watched once the read has to wait, not before
        with contextlib.ExitStack() as waiting:
            while True:
                if key is not None and key.revoked:
                    raise unauthorized(REVOKED)
                last_look = time.monotonic() >= deadline
                reached = 0
                for source in self._sources(primary=last_look):
                    try:
                        done, value, seen = await self._attempt(source, names, position, read)
                    except AWAY as error:
                        if source.standby:
                            source.leave_out(error)
                            continue
                        if isinstance(error, PoolTimeout):
                            raise
                        # The primary dropped its connections (a restart): the pool drops those that are broken, and
                        # the read is tried once more.
                        await source.pool.check()
                        done, value, seen = await self._attempt(source, names, position, read)
                    if done:
                        return cast(T, value)
                    reached = max(reached, seen)
                if position is None:  # every standby failed at once: the primary next
                    continue
                if not checked_head:
                    checked_head = True
                    head = await run_in_threadpool(self.head)
                    if position > head:
                        raise beyond_head(position, head)
                if last_look:
                    raise views_behind(names, reached, position)
                key = key or waiting.enter_context(self.revocations.watching(agency))
                await asyncio.sleep(POLL)

    @staticmethod
    async def _attempt(
        source: Source,
        names: Sequence[str],
        position: int | None,
        read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    ) -> tuple[bool, T | None, int]:
        """`read` on the source if its views have reached `position`; else how far they have."""
        async with source.pool.connection() as connection:
            if position is not None:
                reached = await _reached(connection, names)
                if reached < position:
                    return False, None, reached
            return True, await read(connection), 0

    def _sources(self, *, primary: bool) -> list[Source]:
        """The standbys that are up, each read starting at the next one; the primary when there is none, or when
        the standbys had their chance."""
        up = [s for s in self.standbys if s.up]
        if up:
            turn = next(self._turn) % len(up)
            up = up[turn:] + up[:turn]
        assert self.primary is not None
        return [*up, self.primary] if primary or not up else up

    # SQLite: the same queries, in a thread.

    def await_position(
        self, connection: Connection, names: Iterable[str], position: int | None, agency: Agency
    ) -> None:
        """SQLite's: return once every named view has applied the log up to `position`; otherwise, after a bounded
        wait, answer that the views are behind (503, Retry-After), or that the agency's key was revoked meanwhile."""
        if position is None:
            return
        names = list(names)
        deadline = time.monotonic() + self.max_wait
        checked = False
        key: Watched | None = None  # as on PostgreSQL: watched once the read has to wait
        with contextlib.ExitStack() as waiting:
            while True:
                if key is not None and key.revoked:
                    raise unauthorized(REVOKED)
                reached = connection.execute(position_query(), {"names": names}).scalar() or 0
                connection.rollback()  # the next look must see other transactions' commits
                if reached >= position:
                    return
                if not checked:
                    checked = True
                    if position > (known := self.head()):
                        raise beyond_head(position, known)
                if time.monotonic() >= deadline:
                    raise views_behind(names, reached, position)
                key = key or waiting.enter_context(self.revocations.watching(agency))
                time.sleep(POLL)

    def _journey_sqlite(self, journey_id: UUID, position: int | None, agency: Agency) -> Row | None:
        with self.engine.connect() as connection:
            self.await_position(connection, ["journey_status"], position, agency)
            found = connection.execute(journey_query(), {"journey_id": journey_id}).mappings().first()
        return plain_row(found) if found else None

    def _page_sqlite(
        self, name: str, query: sa.Select[Any], parameters: dict[str, Any], position: int | None, agency: Agency
    ) -> Page:
        with self.engine.connect() as connection:
            self.await_position(connection, [name], position, agency)
            return read_page(connection, name, query, parameters)


def read_page(connection: Connection, name: str, query: sa.Select[Any], parameters: dict[str, Any]) -> Page:
    """A page of view `name` through SQLAlchemy, and the position the view had reached."""
    rows = [plain_row(r) for r in connection.execute(query, parameters).mappings()]
    reached = connection.execute(position_query(), {"names": [name]}).scalar()
    return rows, reached or 0


async def _reached(connection: psycopg.AsyncConnection[Any], names: Sequence[str]) -> int:
    cursor = await connection.execute(_POSITION_SQL, {"names": list(names)})
    found = await cursor.fetchone()
    return int(found[0] or 0) if found else 0


def plain_row(row: Any) -> Row:
    """A row with plain `str` keys (SQLAlchemy's are a subclass, which orjson refuses)."""
    return {str(k): v for k, v in row.items()}
