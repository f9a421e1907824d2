"""How far each read model has applied the log: what `hajj-ledger status` prints.

Read with one plain database connection and a few small queries, apart from the runner, so that the command starts
fast: no SQLAlchemy, no projection's tables, no domain classes (the lag's time is read from the stored event's JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from hajj_ledger.preflight import configured_url
from hajj_ledger.store.season_files import LOG_HEAD, SeasonFiles

# The library names the events' table and position column: eventsourcing.sqlite's and eventsourcing.postgres's
# (`<application>_events`) application recorders.
SQLITE_EVENTS = ("stored_events", "rowid")
POSTGRES_EVENTS = ("journeyledger_events", "notification_id")


@dataclass(frozen=True)
class Status:
    projection: str
    generation: str
    position: int
    code_version: int
    head: int
    lag_events: int
    lag_seconds: float


class NotInstalledError(ValueError):  # a set-up step missing: the CLI says which, without a traceback
    pass


def read(names: Sequence[str], database_url: str | None = None) -> list[Status]:
    """The serving generation of each projection in `names` (in that order): its position and code version, the
    head of the log, and how far behind it is, in events and in seconds since the first event it has yet to apply
    was recorded."""
    url = database_url or configured_url()
    sqlite = url.startswith("sqlite:///")
    events, position = SQLITE_EVENTS if sqlite else POSTGRES_EVENTS
    with closing(_connect(url)) as connection:

        def rows(query: str, *args: Any) -> list[Any]:
            return list(connection.execute(query if sqlite else query.replace("?", "%s"), args).fetchall())

        installed = (
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_positions'"
            if sqlite
            else "SELECT 1 WHERE to_regclass('projection_positions') IS NOT NULL"
        )
        if not rows(installed):
            raise NotInstalledError("the read models are not installed: run `hajj-ledger migrate`")
        serving = {
            name: (generation, at, version)
            for name, generation, at, version in rows(
                "SELECT projection, generation, position, code_version FROM projection_positions WHERE serving"
            )
        }
        [(head,)] = rows(LOG_HEAD if sqlite else f"SELECT MAX({position}) FROM {events}")
        head = head or 0
        found = []
        for name in names:
            if name not in serving:
                raise NotInstalledError(f"projection {name!r} is not installed: run `hajj-ledger migrate`")
            generation, at, version = serving[name]
            # The position selected too: SQLite then reads its season files' view as a merge, not a sort of the rest.
            behind = rows(
                f"SELECT {position}, state FROM {events} WHERE {position} > ? ORDER BY {position} LIMIT 1", at
            )
            lag_seconds = 0.0
            if behind:
                recorded = datetime.fromisoformat(orjson.loads(behind[0][1])["timestamp"])
                lag_seconds = max(0.0, (datetime.now(UTC) - recorded).total_seconds())
            found.append(Status(name, generation, at, version, head, head - at, lag_seconds))
        return found


def _connect(url: str) -> Any:
    """A DB-API connection to the ledger's store, as the read models' engine makes it (`schema.engine_for`)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        store = sqlite3.connect(path, timeout=30, uri=True)  # URIs: the season files are attached by them
        SeasonFiles(Path(path)).follow(store)  # the seasons kept in files of their own, as the store reads them
        return store
    import psycopg

    from hajj_ledger.store.connections import Postgres

    found = Postgres.from_url(url)
    connection = psycopg.connect(found.conninfo, autocommit=True, **found.connect_kwargs())
    [(current,)] = connection.execute("SELECT current_schema()").fetchall()
    if problem := found.search_path_problem(current):
        connection.close()
        raise NotInstalledError(problem)
    return connection
