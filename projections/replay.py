"""Read models as of a past position, built apart from the serving ones.

`hajj-ledger replay --until P --into DIR|SCHEMA` fills a new SQLite file (in a directory) or a new PostgreSQL schema
(of the ledger's own database) with every read model as of position P, to compare side by side with the serving
views. It is the serving runner, pointed at another target and stopped at P: the views are what the projections
make of the log up to there, and the serving tables are never touched.

Auditors' views as of a position never replay the log from its start:

- `journey_status` has a row per journey that its own events alone make. A page as of P is the journeys registered
  by P, in the order of their ids (one short read of the registrations' index, migration 0006), each replayed by the
  view's own projection from its events up to P: the cost of the page's journeys, whatever P and however long the log.
- `season_funnel` counts across journeys: it is built by the runner in a private SQLite file, starting from a copy
  of the nearest snapshot at or before P (one every SNAPSHOT_EVERY positions, taken as builds pass them, kept for the
  process's life) or of a kept build, and replaying only the stretch after it.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.audit.reads import events_until, journeys_at, within_head
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import PAST_VIEWS, PROJECTIONS, projection
from hajj_ledger.projections.framework import AT_LEAST, Projection, Rows
from hajj_ledger.projections.runner import Runner, install
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.store.connections import direct_url

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})


def replay(
    database_url: str | None, until: int, target: Engine, projections: Sequence[Projection] = PROJECTIONS
) -> None:
    """Fill `target`, an empty database or schema, with `projections` as of position `until` (at most the head)."""
    _install(target, projections)
    _run(database_url, target, projections, until)


def row_counts(target: Engine, projections: Sequence[Projection] = PROJECTIONS) -> dict[str, int]:
    """Rows in each view of `target`: what a replay built."""
    with target.connect() as connection:
        return {
            model.name: connection.execute(sa.select(sa.func.count()).select_from(model.view())).scalar_one()
            for p in projections
            for model in p.models
        }


@dataclass(frozen=True)
class Target:
    engine: Engine
    where: str  # for people: the file or the schema


def target(into: str, database_url: str, until: int) -> Target:
    """Where a replay goes: a directory path gets a new SQLite file in it; a plain identifier is a new schema of the
    ledger's PostgreSQL database. Never anything that exists: a replay replaces nothing."""
    if "/" in into or into.startswith(".") or Path(into).is_dir() or not SCHEMA_NAME.fullmatch(into):
        directory = Path(into)
        if directory.exists() and not directory.is_dir():
            raise ValidationError("into", f"{into} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory.resolve() / f"read-models-at-{until}.sqlite3"
        if path.exists():
            raise ValidationError("into", f"{path} already exists; remove it or replay into another directory")
        return Target(engine_for(f"sqlite:///{path}"), str(path))
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ValidationError(
            "into", f"{into!r} names a PostgreSQL schema, but the ledger is not on PostgreSQL; give a directory"
        )
    if into in RESERVED_SCHEMAS or into.startswith("pg_"):
        raise ValidationError("into", f"schema {into!r} is reserved; name a new one")
    direct = direct_url(database_url)  # the new schema's connections start in it: not through a pooler
    engine = engine_for(direct, pool_size=1)
    try:
        with engine.begin() as connection:
            exists = sa.inspect(connection).has_schema(into)
            if not exists:
                connection.execute(sa.text(f'CREATE SCHEMA "{into}"'))
    finally:
        engine.dispose()
    if exists:
        raise ValidationError("into", f"schema {into!r} already exists; drop it or name a new one")
    engine = engine_for(direct, pool_size=1, schema=into)
    return Target(engine, f"schema {into}")


def journey_status_at(
    ledger: JourneyLedger, position: int, after: UUID | None, limit: int, filters: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """At most `limit` rows of `journey_status` as of `position`, in the order of their journey ids, after `after`:
    exactly the rows a replay of the log to `position` holds (each is what the projection makes of its journey's
    events up to there), at the cost of those journeys alone. With `filters` (a column's value, or `min_<column>`
    its least), only the rows they admit: journeys are read on until `limit` of them are found."""
    within_head(ledger, position, "position")
    status = projection("journey_status")
    [model] = status.models
    wanted = {name: value for name, value in (filters or {}).items() if value is not None}
    found: list[dict[str, Any]] = []
    while True:
        journeys = journeys_at(ledger, position, after, limit)
        rows = Rows({model.name: {}})
        for at, event in events_until(ledger, journeys, position):
            if type(event).__name__ in status.events:
                status.apply(event, at, rows)
        made = rows.rows[model.name]
        replayed = ({c: made[(j,)].get(c) for c in model.column_names} for j in journeys if (j,) in made)
        found += [row for row in replayed if _admits(row, wanted)]
        if len(found) >= limit or len(journeys) < limit:
            return found[:limit]
        after = journeys[-1]


def _admits(row: dict[str, Any], filters: Mapping[str, Any]) -> bool:
    """Whether a row has each filter's value (`min_<column>`: at least it), as the views' page query asks."""
    for name, value in filters.items():
        column = name.removeprefix(AT_LEAST)
        if row[column] is None or (row[column] < value if column != name else row[column] != value):
            return False
    return True


class PastViews:
    """Auditors' views as of past positions: `journey_status` a page at a time from its journeys' own events; the
    others (`season_funnel`) built in a private temporary SQLite file from the nearest snapshot, the last few kept,
    as an auditor tends to page through one moment."""

    NAMES = PAST_VIEWS
    BUILT = tuple(n for n in PAST_VIEWS if n != "journey_status")
    KEEP = 3
    SNAPSHOT_EVERY = 250_000  # positions between snapshots: a build replays at most this many events

    def __init__(self, ledger: JourneyLedger, database_url: str | None = None) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.projections = [projection(n) for n in self.BUILT]
        self._built: OrderedDict[int, tuple[Engine, tempfile.TemporaryDirectory[str]]] = OrderedDict()
        self._snapshots = tempfile.TemporaryDirectory(prefix="hajj-ledger-snapshots-")
        self._taken: dict[int, Path] = {}  # snapshot position: its file
        self._lock = threading.Lock()  # one build at a time; a second asker of the same position finds it built

    def journey_status(
        self, position: int, after: UUID | None, limit: int, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return journey_status_at(self.ledger, position, after, limit, filters)

    @contextmanager
    def at(self, position: int) -> Iterator[Connection]:
        """A connection to the built views as of `position`: query them with their own query functions."""
        within_head(self.ledger, position, "position")
        with self._lock:
            if position in self._built:
                self._built.move_to_end(position)
            else:
                self._built[position] = self._build(position)
                while len(self._built) > self.KEEP:
                    self._drop(*self._built.popitem(last=False)[1])
            engine = self._built[position][0]
        with engine.connect() as connection:
            yield connection

    def _nearest(self, position: int) -> tuple[int, Path | Engine | None]:
        """The snapshot or kept build closest below `position` (or at it): its position, and its file or engine."""
        found: tuple[int, Path | Engine | None] = (0, None)
        for at, path in self._taken.items():
            if found[0] < at <= position:
                found = (at, path)
        for at, (engine, _) in self._built.items():
            if found[0] < at <= position:
                found = (at, engine)
        return found

    def _build(self, position: int) -> tuple[Engine, tempfile.TemporaryDirectory[str]]:
        directory = tempfile.TemporaryDirectory(prefix="hajj-ledger-as-of-")
        path = Path(directory.name) / "views.sqlite3"
        start, source = self._nearest(position)
        try:
            if source is None:
                _install(engine := engine_for(f"sqlite:///{path}"), self.projections)
            else:
                _copy(source, path)
                engine = engine_for(f"sqlite:///{path}")
            stops = range(start - start % self.SNAPSHOT_EVERY + self.SNAPSHOT_EVERY, position + 1, self.SNAPSHOT_EVERY)
            for stop in [*stops, position]:
                _run(self.database_url, engine, self.projections, stop)
                if stop in stops and stop not in self._taken:
                    _copy(engine, taken := Path(self._snapshots.name) / f"at-{stop}.sqlite3")
                    self._taken[stop] = taken
        except BaseException:
            directory.cleanup()
            raise
        return engine, directory

    @staticmethod
    def _drop(engine: Engine, directory: tempfile.TemporaryDirectory[str]) -> None:
        engine.dispose()  # a reader still on it keeps its open file until it is done
        directory.cleanup()

    def close(self) -> None:
        with self._lock:
            while self._built:
                self._drop(*self._built.popitem()[1])
            self._snapshots.cleanup()


def _install(engine: Engine, projections: Sequence[Projection]) -> None:
    with engine.begin() as connection:
        positions.create(connection)
        install(connection, projections)


def _run(database_url: str | None, engine: Engine, projections: Sequence[Projection], until: int) -> None:
    runner = Runner(projections, database_url, target=engine, until=until)
    try:
        runner.run(once=True)
    finally:
        runner.close()


def _copy(source: Path | Engine, path: Path) -> None:
    """A consistent copy of a SQLite database (a snapshot's file, or a build's engine) into a new file at `path`."""
    name = source if isinstance(source, Path) else source.url.database
    with closing(sqlite3.connect(str(name))) as origin, closing(sqlite3.connect(path)) as copy:
        origin.backup(copy)
