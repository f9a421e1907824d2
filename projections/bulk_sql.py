"""Views built from position 0 in SQL on PostgreSQL: the bulk path at the speed of the database (issue 29).

Folding the log in Python tops out near 10,000 events/s for every view together on two cores (bench/NOTES.md,
"Where a catch-up from zero spends its time"): reading, decoding and `apply` are all Python. Here the database does
it, set-based. One pass parses each stored event's JSON once into a staging table (an UNLOGGED table, so that
PostgreSQL's parallel workers can read it): the envelope every event has, and the fields the views being built read,
of the events they read. Then each view that declares its rows in SQL (`Projection.in_sql`, beside its `apply` in
its own module) fills its generation's tables with INSERT ... SELECT over the staged events, and its position moves
from 0 to the head by compare-and-set in the same transaction: a runner that got there first wins, as in bulk.py.

Only generations at position 0 (empty tables) are built so; the live runner, or bulk.py's fold, takes them on from
the head. Views without SQL, SQLite, and read models kept in another database than the log keep the fold.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from psycopg import sql
from psycopg.rows import tuple_row
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.domain.vocabulary import MAKKAH_TIME
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections.framework import InSql, Model, PositionMovedError, Projection, advance

log = logging.getLogger("hajj_ledger.projections")
# The columns of every staged event, whatever view reads it: its position, its aggregate, its class's name, when the
# ledger recorded it, and its stamp's agency and time (stamp.agency_id, stamp.occurred_at).
ENVELOPE = {
    "position": "bigint",
    "aggregate_id": "uuid",
    "event": "text",
    "recorded_at": "timestamptz",
    "agency_id": "text",
    "occurred_at": "timestamptz",
}
STAGED_PREFIX = "bulk_staged_"  # the staged tables' names: the prefix, then a build's own
LOCKS = "hashtext('hajj_ledger.bulk_staged')"  # the advisory locks' class: one lock per staged table's name
# Set for the build's own transactions: its sorts and hashes in memory, its staging scan parallel where it pays, and
# no nested loop over the staged table, which has no index to loop on: one wrong estimate of a join's rows made a
# view's INSERT re-sort millions of staged rows per outer row (over 2.5 min at 10 M events, i-sqlviews2's finding).
SETTINGS = (
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL maintenance_work_mem = '512MB'",
    "SET LOCAL parallel_setup_cost = 0",
    "SET LOCAL parallel_tuple_cost = 0",
    "SET LOCAL enable_nestloop = off",
)


def literal(value: object) -> str:
    """A value as an SQL literal (a string quoted, None as NULL): for the VALUES lists and IN lists that views
    generate from the catalogue, their one place, rather than copying its facts into their SQL."""
    return sql.Literal(value).as_string(None)


def literals(values: Iterable[object]) -> str:
    """`'a', 'b'`: for `IN (...)`."""
    return ", ".join(literal(value) for value in values)


def values_of(rows: Iterable[Sequence[object]]) -> str:
    """`VALUES ('a', 1), ('b', 2)`: a table of literals, to join the staged events with."""
    return "VALUES " + ", ".join(f"({literals(row)})" for row in rows)


def last_of(staged: str, events: Iterable[str]) -> str:
    """The last staged event of those named, of each aggregate that has one: every staged column, as a subquery (what
    `apply` keeps for most columns: the value of the last event of some kinds)."""
    return (
        f'(SELECT DISTINCT ON (aggregate_id) * FROM "{staged}" WHERE event IN ({literals(sorted(events))}) '
        "ORDER BY aggregate_id, position DESC)"
    )


def makkah_day_sql(moment: str) -> str:
    """The day in Makkah of an instant (a timestamptz expression), as `vocabulary.makkah_day` works it out."""
    return f"({moment} AT TIME ZONE {literal(MAKKAH_TIME.utcoffset(None))})::date"


def buildable(engine: Engine, ledger: JourneyLedger, targets: Sequence[tuple[Projection, str, int]]) -> list[int]:
    """The indexes of the targets (projection, generation, position) that `build` takes: at position 0, with rows in
    SQL, on PostgreSQL, the read models in the log's own database."""
    chosen = [i for i, (p, _, at) in enumerate(targets) if at == 0 and p.in_sql is not None]
    if not chosen or engine.dialect.name != "postgresql" or _events_table(ledger) is None:
        return []
    return chosen if _same_database(engine, ledger) else []


def build(engine: Engine, ledger: JourneyLedger, targets: Sequence[tuple[Projection, str]], head: int) -> None:
    """Fill each (projection, generation), at position 0, with its rows as of position `head`, and move its position
    to `head`; one that another runner has moved meanwhile is left to it."""
    events = _events_table(ledger)
    assert events is not None, "a PostgreSQL ledger"
    staged = f"{STAGED_PREFIX}{uuid.uuid4().hex[:12]}"
    fields = _fields([p.in_sql for p, _ in targets if p.in_sql is not None])
    names = sorted({name for p, _ in targets for name in p.events})
    with _staging_guard(ledger, staged):
        _drop_leftovers(engine)
        _build(engine, targets, staged, events, fields, names, head)


def _build(
    engine: Engine,
    targets: Sequence[tuple[Projection, str]],
    staged: str,
    events: str,
    fields: dict[str, str],
    names: list[str],
    head: int,
) -> None:
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            _settings(connection)
            _stage(connection, staged, events, fields, names, head)
            if len(targets) > 1:  # views that read a few kinds of event find them without a scan of all the rest
                _execute(connection, f'CREATE INDEX ON "{staged}" (event)')
        log.info("in SQL: events to %d staged in %.1f s", head, time.perf_counter() - started)
        for projection, generation in targets:
            started = time.perf_counter()
            try:
                with engine.begin() as connection:
                    _settings(connection)
                    advance(connection, projection, generation, 0, head)
                    _insert(connection, projection, generation, staged)
            except PositionMovedError:
                continue  # another runner applied this stretch: its rows stand
            log.info("in SQL: %s built to %d in %.1f s", projection.name, head, time.perf_counter() - started)
    finally:
        with engine.begin() as connection:
            _execute(connection, f'DROP TABLE IF EXISTS "{staged}"')


@contextmanager
def _staging_guard(ledger: JourneyLedger, staged: str) -> Iterator[None]:
    """A lock on the staged table's name, held while the build lives: by a transaction of the log's own pool (a
    transaction, not a session, so that it holds through a transaction pooler too), open for the build's length.
    A build that is killed loses it with its connection, and the next build knows its table for a leftover."""
    with ledger.store.datastore.get_connection() as own, own.transaction():  # type: ignore[attr-defined]
        own.execute("SET LOCAL idle_in_transaction_session_timeout = 0")  # the pool's is for the ledger's own
        own.execute(f"SELECT pg_advisory_xact_lock({LOCKS}, hashtext(%s))", (staged,))
        yield


def _drop_leftovers(engine: Engine) -> None:
    """The staged tables of builds that were killed, dropped: each one whose name no live build holds (a live build
    takes its lock before it makes its table, so a table found without one is a dead build's)."""
    query = "SELECT relname FROM pg_class WHERE relname LIKE :like AND relkind = 'r' AND pg_table_is_visible(oid)"
    with engine.connect() as connection:
        found = connection.execute(sa.text(query), {"like": STAGED_PREFIX.replace("_", "\\_") + "%"})
        leftovers = list(found.scalars())
    for name in leftovers:
        with engine.begin() as connection:
            free = connection.execute(
                sa.text(f"SELECT pg_try_advisory_xact_lock({LOCKS}, hashtext(:name))"), {"name": name}
            ).scalar_one()
            if free:
                _execute(connection, f'DROP TABLE IF EXISTS "{name}"')
                log.info("in SQL: %s, left by a build that did not finish, dropped", name)


def _fields(declared: Sequence[InSql]) -> dict[str, str]:
    """Every field the views read, once: two views reading one field must stage it as the same type."""
    fields: dict[str, str] = {}
    for in_sql in declared:
        for name, kind in in_sql.fields.items():
            if name in ENVELOPE or fields.setdefault(name, kind) != kind:
                raise ValueError(f"staged field {name!r}: {kind} clashes with {ENVELOPE.get(name) or fields[name]}")
    return fields


def _stage(
    connection: Connection, staged: str, events: str, fields: dict[str, str], names: list[str], head: int
) -> None:
    """The events the views read, up to `head`, each one's JSON parsed once into jsonb and the fields asked for
    taken from it: a quarter faster than json_to_record over the text, which parses it twice, and a fifth of the time
    of `->>` field by field (bench/NOTES.md)."""
    record = ", ".join(['"timestamp" timestamptz', "stamp jsonb", *(f'"{n}" {k}' for n, k in fields.items())])
    columns = "".join(f', r."{n}"' for n in fields)
    # Literals, not parameters: CREATE TABLE AS takes none.
    _execute(
        connection,
        sql.SQL(
            f'CREATE UNLOGGED TABLE "{staged}" AS '
            "SELECT e.notification_id AS position, e.originator_id AS aggregate_id, e.event, "
            f'r."timestamp" AS recorded_at, s.agency_id, s.occurred_at{columns} '
            f"FROM (SELECT *, split_part(topic, '.', -1) AS event FROM {events} "
            "WHERE notification_id <= {head}) AS e "
            f"CROSS JOIN LATERAL jsonb_to_record(convert_from(e.state, 'UTF8')::jsonb) AS r({record}) "
            "CROSS JOIN LATERAL jsonb_to_record(r.stamp) AS s(agency_id text, occurred_at timestamptz) "
            "WHERE e.event = ANY({names})"
        ).format(head=sql.Literal(head), names=sql.Literal(names)),
    )
    _execute(connection, f'ANALYZE "{staged}"')


def _insert(connection: Connection, projection: Projection, generation: str, staged: str) -> None:
    """Each table's rows, into its empty table: its key and indexes dropped first and built once over all the rows
    (a duplicate key fails the transaction all the same), rather than kept up row by row: the trail's million rows
    took 14 s with its key and indexes in place, 7.5 s with them built after (bench/NOTES.md)."""
    in_sql = projection.in_sql
    assert in_sql is not None
    selects = in_sql.rows(staged, connection) if in_sql.reads else in_sql.rows(staged)
    inserts = [f"INSERT INTO {_columns(model, generation)} {select}" for model, select in selects.items()]
    keys = [_drop_key(connection, model.applied(generation)) for model in selects]
    # What several tables read, worked out once into a temporary table of the transaction (analysed, so that the
    # tables' SELECTs are planned on its real sizes): season_funnel's first reaches, 13.5 s against 22.1 s worked out
    # for each table and 17.3 s in one statement writing both by a data-modifying WITH (bench/NOTES.md).
    for name, select in (in_sql.shared(staged) if in_sql.shared else {}).items():
        _execute(connection, f'CREATE TEMPORARY TABLE "{name}" ON COMMIT DROP AS {select}')
        _execute(connection, f'ANALYZE "{name}"')
    for insert in inserts:
        _execute(connection, insert)
    for model, key in zip(selects, keys, strict=True):
        table = model.applied(generation)
        columns = ", ".join(f'"{c}"' for c in model.key)
        _execute(connection, f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{key}" PRIMARY KEY ({columns})')
        for index in table.indexes:
            connection.execute(sa.schema.CreateIndex(index))


def _columns(model: Model, generation: str) -> str:
    """`"table" ("a", "b")`: a generation's table with its columns, to insert into."""
    names = ", ".join(f'"{c}"' for c in model.column_names)
    return f'"{model.applied(generation).name}" ({names})'


def _drop_key(connection: Connection, table: sa.Table) -> str:
    """An empty table's key and indexes dropped, before its rows go in; returns the key's name."""
    key: str = connection.execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) AND contype = 'p'"),
        {"table": f'"{table.name}"'},
    ).scalar_one()
    _execute(connection, f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{key}"')
    for index in table.indexes:
        connection.execute(sa.schema.DropIndex(index))
    return key


def _settings(connection: Connection) -> None:
    for setting in SETTINGS:
        _execute(connection, setting)


def _execute(connection: Connection, statement: str | sql.Composable) -> None:
    """Straight through the driver: the statements are the views' own SQL, not SQLAlchemy's."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(statement)


def _events_table(ledger: JourneyLedger) -> str | None:
    """The log's table, named in full; None for a ledger not on PostgreSQL."""
    recorder = ledger.store
    table = getattr(recorder, "events_table_name", None)
    schema = getattr(getattr(recorder, "datastore", None), "schema", None)
    if table is None or schema is None or not hasattr(recorder, "events_table"):
        return None
    return f'"{schema}"."{table}"'


def _same_database(engine: Engine, ledger: JourneyLedger) -> bool:
    """Whether the read models live in the database that holds the log (a replay may fill another)."""
    query = "SELECT current_database(), pg_postmaster_start_time(), to_regclass(%s)::oid"
    events = _events_table(ledger)
    at_log: Any
    with ledger.store.datastore.get_connection() as own:  # type: ignore[attr-defined]
        at_log = own.cursor(row_factory=tuple_row).execute(query, (events,)).fetchone()
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        at_models = driver.cursor(row_factory=tuple_row).execute(query, (events,)).fetchone()  # type: ignore[union-attr]
    return at_log is not None and at_log == at_models
