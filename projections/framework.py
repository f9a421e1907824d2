"""How a projection is written, and how a batch of events is applied to it in one transaction.

A projection says which rows each event touches (`keys`) and what it does to them (`apply`). The framework loads
those rows for a whole batch in one query per table, lets the projection change them in memory, and writes back
only what changed, with the projection's new position, in the same transaction. The position is advanced by a
compare-and-set first thing in that transaction, so a second runner of the same projection finds it moved and
backs off: the database, not the runners, decides who applies a batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
from psycopg.rows import tuple_row
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from hajj_ledger.projections.schema import physical, positions

Key = tuple[Any, ...]
Row = dict[str, Any]
AT_LEAST = "min_"  # a reader's lower bound on a column: `min_free=5`
ONE_OF = "one_of"  # a text column's `info` key: the only values it holds, so that a filter by any other is refused


def one_of(values: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """A text column's `info`: the values it holds, all of them (`sa.Column(..., info=one_of(Stage))`)."""
    return {ONE_OF: tuple(str(value) for value in values)}


@dataclass(frozen=True)
class Model:
    """One read-model table: its columns, its key and the indexes its readers need (their scope, their filters)."""

    name: str
    columns: Callable[[], list[sa.Column[Any]]]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    # Free space in each PostgreSQL page, so that a row updated in place keeps its page (a "HOT" update, with
    # no index written) when no indexed column changed: for rows rewritten with every event.
    fillfactor: int = 100
    # Columns readers also bound from below (`min_<column>`: at least that many free places), besides equality.
    at_least: tuple[str, ...] = ()
    # Columns worked out when read, never stored, as they change with the clock and no event marks the change (a
    # trip overdue): each one's SQL over the view, comparing with the moment of reading, the parameter `now`.
    at_read: Callable[[sa.Table], dict[str, sa.ColumnElement[bool]]] | None = None

    def table(self, generation: str, metadata: sa.MetaData | None = None) -> sa.Table:
        name = physical(self.name, generation)
        table = sa.Table(
            name,
            metadata or sa.MetaData(),
            *self.columns(),
            sa.PrimaryKeyConstraint(*self.key),
            postgresql_with={"fillfactor": self.fillfactor},
        )
        for columns in self.indexes:
            sa.Index(f"ix_{name}_{'_'.join(columns)}", *(table.c[c] for c in columns))
        return table

    # The caches below hold one Table per model (models are module constants), so that SQLAlchemy's compiled-statement
    # cache hits: building a Table and compiling its statements anew cost a one-event batch 20 ms (profiled).
    @functools.cache  # noqa: B019
    def view(self) -> sa.Table:
        """The served view, for queries."""
        return sa.Table(self.name, sa.MetaData(), *self.columns())

    @functools.cache  # noqa: B019
    def applied(self, generation: str) -> sa.Table:
        """A generation's table, for the batches applied to it."""
        return self.table(generation)

    @functools.cache  # noqa: B019
    def read_columns(self) -> dict[str, sa.ColumnElement[bool]]:
        """The columns worked out when read, by name, over the served view: typed, so that SQLite's 0 and 1 come
        back as booleans."""
        found = self.at_read(self.view()) if self.at_read is not None else {}
        return {name: sa.type_coerce(sql, sa.Boolean) for name, sql in found.items()}

    def readable(self) -> sa.Select[Any]:
        """The view as its readers see it: its columns, then those worked out when read (bind `now`)."""
        return sa.select(self.view(), *(sql.label(name) for name, sql in self.read_columns().items()))

    @functools.cached_property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns()]


class Rows:
    """The rows a batch works on: loaded once, changed in memory, written back once."""

    def __init__(self, loaded: dict[str, dict[Key, Row]]) -> None:
        self.rows = loaded
        self.changed: dict[str, set[Key]] = {name: set() for name in loaded}
        self.deleted: dict[str, set[Key]] = {name: set() for name in loaded}
        self.increments: dict[str, dict[Key, dict[str, int]]] = {name: {} for name in loaded}

    def get(self, model: Model, key: Key) -> Row | None:
        return self.rows[model.name].get(key)

    def put(self, model: Model, key: Key, row: Row) -> None:
        self.rows[model.name][key] = row
        self.changed[model.name].add(key)
        self.deleted[model.name].discard(key)

    def add(self, model: Model, key: Key, **deltas: int) -> None:
        """Add to counters without reading them: written as `count = count + delta`, whatever is stored."""
        counts = self.increments[model.name].setdefault(key, {})
        for column, delta in deltas.items():
            counts[column] = counts.get(column, 0) + delta

    def delete(self, model: Model, key: Key) -> None:
        if self.rows[model.name].pop(key, None) is not None or key in self.changed[model.name]:
            self.deleted[model.name].add(key)
        self.changed[model.name].discard(key)


@dataclass(frozen=True)
class InSql:
    """A view built set-based on PostgreSQL from position 0 (projections/bulk_sql.py), beside its `apply`: the same
    rules over the whole log at once.

    `fields`: the event fields it reads, each with the SQL type it is staged as (`{"pilgrim_id": "uuid"}`), besides
    the columns every staged event has (bulk_sql.ENVELOPE). `rows`: given the staged table's name, each of the view's
    tables' rows as one SELECT over it, its columns in the model's column order. `reads`: `rows` reads the staged
    table first, for a value only Python works out (a Hijri date), and is called as `rows(staged, connection)`, in
    the transaction that inserts. `shared`: given the staged table's name, named SELECTs that several of the
    tables' SELECTs read (`{"firsts": "SELECT ..."}`, each may read those before it): each worked out once, into a
    temporary table of that name, before the tables' SELECTs."""

    fields: dict[str, str]
    rows: Callable[..., dict[Model, str]]
    reads: bool = False
    shared: Callable[[str], dict[str, str]] | None = None


class Projection:
    """A read model kept current from the log. Subclasses name their events and models."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump when `apply` changes meaning: the runner rebuilds the view
    models: ClassVar[tuple[Model, ...]]
    events: ClassVar[frozenset[str]]  # event class names it reads; others are not even decoded
    by_aggregate: ClassVar[tuple[Model, ...]] = ()  # models with a row per journey (or trip), keyed by its id
    in_sql: ClassVar[InSql | None] = None  # its rows from zero in SQL, on PostgreSQL; without it, `apply` folds them

    def keys(self, event: Any) -> Iterable[tuple[Model, Key]]:
        """The rows an event touches: by default, its aggregate's row in each of `by_aggregate`."""
        return [(model, (event.originator_id,)) for model in self.by_aggregate]

    def keys_at(self, event: Any, position: int) -> Iterable[tuple[Model, Key]]:
        """The rows an event at `position` touches: its `keys`, unless rows are keyed by position."""
        return self.keys(event)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        raise NotImplementedError


class PositionMovedError(Exception):
    """Another runner applied this batch first; nothing of ours was committed."""


def advance(connection: Connection, projection: Projection, generation: str, old: int, new: int) -> None:
    """Move the position from `old` to `new`, or fail if it is no longer `old`. Holds the row until commit."""
    moved = connection.execute(
        sa.update(positions)
        .where(
            positions.c.projection == projection.name,
            positions.c.generation == generation,
            positions.c.position == old,
        )
        .values(position=new, updated_at=datetime.now(UTC))
    )
    if moved.rowcount != 1:
        raise PositionMovedError(f"{projection.name}: position is no longer {old}")


def apply_batch(
    connection: Connection,
    projection: Projection,
    generation: str,
    events: Sequence[tuple[int, Any]],
) -> None:
    """Apply (position, event) pairs to the projection's rows; the caller commits."""
    rows = Rows(load_rows(connection, projection, generation, wanted_keys(projection, events)))
    for position, event in events:
        projection.apply(event, position, rows)
    write_rows(connection, projection, generation, rows)


def wanted_keys(projection: Projection, events: Sequence[tuple[int, Any]]) -> dict[str, set[Key]]:
    """The keys of the rows the events touch, by table."""
    wanted: dict[str, set[Key]] = {m.name: set() for m in projection.models}
    for position, event in events:
        for model, key in projection.keys_at(event, position):
            wanted[model.name].add(key)
    return wanted


def load_rows(
    connection: Connection, projection: Projection, generation: str, wanted: dict[str, set[Key]]
) -> dict[str, dict[Key, Row]]:
    """The stored rows of those keys, by table (a key with no row is absent)."""
    return {
        name: _load(connection, _model(projection, name).applied(generation), _model(projection, name).key, keys)
        for name, keys in wanted.items()
    }


def write_rows(connection: Connection, projection: Projection, generation: str, rows: Rows) -> None:
    """Write back what the batch changed: rows deleted, rows put, counters added."""
    for model in projection.models:
        table = model.applied(generation)
        _delete(connection, table, model.key, rows.deleted[model.name])
        changed = [rows.rows[model.name][k] for k in rows.changed[model.name]]
        if changed:
            _upsert(connection, table, model, changed)
        if rows.increments[model.name]:
            _increment(connection, table, model, rows.increments[model.name])


def _model(projection: Projection, name: str) -> Model:
    return next(m for m in projection.models if m.name == name)


def _key_columns(table: sa.Table, key: tuple[str, ...]) -> Any:
    return table.c[key[0]] if len(key) == 1 else sa.tuple_(*(table.c[k] for k in key))


def _key_values(keys: Iterable[Key], width: int) -> list[Any]:
    return [k[0] for k in keys] if width == 1 else list(keys)


def _load(connection: Connection, table: sa.Table, key: tuple[str, ...], keys: set[Key]) -> dict[Key, Row]:
    found: dict[Key, Row] = {}
    if connection.dialect.name == "postgresql" and len(key) == 1 and keys:
        # Straight from the driver: SQLAlchemy's result rows cost more than the query (profiled).
        cursor = connection.connection.driver_connection.cursor(row_factory=tuple_row)  # type: ignore[union-attr]
        cursor.execute(f'SELECT * FROM "{table.name}" WHERE "{key[0]}" = ANY(%s)', ([k[0] for k in keys],))
        names = [c.name for c in cursor.description or ()]
        at = names.index(key[0])
        return {(row[at],): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    ordered = list(keys)
    for start in range(0, len(ordered), 500):
        chunk = _key_values(ordered[start : start + 500], len(key))
        for row in connection.execute(sa.select(table).where(_key_columns(table, key).in_(chunk))).mappings():
            found[tuple(row[k] for k in key)] = dict(row)
    return found


def _delete(connection: Connection, table: sa.Table, key: tuple[str, ...], keys: set[Key]) -> None:
    ordered = list(keys)
    for start in range(0, len(ordered), 500):
        chunk = _key_values(ordered[start : start + 500], len(key))
        connection.execute(sa.delete(table).where(_key_columns(table, key).in_(chunk)))


def _upsert(connection: Connection, table: sa.Table, model: Model, rows: list[Row]) -> None:
    if connection.dialect.name == "postgresql":
        others = [c for c in model.column_names if c not in model.key]
        action = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in others) if others else ""
        _insert_all(connection, table, model, rows, f"DO UPDATE SET {action}" if action else "DO NOTHING")
        return
    insert = sqlite.insert
    statement = insert(table)
    others = [c for c in model.column_names if c not in model.key]
    statement = statement.on_conflict_do_update(
        index_elements=list(model.key), set_={c: statement.excluded[c] for c in others}
    ) if others else statement.on_conflict_do_nothing(index_elements=list(model.key))  # fmt: skip
    columns = model.column_names
    connection.execute(statement, [{c: row.get(c) for c in columns} for row in rows])


def _increment(connection: Connection, table: sa.Table, model: Model, increments: dict[Key, dict[str, int]]) -> None:
    counters = [c for c in model.column_names if c not in model.key]
    if connection.dialect.name == "postgresql":
        rows = [
            {**dict(zip(model.key, key, strict=True)), **{c: deltas.get(c, 0) for c in counters}}
            for key, deltas in increments.items()
        ]
        action = ", ".join(f'"{c}" = "{table.name}"."{c}" + EXCLUDED."{c}"' for c in counters)
        _insert_all(connection, table, model, rows, f"DO UPDATE SET {action}")
        return
    statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(model.key), set_={c: table.c[c] + statement.excluded[c] for c in counters}
    )
    values = [
        {**dict(zip(model.key, key, strict=True)), **{c: deltas.get(c, 0) for c in counters}}
        for key, deltas in increments.items()
    ]
    connection.execute(statement, values)


def _insert_all(connection: Connection, table: sa.Table, model: Model, rows: list[Row], conflict: str) -> None:
    """One set-based statement for the whole batch on PostgreSQL, not a statement a row (profiling showed the
    per-statement cost dominating catch-up). The rows travel as one JSON document that the server turns into rows of
    the table's own type: orjson writes it in C, where psycopg dumps arrays element by element in Python (40% of
    the runner's time under a batch load)."""
    columns = model.column_names
    names = ", ".join(f'"{c}"' for c in columns)
    keys = ", ".join(f'"{k}"' for k in model.key)
    fields = [str(c) for c in columns]  # plain str: orjson takes no subclass for a key
    document = orjson.dumps(
        [dict(zip(fields, map(row.get, columns), strict=True)) for row in rows], option=orjson.OPT_NAIVE_UTC
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    source = f'json_populate_recordset(NULL::"{table.name}", %s::json)'
    cursor.execute(
        f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM {source} ON CONFLICT ({keys}) {conflict}',
        [document.decode()],
    )
