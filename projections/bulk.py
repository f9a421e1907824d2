"""The bulk path: views built from a long stretch of the log at once, for a rebuild, a replay, or a runner far behind.

The incremental runner applies the log in batches of `runner.BATCH` events, each batch loading the rows it touches,
applying the events, and writing the rows back by upsert: right for the head of the log, where batches are small,
but most of a catch-up from zero is spent loading and upserting rows that the next batch loads again
(bench/NOTES.md, "Where a catch-up from zero spends its time"). Here the rows stay in memory over a chunk of up to
CHUNK events, read a page at a time and each event decoded once for every view that reads it; each view's own
`apply` changes them (the one place for each rule), and the chunk's rows are written once. A generation at
position 0 has no rows, so its first chunk loads nothing and is written by COPY (PostgreSQL) or one executemany
(SQLite); a later chunk loads the rows it touches, as a batch does, but once per chunk rather than once per batch.
Each chunk moves each view's position by compare-and-set in the transaction that writes its rows, as a batch does:
a runner that gets there first wins, and the bulk path stops for that view.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from eventsourcing.persistence import StoredEvent
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import bulk_sql
from hajj_ledger.projections.framework import (
    Key,
    Model,
    PositionMovedError,
    Projection,
    Row,
    Rows,
    advance,
    load_rows,
    wanted_keys,
    write_rows,
)
from hajj_ledger.projections.schema import positions

CHUNK = 1_000_000  # events folded in memory before the rows are written: bounds memory (bench/NOTES.md)
PAGE = 20_000  # events read from the log at once


class _Fresh(Rows):
    """The rows of tables that held none: all of them are in memory and all are written, so putting and deleting
    keep no record of what changed (a tenth of the time, profiled: a UUID hashes in Python)."""

    def put(self, model: Model, key: Key, row: Row) -> None:
        self.rows[model.name][key] = row

    def delete(self, model: Model, key: Key) -> None:
        self.rows[model.name].pop(key, None)


@dataclass
class _Building:
    """One view's generation being built: its committed position, and its rows over the current chunk."""

    projection: Projection
    generation: str
    position: int
    fresh: bool  # at position 0, so its tables hold no rows: nothing to load, and its first rows are copied in
    rows: Rows = field(init=False)
    looked_up: dict[str, set[Key]] = field(init=False)  # keys read from the tables this chunk, found or not
    moved_away: bool = False  # another runner moved its position: this one leaves it to them

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        names = [model.name for model in self.projection.models]
        self.rows = (_Fresh if self.fresh else Rows)({name: {} for name in names})
        self.looked_up = {name: set() for name in names}

    def apply(self, connection: Connection | None, events: Sequence[tuple[int, Any]]) -> None:
        if connection is not None:  # rows already written: load those this page touches that are not at hand
            wanted = wanted_keys(self.projection, events)
            missing = {name: keys - self.looked_up[name] for name, keys in wanted.items()}
            for name, found in load_rows(connection, self.projection, self.generation, missing).items():
                self.rows.rows[name].update(found)
                self.looked_up[name] |= missing[name]
        apply = self.projection.apply
        rows = self.rows
        for position, event in events:
            apply(event, position, rows)

    def write(self, connection: Connection, last: int) -> None:
        """The chunk's rows written and the position moved to `last`, in the caller's transaction."""
        advance(connection, self.projection, self.generation, self.position, last)
        if self.fresh:
            for model in self.projection.models:
                _copy_in(connection, self.projection, model, self.generation, self.rows)
        else:
            write_rows(connection, self.projection, self.generation, self.rows)


def build(
    engine: Engine,
    ledger: JourneyLedger,
    targets: Sequence[tuple[Projection, str]],
    *,
    until: int | None = None,
    chunk: int = CHUNK,
    stop: threading.Event | None = None,
) -> int:
    """Apply the log, from each (projection, generation)'s own position to `until` (or the head as it stands when
    read), to those generations together. Returns the position reached.

    On PostgreSQL, the generations at position 0 of views with rows in SQL are built in SQL (bulk_sql.py) to `until`
    (or the head when asked), and the rest folded here to the same position."""
    stop = stop or threading.Event()
    at = _positions(engine, targets)
    in_sql = bulk_sql.buildable(engine, ledger, [(p, g, at[(p.name, g)]) for p, g in targets])
    head = ledger.head() if until is None and in_sql else until
    if in_sql and head and not stop.is_set():
        bulk_sql.build(engine, ledger, [targets[i] for i in in_sql], head)
        targets = [target for i, target in enumerate(targets) if i not in in_sql]
        if not targets:
            return head
        until = head
    buildings = [_Building(p, g, at[(p.name, g)], at[(p.name, g)] == 0) for p, g in targets]
    readers: dict[str, list[_Building]] = {}  # event name: the buildings that read it
    for building in buildings:
        for name in building.projection.events:
            readers.setdefault(name, []).append(building)
    decode = ledger.mapper.to_domain_event
    reached = min((b.position for b in buildings), default=0)
    folded = 0
    while not stop.is_set():
        # The log's tail as plain tuples in binary, not eventsourcing's notifications (a fifth of the time, profiled).
        page = ledger.store.select_written_after(reached, PAGE)
        if until is not None:
            page = [row for row in page if row[0] <= until]
        if not page:
            break
        # Each event decoded once, and handed to the views that read it and have not applied it yet: one pass of
        # the page, not one per view (a seventh of the time, profiled).
        events: dict[int, list[tuple[int, Any]]] = {id(b): [] for b in buildings}
        for position, aggregate_id, version, topic, state in page:
            reading = readers.get(topic.rsplit(".", 1)[-1])
            if reading:
                event = decode(StoredEvent(aggregate_id, version, topic, state))
                for building in reading:
                    if position > building.position:
                        events[id(building)].append((position, event))
        with engine.connect() as reader:  # for the rows of views that already have some
            for building in buildings:
                building.apply(None if building.fresh else reader, events[id(building)])
        reached = page[-1][0]
        folded += len(page)
        if folded >= chunk:
            _write(engine, buildings, reached)
            folded = 0
        if until is not None and reached >= until:
            break
    _write(engine, buildings, reached)
    return reached


def _write(engine: Engine, buildings: Sequence[_Building], reached: int) -> None:
    for building in buildings:
        if building.moved_away or reached <= building.position:
            continue
        try:
            with engine.begin() as connection:
                building.write(connection, reached)
        except PositionMovedError:
            building.moved_away = True  # another runner applied this stretch: its rows stand
            continue
        building.position, building.fresh = reached, False
        building.restart()


def _positions(engine: Engine, targets: Sequence[tuple[Projection, str]]) -> dict[tuple[str, str], int]:
    query = sa.select(positions.c.projection, positions.c.generation, positions.c.position).where(
        positions.c.projection.in_([p.name for p, _ in targets])
    )
    with engine.connect() as connection:
        return {(row[0], row[1]): row[2] for row in connection.execute(query)}


def _copy_in(connection: Connection, projection: Projection, model: Model, generation: str, rows: Rows) -> None:
    """A fresh generation's rows of one table: those put, and the counters added (summed over the chunk)."""
    put = list(rows.rows[model.name].values())
    counted = rows.increments[model.name]
    if put and counted:  # a table both put and counted: counters added to the stored rows, as a batch adds them
        _insert(connection, model, generation, put)
        write_rows(connection, projection, generation, _only_increments(projection, model, counted))
        return
    counters = [c for c in model.column_names if c not in model.key]
    put += [
        {**dict(zip(model.key, key, strict=True)), **{c: deltas.get(c, 0) for c in counters}}
        for key, deltas in counted.items()
    ]
    if put:
        _insert(connection, model, generation, put)


def _only_increments(projection: Projection, model: Model, counted: dict[Key, dict[str, int]]) -> Rows:
    rows = Rows({m.name: {} for m in projection.models})
    rows.increments[model.name] = counted
    return rows


def _insert(connection: Connection, model: Model, generation: str, rows: list[Row]) -> None:
    """New rows into an empty table: PostgreSQL's COPY, or one executemany on SQLite."""
    table = model.applied(generation)
    columns = model.column_names
    if connection.dialect.name == "postgresql":
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row.get(c) for c in columns])
        return
    connection.execute(sa.insert(table), [{c: row.get(c) for c in columns} for row in rows])
