"""How the ledger reaches PostgreSQL: one URL with a few parameters of the ledger's own, and the pools' sizes.

`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB` takes these query parameters, and no others:
- `schema=NAME`: the schema holding everything of this ledger (default `public`); `hajj-ledger migrate` makes it.
- `connect_timeout=S`: seconds the event store waits for a pooled connection, ten tries (default 1).
- `pool_mode=transaction`: the URL reaches PostgreSQL through PgBouncer in transaction mode (or another transaction
  pooler), where consecutive transactions of one client may run on different server connections: no statement is
  prepared on it and no session state is relied on. What needs a session of its own (LISTEN, session advisory
  locks, DDL) goes to `HAJJ_LEDGER_DIRECT_DATABASE_URL`.
They are the ledger's: libpq never sees them. TLS and the like are libpq's environment variables (`PGSSLMODE`, ...),
which every connection the ledger opens reads.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from tenacity import RetryCallState

DATABASE_URL_VARIABLE = "HAJJ_LEDGER_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///var/hajj-ledger.sqlite3"
DIRECT_DATABASE_URL_VARIABLE = "HAJJ_LEDGER_DIRECT_DATABASE_URL"
WRITE_POOL_SIZE_VARIABLE = "HAJJ_LEDGER_WRITE_POOL_SIZE"
WRITE_POOL_OVERFLOW_VARIABLE = "HAJJ_LEDGER_WRITE_POOL_OVERFLOW"
WRITE_POOL_SIZE = 2
WRITE_POOL_OVERFLOW = 8

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # no quoting anywhere, no case folding surprises
POOL_MODES = ("session", "transaction")
# What a database that is away, or has no connection to spare, raises (psycopg's, the pool's, eventsourcing's).
AWAY = frozenset({"OperationalError", "InterfaceError", "PoolTimeout", "PoolError", "ConnectionTimeout"})


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL URL of the ledger, taken apart."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    schema: str = "public"
    connect_timeout: int = 1
    pool_mode: str = "session"

    @classmethod
    def from_url(cls, url: str, variable: str = DATABASE_URL_VARIABLE) -> Postgres:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"{variable}: expected postgresql://USER@HOST:PORT/DB, got {parts.scheme!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for name in query:
            if name not in ("schema", "connect_timeout", "pool_mode"):
                hint = (
                    f"; pool sizes are {WRITE_POOL_SIZE_VARIABLE} and {WRITE_POOL_OVERFLOW_VARIABLE}"
                    if name in ("pool_size", "max_overflow")
                    else "; libpq's own settings go in its environment variables (PGSSLMODE, ...)"
                )
                raise ValueError(
                    f"{variable}: unknown parameter {name!r} (the URL takes schema, connect_timeout, pool_mode{hint})"
                )
        schema = query.get("schema", "public")
        if not SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
            raise ValueError(f"{variable}: schema {schema!r} is not a plain lower-case name (a-z, 0-9, _)")
        pool_mode = query.get("pool_mode", "session")
        if pool_mode not in POOL_MODES:
            raise ValueError(f"{variable}: pool_mode {pool_mode!r} is not one of {', '.join(POOL_MODES)}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            schema=schema,
            connect_timeout=_positive(variable, "connect_timeout", query.get("connect_timeout", "1")),
            pool_mode=pool_mode,
        )

    @property
    def transaction_pooled(self) -> bool:
        return self.pool_mode == "transaction"

    @property
    def conninfo(self) -> str:
        """The libpq connection string: where to connect, nothing of the ledger's own."""
        found: dict[str, str | int] = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}
        if self.password:
            found["password"] = self.password
        from psycopg.conninfo import make_conninfo  # here: psycopg is not needed on SQLite

        return make_conninfo("", **found)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every psycopg connection on this URL (`psycopg.connect`, a pool's `kwargs`).

        Direct: the search path is the schema, set at the start of the session (no statement). Through a transaction
        pooler: nothing is prepared, since a statement prepared on one server connection is missing on the next; and
        the search path cannot travel (PgBouncer 1.18 refuses the `options` startup parameter, and a `SET` would
        stay on whichever server connection ran it), so the server must give it: see `search_path_problem`."""
        if self.transaction_pooled:
            return {"prepare_threshold": None}
        return {"options": f"-csearch_path={self.schema}"}

    def search_path_problem(self, current_schema: str | None) -> str | None:
        """What is wrong when a connection's `current_schema()` is not the ledger's schema; None when it is."""
        if current_schema == self.schema:
            return None
        if not self.transaction_pooled:
            return f"schema {self.schema!r} does not exist: run `hajj-ledger migrate`"
        return (
            f"connections through the pooler use schema {current_schema!r}, not {self.schema!r}: behind a transaction "
            f"pooler the server sets the search path: ALTER ROLE {self.user} IN DATABASE {self.dbname} "
            f"SET search_path = {self.schema}, or PgBouncer's connect_query = 'SET search_path = {self.schema}' in "
            "the database's entry"
        )


def _positive(variable: str, name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise ValueError(f"{variable}: {name} must be a whole number of at least 1, got {text!r}")
    return value


def _count(variable: str, default: int, least: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < least:
        raise ValueError(f"{variable}: expected a whole number of at least {least}, got {text!r}")
    return int(text)


def write_pool_size() -> int:
    """Connections each event store pool keeps open (`HAJJ_LEDGER_WRITE_POOL_SIZE`, default 2)."""
    return _count(WRITE_POOL_SIZE_VARIABLE, WRITE_POOL_SIZE, 1)


def write_pool_overflow() -> int:
    """Connections an event store pool may open beyond its size under a burst, closed again after ten idle minutes
    (`HAJJ_LEDGER_WRITE_POOL_OVERFLOW`, default 8)."""
    return _count(WRITE_POOL_OVERFLOW_VARIABLE, WRITE_POOL_OVERFLOW, 0)


def direct_url(url: str) -> str:
    """The URL for what needs a session of its own (LISTEN, session advisory locks, DDL):
    `HAJJ_LEDGER_DIRECT_DATABASE_URL` when set (the same database and schema, never through a transaction pooler),
    else `url` itself, which then must not go through a transaction pooler."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    direct = os.environ.get(DIRECT_DATABASE_URL_VARIABLE, "")
    if not direct:
        if Postgres.from_url(url).transaction_pooled:
            raise ValueError(
                f"{DATABASE_URL_VARIABLE} goes through a transaction pooler (pool_mode=transaction): set "
                f"{DIRECT_DATABASE_URL_VARIABLE} to the same database reached directly, for what needs a session of "
                "its own (LISTEN, advisory locks, migrations)"
            )
        return url
    found = Postgres.from_url(direct, DIRECT_DATABASE_URL_VARIABLE)
    if found.transaction_pooled:
        raise ValueError(
            f"{DIRECT_DATABASE_URL_VARIABLE}: must reach PostgreSQL directly, not with pool_mode=transaction"
        )
    if found.schema != Postgres.from_url(url).schema:
        raise ValueError(f"{DIRECT_DATABASE_URL_VARIABLE}: must name the same schema as {DATABASE_URL_VARIABLE}")
    return direct


# Batch jobs (simulate, export, rebuild, replay) wait for the database rather than give up after the API's second.
BATCH_CONNECT_TIMEOUT = 30
BATCH_PATIENCE = 600.0  # seconds of backoff before a batch job gives up on an unreachable database
T = TypeVar("T")


def for_batch_jobs(url: str) -> str:
    """`url` with a pooled connection awaited BATCH_CONNECT_TIMEOUT seconds, unless it names its own wait."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("connect_timeout", str(BATCH_CONNECT_TIMEOUT))
    return urlunsplit(parts._replace(query=urlencode(query)))


def patiently(
    call: Callable[[], T], job: str, patience: float = BATCH_PATIENCE, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`call()`, again after a growing pause (1 s doubling to 60 s, jittered) while the database is away or has no
    connection to spare, for up to `patience` seconds. For idempotent steps only: a batch of commands (their ids make
    a rerun a repeat) or a read."""
    from tenacity import Retrying, retry_if_exception, wait_exponential_jitter  # imported when needed only

    def say(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        print(f"hajj-ledger {job}: the database is busy or away ({first}); trying again in {pause:.0f} s",
              file=sys.stderr)  # fmt: skip

    retrying = Retrying(
        retry=retry_if_exception(lambda error: type(error).__name__ in AWAY),
        wait=wait_exponential_jitter(initial=1.0, max=60.0, jitter=0.5),
        stop=lambda state: state.idle_for >= patience,  # the pauses so far, however long each try took
        sleep=sleep,
        before_sleep=say,
        reraise=True,
    )
    return retrying(call)
