"""Where the hot reads go on PostgreSQL: the primary, and the streaming standbys named by
`HAJJ_LEDGER_READ_DATABASE_URL` (comma-separated), each through a steady psycopg async pool
(`HAJJ_LEDGER_READ_POOL_SIZE` connections, never more, never fewer; no ping on checkout) in autocommit. A read asks
the standbys in turn, each read starting at the next one; a standby that fails is left out for a few seconds; the
primary answers when there is no standby up, or when the standbys had their chance. What a database that is away
raises is told here too (`database_away`), by the kinds of error the drivers define."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import eventsourcing.persistence
import psycopg
import sqlalchemy.exc
from psycopg_pool import AsyncConnectionPool

from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.settings import settings, variable_for
from hajj_ledger.store.connections import DATABASE_URL_VARIABLE, Postgres, causes, split_urls, with_parameter

READ_POOL_SIZE_VARIABLE = variable_for("read_pool_size")
READ_URL_VARIABLE = variable_for("read_database_url")
LEFT_OUT_FOR = 5.0  # seconds a standby that failed is not asked
STANDBY_TIMEOUT = 0.5  # seconds to wait for a standby's connection before asking another source
PRIMARY_TIMEOUT = 4.0  # seconds to wait for the primary's: longer only while it is away (then 503, within the grace)

log = logging.getLogger("hajj_ledger.api")
T = TypeVar("T")
# What a standby that is away raises on the hot reads' pools: another source answers instead. psycopg_pool's
# errors (PoolTimeout: no connection in time) are psycopg's OperationalError.
AWAY = (psycopg.OperationalError, psycopg.InterfaceError)
# What a database that is away raises anywhere: the drivers' errors of those kinds (a lost or refused connection,
# a timeout, a server shutting down), and the same kinds as the event store's library and SQLAlchemy raise them in
# turn (each of their own classes; the event store's pool has no connection in time: its OperationalError).
AWAY_ANYWHERE = (
    *AWAY,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)


def database_away(error: BaseException) -> bool:
    """Whether the error, or what caused it, is what a database that is away makes its driver raise."""
    return any(isinstance(cause, AWAY_ANYWHERE) for cause in causes(error))


def pool_size() -> int:
    return settings().read_pool_size


def standby_urls() -> list[str]:
    """The standbys' URLs, comma-separated; a URL may itself name several hosts (libpq's `h1:5432,h2:5432`)."""
    return split_urls(settings().read_database_url or "")


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
            found.conninfo,
            min_size=size,
            max_size=size,
            open=False,
            kwargs={"autocommit": True, **found.connect_kwargs()},
            name=f"reads-{self.name}",
            timeout=STANDBY_TIMEOUT if standby else PRIMARY_TIMEOUT,
        )

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.left_out_until

    def leave_out(self, error: BaseException) -> None:
        log.warning("read standby %s left out for %.0f s: %s", self.name, LEFT_OUT_FOR, error)
        self.left_out_until = time.monotonic() + LEFT_OUT_FOR

    def log_ledger(self) -> JourneyLedger:
        """A standby's read-only ledger, for reads of its log: made once, when first needed."""
        with self.ledger_made:
            if self.ledger is None:
                self.ledger = JourneyLedger(self.url, create_tables=False)
            return self.ledger


class Sources:
    """The primary and the standbys of one app's hot reads, in the order a read asks them."""

    def __init__(self, database_url: str, standbys: Sequence[str], size: int) -> None:
        self.primary = Source(database_url, size, standby=False)
        self.standbys = [Source(url, size, standby=True) for url in standbys]
        self._turn = itertools.count()

    async def open(self) -> None:
        await self.primary.pool.open(wait=False)
        for standby in self.standbys:  # a standby that is away is left out, never waited for
            await standby.pool.open(wait=False)

    async def close(self) -> None:
        for source in [*self.standbys, self.primary]:
            await source.pool.close()
            if source.ledger is not None:
                source.ledger.close()

    def in_turn(self, *, primary: bool) -> list[Source]:
        """The standbys that are up, each read starting at the next one; the primary when there is none, or when
        the standbys had their chance (`primary`)."""
        up = [s for s in self.standbys if s.up]
        if up:
            turn = next(self._turn) % len(up)
            up = up[turn:] + up[:turn]
        return [*up, self.primary] if primary or not up else up

    def from_log(self, read: Callable[[JourneyLedger], T], ledger: JourneyLedger) -> T:
        """`read` on a standby's log (any standby that is up, in turn), else on the primary's (`ledger`). In a
        thread."""
        for source in self.in_turn(primary=False) if self.standbys else []:
            if not source.standby:
                break
            try:
                return read(source.log_ledger())
            except Exception as error:
                if not database_away(error):
                    raise
                source.leave_out(error)
        return read(ledger)
