"""How the ledger reaches PostgreSQL: URLs as libpq takes them, a few parameters of the ledger's own, and the pools'
sizes.

A URL is libpq's (https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNSTRING): one host or several,
`postgresql://USER[:PASSWORD]@HOST1[:PORT1][,HOST2[:PORT2]...]/DB[?PARAMETERS]`, and any parameter libpq takes
(`target_session_attrs`, `sslmode`, `application_name`, `host=` for a socket directory, ...). libpq reads it: what it
refuses is refused at start-up, named by the variable. Where a URL names several hosts and no `target_session_attrs`,
the write and direct URLs get `target_session_attrs=read-write`: the ledger connects to whichever host takes writes
(the primary, or a standby since promoted) and never to a standby. libpq's environment variables (`PGSSLMODE`, ...)
apply as ever to what the URL leaves unsaid, except the host, port, user and database: unsaid, they are
127.0.0.1, 5432, postgres and postgres.

The ledger's own query parameters, taken out before libpq sees the URL:
- `schema=NAME`: the schema holding everything of this ledger (default `public`); `hajj-ledger migrate` makes it.
- `connect_timeout=S`: libpq's own (seconds to wait for each host), and the seconds the event store waits for a
  pooled connection (default 1; libpq waits at least 2).
- `pool_mode=transaction`: the URL reaches PostgreSQL through PgBouncer in transaction mode (or another transaction
  pooler), where consecutive transactions of one client may run on different server connections: no statement is
  prepared on it and no session state is relied on. What needs a session of its own (LISTEN, session advisory
  locks, DDL) goes to `HAJJ_LEDGER_DIRECT_DATABASE_URL`.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from hajj_ledger.settings import DEFAULT_DATABASE_URL as DEFAULT_DATABASE_URL
from hajj_ledger.settings import settings, variable_for

if TYPE_CHECKING:
    from tenacity import RetryCallState

DATABASE_URL_VARIABLE = variable_for("database_url")
DIRECT_DATABASE_URL_VARIABLE = variable_for("direct_database_url")
WRITE_POOL_SIZE_VARIABLE = variable_for("write_pool_size")
WRITE_POOL_OVERFLOW_VARIABLE = variable_for("write_pool_overflow")

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # no quoting anywhere, no case folding surprises
POOL_MODES = ("session", "transaction")
OWN_PARAMETERS = ("schema", "connect_timeout", "pool_mode")  # the ledger's: taken out before libpq sees the URL
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")  # libpq 14+'s
# The forms a URL may take, as every refusal of one names them.
POSTGRES_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]...]/DB[?PARAMETERS]"
SQLITE_FORM = "sqlite:///PATH"
STORE_FORMS = f"{SQLITE_FORM} (a file) or {POSTGRES_FORM} (libpq's URL)"
# What a database that is away, or has no connection to spare, raises (psycopg's, the pool's, eventsourcing's,
# the ledger's own below).
AWAY = frozenset(
    {
        "OperationalError", "InterfaceError", "PoolTimeout", "PoolError", "ConnectionTimeout",
        "StoreUnavailableError", "OutcomeUnknownError",
    }
)  # fmt: skip
READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction: a write reached a standby (or a demoted primary)


class StoreUnavailableError(Exception):
    """The store could not be reached (or only a read-only server could) within the time a write may take: nothing
    was recorded. The same command, sent again, is recorded once."""

    retry_after = 1  # seconds


class OutcomeUnknownError(StoreUnavailableError):
    """The connection was lost after a batch was sent and before the store confirmed it, and the store could not be
    asked again in time: each command was recorded, or not. Sending it again with the same command id settles it:
    recorded then if it was not, answered as a repeat if it was."""


def url_refusal(variable: str, url: str, why: str, forms: str = STORE_FORMS) -> ValueError:
    """A URL refused: the variable, what is wrong, and the forms expected (a path given for a URL gets the form it
    was likely meant as)."""
    hint = ""
    if "://" not in url and url.strip():
        hint = f" (a file path? then sqlite:///{url.strip()})" if "sqlite:" in forms or SQLITE_FORM in forms else ""
    return ValueError(f"{variable}: {why}; expected {forms}{hint}")


def unsupported_store(url: str) -> ValueError:
    """HAJJ_LEDGER_DATABASE_URL naming neither SQLite nor PostgreSQL."""
    scheme = urlsplit(url).scheme
    return url_refusal(DATABASE_URL_VARIABLE, url, f"unsupported store {f'{scheme}://...' if scheme else repr(url)}")


def split_urls(text: str) -> list[str]:
    """URLs given one after another, comma-separated (`HAJJ_LEDGER_READ_DATABASE_URL`): a comma starts a new URL
    only where a scheme follows it, since a libpq URL itself may name several hosts (`h1:5432,h2:5432`)."""
    urls = [u.strip().rstrip(",").strip() for u in re.split(r",\s*(?=[a-z][a-z0-9+.-]*://)", text)]
    return [u for u in urls if u]


def with_parameter(url: str, name: str, value: str) -> str:
    """`url` with the query parameter `name=value`, unless it gives one of that name already."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(n == name for n, _ in query):
        return url
    return _with_query(url, [*query, (name, value)])


def _with_query(url: str, query: list[tuple[str, str]]) -> str:
    """`url` with its query replaced (by string: `urlunsplit` turns `postgresql:///db` into `postgresql:/db`)."""
    base = url.split("?", 1)[0]
    return f"{base}?{urlencode(query)}" if query else base


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it, ten deep at most (a chain can loop)."""
    cause: BaseException | None = error
    for _ in range(10):
        if cause is None:
            return
        yield cause
        cause = cause.__cause__ or cause.__context__


def first_line(error: BaseException) -> str:
    """The error's message in one line, to print (its class's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def is_read_only(error: BaseException) -> bool:
    """Whether the error, or what caused it, is a write refused by a server in recovery (a standby) or read-only."""
    return any(getattr(cause, "sqlstate", None) == READ_ONLY_SQLSTATE for cause in causes(error))


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL URL of the ledger, taken apart: libpq's parameters, and the ledger's own."""

    parameters: tuple[tuple[str, str], ...]  # libpq's, as it read them from the URL, with the ledger's defaults
    schema: str = "public"
    connect_timeout: int = 1
    pool_mode: str = "session"

    @classmethod
    def from_url(cls, url: str, variable: str = DATABASE_URL_VARIABLE, *, writes: bool = True) -> Postgres:
        """`writes`: the URL is for writing (the write and direct URLs): several hosts mean "the one that takes
        writes" unless the URL says otherwise. A standby's (read) URL is taken as it is."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            got = f"{parts.scheme}://..." if parts.scheme else repr(url)
            forms = STORE_FORMS if variable == DATABASE_URL_VARIABLE else f"{POSTGRES_FORM} (libpq's URL)"
            raise url_refusal(variable, url, f"got {got}", forms)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {name: value for name, value in query if name in OWN_PARAMETERS}
        for name in ("pool_size", "max_overflow"):
            if name in dict(query):
                raise ValueError(
                    f"{variable}: unknown parameter {name!r}: pool sizes are {WRITE_POOL_SIZE_VARIABLE} and "
                    f"{WRITE_POOL_OVERFLOW_VARIABLE}"
                )
        from psycopg import ProgrammingError  # here: psycopg is not needed on SQLite
        from psycopg.conninfo import conninfo_to_dict

        rest = [(n, v) for n, v in query if n not in ("schema", "pool_mode")]  # connect_timeout is libpq's too
        try:
            found = {k: str(v) for k, v in conninfo_to_dict(_with_query(url, rest)).items()}
            refused = ""
        except ProgrammingError as error:  # libpq's own words: "invalid URI query parameter: "sslmod""
            found, refused = {}, str(error).strip()
        if refused:  # raised here, not in the handler: psycopg's errors behind it would read as the database away
            raise ValueError(
                f"{variable}: libpq refuses the URL ({refused}); it takes libpq's parameters and the ledger's "
                f"{', '.join(OWN_PARAMETERS)}: {POSTGRES_FORM}"
            )
        schema = own.get("schema", "public")
        if not SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
            raise ValueError(f"{variable}: schema {schema!r} is not a plain lower-case name (a-z, 0-9, _)")
        pool_mode = own.get("pool_mode", "session")
        if pool_mode not in POOL_MODES:
            raise ValueError(f"{variable}: pool_mode {pool_mode!r} is not one of {', '.join(POOL_MODES)}")
        timeout = _positive(variable, "connect_timeout", own.get("connect_timeout", "1"))
        if "host" not in found and "hostaddr" not in found:
            found["host"] = "127.0.0.1"
        found.setdefault("user", "postgres")
        found.setdefault("dbname", "postgres")
        found["connect_timeout"] = str(timeout)
        ports = [p for p in found.get("port", "").split(",") if p]
        if any(not p.isdigit() or not 0 < int(p) < 65536 for p in ports):
            raise url_refusal(variable, url, f"port {found['port']!r} is not a port number (1-65535)", POSTGRES_FORM)
        attrs = found.get("target_session_attrs")
        if attrs is not None and attrs not in SESSION_ATTRS:
            raise ValueError(f"{variable}: target_session_attrs {attrs!r} is not one of {', '.join(SESSION_ATTRS)}")
        if attrs is None and writes and "," in found["host"]:
            found["target_session_attrs"] = "read-write"
        return cls(tuple(found.items()), schema=schema, connect_timeout=timeout, pool_mode=pool_mode)

    def _get(self, name: str, default: str = "") -> str:
        return dict(self.parameters).get(name, default)

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """Each host with its port, in the URL's order (libpq's rule: one port for all, or one each)."""
        hosts = self._get("host") or self._get("hostaddr")
        names = hosts.split(",")
        ports = [int(p) if p else 5432 for p in self._get("port").split(",")]
        ports = ports * len(names) if len(ports) == 1 else ports
        return [(h or "127.0.0.1", p) for h, p in zip(names, ports + [5432] * len(names), strict=False)]

    @property
    def host(self) -> str:
        """The first host."""
        return self.hosts[0][0]

    @property
    def port(self) -> int:
        return self.hosts[0][1]

    @property
    def name(self) -> str:
        """Where, to say so: `HOST:PORT`, or several so, comma-separated."""
        return ",".join(f"{h}:{p}" for h, p in self.hosts)

    @property
    def dbname(self) -> str:
        return self._get("dbname")

    @property
    def user(self) -> str:
        return self._get("user")

    @property
    def password(self) -> str:
        return self._get("password")

    @property
    def transaction_pooled(self) -> bool:
        return self.pool_mode == "transaction"

    @property
    def conninfo(self) -> str:
        """The libpq connection string: every parameter of libpq's the URL gave, nothing of the ledger's own."""
        from psycopg.conninfo import make_conninfo  # here: psycopg is not needed on SQLite

        return make_conninfo("", **dict(self.parameters))

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every psycopg connection on this URL (`psycopg.connect`, a pool's `kwargs`).

        Direct: the search path is the schema, set at the start of the session (no statement). Through a transaction
        pooler: nothing is prepared, since a statement prepared on one server connection is missing on the next; and
        the search path cannot travel (PgBouncer 1.18 refuses the `options` startup parameter, and a `SET` would
        stay on whichever server connection ran it), so the server must give it: see `search_path_problem`."""
        if self.transaction_pooled:
            return {"prepare_threshold": None}
        given = self._get("options")  # the URL's own startup options, kept
        return {"options": f"{given} -csearch_path={self.schema}".strip()}

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


def write_pool_size() -> int:
    """Connections each event store pool keeps open (`HAJJ_LEDGER_WRITE_POOL_SIZE`, default 2)."""
    return settings().write_pool_size


def write_pool_overflow() -> int:
    """Connections an event store pool may open beyond its size under a burst, closed again after ten idle minutes
    (`HAJJ_LEDGER_WRITE_POOL_OVERFLOW`, default 8)."""
    return settings().write_pool_overflow


def direct_url(url: str) -> str:
    """The URL for what needs a session of its own (LISTEN, session advisory locks, DDL):
    `HAJJ_LEDGER_DIRECT_DATABASE_URL` when set (the same database and schema, never through a transaction pooler),
    else `url` itself, which then must not go through a transaction pooler."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    direct = settings().direct_database_url
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
    return _with_query(url, list(query.items()))


def patiently(
    call: Callable[[], T], job: str, patience: float = BATCH_PATIENCE, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`call()`, again after a growing pause (1 s doubling to 60 s, jittered) while the database is away or has no
    connection to spare, for up to `patience` seconds. For idempotent steps only: a batch of commands (their ids make
    a rerun a repeat) or a read."""
    from tenacity import Retrying, retry_if_exception, wait_exponential_jitter  # imported when needed only

    def say(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        first = first_line(error) if error is not None else ""
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
