"""Read models as of a past position, built apart from the serving ones.

`hajj-ledger replay --until P --into DIR|SCHEMA` fills a new SQLite file (in a directory) or a new PostgreSQL schema
(of the ledger's own database) with every read model as of position P, to compare side by side with the serving
views. Auditors' views as of a position are built the same way, in a private temporary SQLite file, and the last
few are kept. Either way it is the serving runner, pointed at another target and stopped at P: the views are
what the projections make of the log up to there, and the serving tables are never touched.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.audit.reads import within_head
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import PAST_VIEWS, PROJECTIONS, projection
from hajj_ledger.projections.framework import Projection
from hajj_ledger.projections.runner import Runner, install
from hajj_ledger.projections.schema import engine_for, positions
from hajj_ledger.store.connections import direct_url

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})


def replay(
    database_url: str | None, until: int, target: Engine, projections: Sequence[Projection] = PROJECTIONS
) -> None:
    """Fill `target`, an empty database or schema, with `projections` as of position `until` (at most the head)."""
    with target.begin() as connection:
        positions.create(connection)
        install(connection, projections)
    runner = Runner(projections, database_url, target=target, until=until)
    try:
        runner.run(once=True)
    finally:
        runner.close()


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


class PastViews:
    """`journey_status` and `season_funnel` as of past positions, each built in a private temporary SQLite file;
    the last few are kept, as an auditor tends to page through one moment."""

    NAMES = PAST_VIEWS
    KEEP = 3

    def __init__(self, ledger: JourneyLedger, database_url: str | None = None) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.projections = [projection(n) for n in self.NAMES]
        self._built: OrderedDict[int, tuple[Engine, tempfile.TemporaryDirectory[str]]] = OrderedDict()
        self._lock = threading.Lock()  # one build at a time; a second asker of the same position finds it built

    @contextmanager
    def at(self, position: int) -> Iterator[Connection]:
        """A connection to the views as of `position`: query them with their own query functions."""
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

    def _build(self, position: int) -> tuple[Engine, tempfile.TemporaryDirectory[str]]:
        directory = tempfile.TemporaryDirectory(prefix="hajj-ledger-as-of-")
        engine = engine_for(f"sqlite:///{directory.name}/views.sqlite3")
        try:
            replay(self.database_url, position, engine, self.projections)
        except BaseException:
            self._drop(engine, directory)
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
