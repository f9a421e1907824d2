"""The hot reads, a journey's status and the views' pages, answered on the event loop, once the views have reached
the position asked for (`min_position`, waiting up to `HAJJ_LEDGER_MAX_WAIT`, else 503).

On PostgreSQL they go through psycopg's async pools (api/sources.py: the primary's, and the standbys' in turn), each
query compiled once per shape (projections/queries.py builds them). A read asking for `min_position` goes to a
source whose views have reached it, else waits, then asks the primary, then answers 503. A journey's history, the
audit trail and a journey as of a past moment are read from a standby's log the same way (`from_log`), without a
position to wait for. Writes, receipts, identities, the chain and the auditors' past views stay on the primary.

On SQLite (the embedded demo store) the same queries run through SQLAlchemy in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hajj_ledger.api.agencies import REVOKED, Agency, Revocations, Watched
from hajj_ledger.api.problems import ProblemError, invalid, unauthorized
from hajj_ledger.api.sources import AWAY, Source, Sources, pool_size
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.queries import (
    Page,
    Row,
    journey_query,
    page_parameters,
    plain_row,
    position_query,
    read_page,
)

POLL = 0.02  # seconds between two looks at the views' positions while waiting for `min_position`

T = TypeVar("T")
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


@functools.cache
def _postgres(query: sa.Select[Any]) -> str:
    """The query's SQL for psycopg, compiled once."""
    return str(query.compile(dialect=_DIALECT))


def answer(body: Any) -> Response:
    """A 200 JSON answer written by orjson: what FastAPI would write for the route's response model (UTC as `Z`),
    without validating rows the database just gave."""
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def views_behind(names: Sequence[str], reached: int, wanted: int) -> ProblemError:
    problem = ProblemError(
        503,
        "views-behind",
        "Views behind",
        f"the views {', '.join(names)} have reached position {reached}, not yet {wanted}",
        reached=reached,
        wanted=wanted,
    )
    problem.headers["Retry-After"] = "1"
    return problem


def beyond_head(position: int, head: int, path: str = "query.min_position") -> ProblemError:
    """The refusal of a position past the ledger's head, given as `path` (`query.after`, `header.last-event-id`)."""
    return invalid(
        f"{path.partition('.')[2]}: {position} is beyond the ledger's head ({head})",
        [{"path": path, "reason": f"beyond the ledger's head ({head})"}],
    )


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
        postgres = database_url.startswith(("postgresql://", "postgres://"))
        self.sources = Sources(database_url, standbys, pool_size() if size is None else size) if postgres else None

    async def open(self) -> None:
        if self.sources is not None:
            await self.sources.open()

    async def close(self) -> None:
        if self.sources is not None:
            await self.sources.close()

    def from_log(self, read: Callable[[JourneyLedger], T]) -> T:
        """`read` on a standby's log (any standby that is up, in turn), else on the primary's. In a thread."""
        return read(self.ledger) if self.sources is None else self.sources.from_log(read, self.ledger)

    # The reads.

    async def journey(self, journey_id: UUID, min_position: int | None, agency: Agency) -> Row | None:
        if self.sources is None:
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
        query, parameters = page_parameters(model, agency.actor, filters, after, limit)
        if self.sources is None:
            return await run_in_threadpool(self._page_sqlite, name, query, parameters, min_position, agency)
        sql = _postgres(query)

        async def read(connection: psycopg.AsyncConnection[Any]) -> Page:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(sql, parameters)
            rows = await cursor.fetchall()
            await cursor.execute(_postgres(position_query(one_array=True)), {"names": [name]})
            reached = await cursor.fetchone()
            return rows, (reached or {}).get("reached") or 0

        return await self._read([name], min_position, read, agency)

    # PostgreSQL: choosing the source.

    async def _read(
        self,
        names: Sequence[str],
        position: int | None,
        read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        agency: Agency,
    ) -> T:
        assert self.sources is not None
        deadline = time.monotonic() + self.max_wait
        checked_head = False
        key: Watched | None = None  # the agency's key is watched once the read has to wait, not before
        with contextlib.ExitStack() as waiting:
            while True:
                if key is not None and key.revoked:
                    raise unauthorized(REVOKED)
                last_look = time.monotonic() >= deadline
                reached = 0
                for source in self.sources.in_turn(primary=last_look):
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


async def _reached(connection: psycopg.AsyncConnection[Any], names: Sequence[str]) -> int:
    cursor = await connection.execute(_postgres(position_query(one_array=True)), {"names": list(names)})
    found = await cursor.fetchone()
    return int(found[0] or 0) if found else 0
