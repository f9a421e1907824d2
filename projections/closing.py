"""The views' part in closing a season (hajj_ledger.archive.seasons): which rows of each view are the season's, read
from the store for its archive, deleted with its events, and written back (a restore, or a closed season opened for
reading in a store of its own).

A view's rows are the season's by its key: a season column (`season_funnel`, `health_cases`, `port_arrivals`,
`site_headcount`), a journey, trip, offer or contract of the season (one row each), or a position of the season (the
trail's index). A licensed building's row (`building_occupancy`, of no season) and the trail's blocks stay in the
hot store whole: they hold no row of one season alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pyarrow as pa
import sqlalchemy as sa

from hajj_ledger.archive.seasons import SeasonTable
from hajj_ledger.audit.reads import BLOCK, BLOCKS_TABLE, INDEX_TABLE
from hajj_ledger.projections import FOLLOWED
from hajj_ledger.projections.export_models import copied_pages, fetched_pages, model_schema
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.runner import install
from hajj_ledger.projections.schema import GENERATIONS, engine_for, physical, positions
from hajj_ledger.projections.status import POSTGRES_EVENTS, SQLITE_EVENTS

AGGREGATE_KEYS = ("journey_id", "trip_id", "offer_id", "contract_id")


def _condition(model: Model) -> str | None:
    """Which of the model's rows are a season's (`%s`), as SQL on its columns; None: not one season's alone."""
    if "season" in model.key:
        return '"season" = %s'
    if model.key[0] in AGGREGATE_KEYS:
        return f'"{model.key[0]}" IN (SELECT originator_id FROM {{events}} WHERE season = %s)'
    if model.key == ("position",):
        return '"position" IN (SELECT {position} FROM {events} WHERE season = %s)'
    return None


class SeasonViews:
    """hajj_ledger.archive.seasons.Views for the read side's views and the trail's index."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = database_url  # the hot store's (default: the configured one)
        self._models = {model.name: model for projection in FOLLOWED for model in projection.models}

    def tables(self) -> Sequence[SeasonTable]:
        found = []
        for model in self._models.values():
            condition = _condition(model)
            if condition is not None:
                tables = tuple(physical(model.name, generation) for generation in GENERATIONS)
                found.append(SeasonTable(model.name, model_schema(model), tables, condition))
        return found

    def read(self, table: SeasonTable, season: int) -> Iterator[pa.Table]:
        model = self._models[table.name]
        engine = engine_for(self.database_url)
        try:
            with engine.connect() as connection:
                postgres = connection.dialect.name == "postgresql"
                events, position = POSTGRES_EVENTS if postgres else SQLITE_EVENTS
                view = model.view()
                # The season is a number: written into the query, which COPY takes whole.
                where = table.condition.replace("%s", str(int(season))).format(events=events, position=position)
                query = sa.select(*(view.c[n] for n in table.schema.names)).where(sa.text(where))
                query = query.order_by(*(view.c[k] for k in model.key))
                if postgres:
                    yield from copied_pages(connection, query, table.schema)
                else:
                    ids = {c.name: True for c in model.columns() if isinstance(c.type, sa.Uuid)}
                    yield from fetched_pages(connection, query, table.schema, ids)
        finally:
            engine.dispose()

    def write(self, table: SeasonTable, batches: Iterator[pa.RecordBatch], database_url: str) -> int:
        """The rows into the serving generation of the view in `database_url` (installed there if missing)."""
        model = self._models[table.name]
        uuids = [c.name for c in model.columns() if isinstance(c.type, sa.Uuid)]
        engine = engine_for(database_url)
        written = 0
        try:
            with engine.begin() as connection:
                _installed(connection)
                generation = connection.execute(
                    sa.select(positions.c.generation).where(
                        positions.c.projection == _projection_of(model.name), positions.c.serving
                    )
                ).scalar_one()
                target = model.table(generation, sa.MetaData())
                for batch in batches:
                    rows = batch.to_pylist()
                    for row in rows:
                        for name in uuids:
                            if row[name] is not None:
                                row[name] = UUID(row[name])
                    if rows:
                        connection.execute(sa.insert(target), rows)
                    written += len(rows)
        finally:
            engine.dispose()
        return written

    def settle(self, database_url: str, position: int) -> None:
        """A closed season's store, its views' rows written: each view at the season's last position, and the
        trail's blocks made from its index."""
        engine = engine_for(database_url)
        try:
            with engine.begin() as connection:
                _installed(connection)
                connection.execute(
                    sa.update(positions).where(positions.c.serving).values(position=position, updated_at=_now())
                )
                blocks, index = physical(BLOCKS_TABLE, "a"), physical(INDEX_TABLE, "a")
                connection.execute(
                    sa.text(
                        f'INSERT INTO "{blocks}" (block, earliest_us, latest_us) SELECT position / {BLOCK}, '
                        f'min(recorded_us), max(recorded_us) FROM "{index}" GROUP BY position / {BLOCK}'
                    )
                )
        finally:
            engine.dispose()


def _projection_of(model_name: str) -> str:
    return next(p.name for p in FOLLOWED for m in p.models if m.name == model_name)


def _installed(connection: sa.Connection) -> None:
    """The views' tables in a store of a closed season: made once, as a migration makes them."""
    if not sa.inspect(connection).has_table(positions.name):
        positions.create(connection)
        install(connection, FOLLOWED)


def _now() -> Any:
    return datetime.now(UTC)
