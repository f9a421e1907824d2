"""Where the read models live, and how a view is served while its replacement is built beside it.

Every projection has two physical generations of its tables, `<table>__a` and `<table>__b`, and readers query a
view named `<table>` over the serving one. A rebuild fills the other generation from position 0 while the serving
one stays current, then swaps the views in one transaction: readers see the old view or the new, never a half
built one. `projection_positions` holds, per projection and generation, how far in the log it has applied events
and with which version of the projection's code.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection, Engine

from hajj_ledger.store.connections import Postgres, unsupported_store
from hajj_ledger.store.season_files import SeasonFiles

metadata = sa.MetaData()
GENERATIONS = ("a", "b")

positions = sa.Table(
    "projection_positions",
    metadata,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.String(1), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("code_version", sa.Integer, nullable=False),
    sa.Column("serving", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class SchemaError(ValueError):  # a set-up step missing: the CLI says which, without a traceback
    """The ledger's schema is missing, or connections do not land in it."""


def physical(name: str, generation: str) -> str:
    return f"{name}__{generation}"


def engine_for(database_url: str | None = None, *, pool_size: int = 2, schema: str | None = None) -> Engine:
    """The SQLAlchemy engine for the ledger's own store (`HAJJ_LEDGER_DATABASE_URL`), or for another `schema` of
    its PostgreSQL database (a replay's). A steady pool of `pool_size` connections: none opened per request beyond
    it, none pinged before use (a dead one fails its request, answered 503, and the pool starts afresh)."""
    from hajj_ledger.store.recorders import database_url as configured

    url = database_url or configured()
    if url.startswith(("postgresql://", "postgres://")):
        found = Postgres.from_url(url)
        if schema is not None:
            found = dataclasses.replace(found, schema=schema)
        engine = sa.create_engine(
            "postgresql+psycopg://",  # where, and how: libpq's whole connection string (several hosts, TLS, ...)
            connect_args=found.connect_kwargs(),
            pool_size=pool_size,
            max_overflow=0,
            pool_recycle=3600,  # renewed hourly, as the event store's connections are
        )

        @sa.event.listens_for(engine, "do_connect")
        def _where(dialect, record, cargs, cparams):  # type: ignore[no-untyped-def]
            cargs[:] = [found.conninfo]  # the URL given to SQLAlchemy is empty: libpq's string says it all

        @sa.event.listens_for(engine, "connect")
        def _check_schema(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            [current] = dbapi_connection.execute("SELECT current_schema()").fetchone()
            dbapi_connection.rollback()
            if problem := found.search_path_problem(current):
                raise SchemaError(problem)

        return engine
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))), exist_ok=True)
        # URIs enabled: the season files are attached by them (hajj_ledger.store.season_files).
        engine = sa.create_engine(url, connect_args={"timeout": 30, "uri": True})
        season_files = SeasonFiles(Path(url.removeprefix("sqlite:///")))

        # Python's sqlite3 commits before DDL on its own; a view swap must be one transaction, so SQLAlchemy
        # is left to begin every transaction itself (SQLAlchemy's documented recipe).
        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @sa.event.listens_for(engine, "begin")
        def _begin(connection):  # type: ignore[no-untyped-def]
            # The store's season files attached as they are now (hajj_ledger.store.season_files): a season's view
            # rows are found by its events when it closes.
            pooled = connection.connection
            pooled.info["seasons"] = season_files.follow(pooled.dbapi_connection, pooled.info.get("seasons", 0))
            connection.exec_driver_sql("BEGIN")

        return engine
    raise unsupported_store(url)


def create_schema(database_url: str) -> None:
    """Make the PostgreSQL schema the URL names if it is missing (`hajj-ledger migrate`); nothing on SQLite."""
    if not database_url.startswith(("postgresql://", "postgres://")):
        return
    found = Postgres.from_url(database_url)
    with psycopg.connect(found.conninfo, autocommit=True, **found.connect_kwargs()) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(found.schema)))


def replace_view(connection: Connection, name: str, generation: str, columns: list[str]) -> None:
    """Point the view `name` at one generation; part of the caller's transaction."""
    connection.execute(sa.text(f'DROP VIEW IF EXISTS "{name}"'))
    select = ", ".join(f'"{c}"' for c in columns)
    connection.execute(sa.text(f'CREATE VIEW "{name}" AS SELECT {select} FROM "{physical(name, generation)}"'))
