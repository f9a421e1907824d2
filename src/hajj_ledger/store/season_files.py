"""SQLite keeps a season that takes no more writes in a file of its own beside the main file, attached to every
connection to the store: `ledger.sqlite` holds the log, and `ledger.s1446.sqlite` season 1446's events and receipts.

Where a season's rows are written: in the main file, while the season is open. SQLite commits a transaction over
several attached files atomically only in a rollback journal; in WAL mode (the store's, so that readers never wait for
the writer) each file commits on its own (https://www.sqlite.org/lang_attach.html), and a crash between two of them
would keep part of a batch and lose the rest, positions and receipts with it. So every batch writes one file, the
main one. A season's rows move to its file when it begins closing, after which the store refuses any write into it
(`SeasonShutError`): the file is written whole beside its place, then one transaction of the main file, under its
write lock, renames it into place unless the season is registered already (another process's close), registers it
(`season_files`), raises the log's floor past every position given so far, and deletes the season's rows from the
main file. Taking the season out once its archive is verified is one transaction that unregisters the
file, and the file's removal: no row is deleted then. A restore writes the file again from the archive.

How it is read: each connection attaches the registered files (schema `s<season>`) and reads the log and the
receipts through a TEMP VIEW of the table's own name over the main file's table and each season's, so that every
query reads them unchanged; writes name `main.` tables. A season's rows keep their positions (the rowids: global, and
gap-free as the main file gave them). Ordered by position, SQLite reads the view as a merge of each file's index scan.
A connection follows the registry by its generation, the main file's `user_version`, raised by each change: a reader
compares it inside its transaction, in the snapshot it then reads, and attaches again if it changed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hajj_ledger.domain.errors import ConflictError

REGISTRY = "season_files"
# The tables a season's file holds, each read through a view of its name: (table, the view's columns).
SEASONED = (
    ("stored_events", "rowid AS rowid, originator_id, originator_version, topic, state, season"),
    ("command_receipts", "command_id, fingerprint, outcome, season"),
)
# The log's head: the main file's last position, or the floor past what left it (every season file's positions are
# below the floor). Not max(rowid) of the view, which SQLite would read whole.
LOG_HEAD = (
    "SELECT max(coalesce((SELECT max(rowid) FROM main.stored_events), 0), "
    "coalesce((SELECT position FROM main.log_floor), 0))"
)
SCHEMA = re.compile(r"s\d+")  # an attached season's schema name
BUILDER = re.compile(r"\.building-(\d+)-")  # the process building a season's file, in the file's name
FOLLOW_TRIES = 10


class SeasonFilesError(ConflictError):
    """A season's file did not match the rows it was to take from the main file, or another close registered it
    first: nothing was registered. A conflict, told as one (the CLI's refusal, not an unexpected error)."""


def season_file(main: Path, season: int) -> Path:
    """Where a season's file lies: beside the main file, named after it (`ledger.sqlite` → `ledger.s1446.sqlite`)."""
    return main.with_name(f"{main.stem}.s{int(season)}{main.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def generation(connection: sqlite3.Connection) -> int:
    """The registry's generation, as this connection's transaction (or a statement of its own) sees the main file."""
    return int(connection.execute("PRAGMA main.user_version").fetchone()[0])


class SeasonFiles:
    """The season files of the store whose main file is `main`."""

    def __init__(self, main: Path) -> None:
        self.main = main

    def path(self, season: int) -> Path:
        return season_file(self.main, season)

    def follow(self, connection: sqlite3.Connection, followed: int | None = None) -> int:
        """Attach the registered season files to `connection` (outside a transaction; opened with `uri=True`), each
        table read through its view, unless `followed`, the generation it has attached, is current; returns the
        generation attached."""
        for attempt in range(FOLLOW_TRIES):
            now = generation(connection)
            if now == followed:
                return now
            try:
                self._attach(connection, registered(connection) if now else [])
                return now
            except sqlite3.OperationalError:  # a file removed between the registry's read and its attachment
                if attempt == FOLLOW_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _attach(self, connection: sqlite3.Connection, seasons: list[int]) -> None:
        for table, _ in SEASONED:
            connection.execute(f"DROP VIEW IF EXISTS temp.{table}")
        for row in connection.execute("PRAGMA database_list").fetchall():
            if SCHEMA.fullmatch(row[1]):
                connection.execute(f"DETACH {row[1]}")
        for season in seasons:
            path = self.path(season)
            if not path.is_file():  # ATTACH would make an empty one
                raise sqlite3.OperationalError(f"season {season}'s file {path} is not there")
            # Immutable: nothing writes a registered file, so its reads take no lock and never look for changes
            # (a URI: every connection to the store is opened with them enabled, `uri=True`).
            connection.execute(f"ATTACH ? AS s{int(season)}", (f"{path.absolute().as_uri()}?immutable=1",))
        if seasons:
            schemas = ["main", *(f"s{int(s)}" for s in seasons)]
            for table, columns in SEASONED:
                arms = " UNION ALL ".join(f"SELECT {columns} FROM {schema}.{table}" for schema in schemas)
                connection.execute(f"CREATE TEMP VIEW {table} AS {arms}")

    def build(self, season: int, fill: Callable[[sqlite3.Connection], None]) -> tuple[int, int]:
        """A season's file written whole beside its place, its tables made as the main file's are (with their
        indexes), `fill`ed in one transaction; returns its (events, receipts). `register` renames it into place. Under
        a name of this process's and thread's own: two closes of one season at once each build their own."""
        building = self._building(season)
        for stale in (building, Path(f"{building}-journal"), *self._left_by_dead_processes()):
            stale.unlink(missing_ok=True)
        connection = sqlite3.connect(building, isolation_level=None)
        try:
            connection.execute("ATTACH ? AS ledger", (str(self.main),))
            made = connection.execute(
                "SELECT sql FROM ledger.sqlite_master WHERE tbl_name IN (?, ?) AND sql IS NOT NULL "
                "ORDER BY type = 'index', name",
                [table for table, _ in SEASONED],
            ).fetchall()
            connection.execute("BEGIN")
            for (statement,) in made:
                connection.execute(statement)
            fill(connection)
            events = connection.execute("SELECT count(*) FROM main.stored_events").fetchone()[0]
            receipts = connection.execute("SELECT count(*) FROM main.command_receipts").fetchone()[0]
            connection.execute("COMMIT")  # a rollback journal: synced to disk before it returns
            connection.execute("DETACH ledger")
        finally:
            connection.close()
        return int(events), int(receipts)

    def _building(self, season: int) -> Path:
        path = self.path(season)
        return path.with_name(f"{path.name}.building-{os.getpid()}-{threading.get_ident()}")

    def _left_by_dead_processes(self) -> list[Path]:
        """Season files being built (and their journals) by processes that are gone: a close killed mid-build
        leaves its file, which nothing else would remove. A live process's, this one's other threads' included,
        are its own."""
        pattern = f"{self.main.stem}.s*{self.main.suffix}.building-*"
        found = ((path, BUILDER.search(path.name)) for path in self.main.parent.glob(pattern))
        return [path for path, builder in found if builder and not _alive(int(builder[1]))]

    def copy_from_main(self, season: int) -> Callable[[sqlite3.Connection], None]:
        """A `build`'s filling: the season's rows of the main file (attached as `ledger`), at their positions."""

        def fill(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO main.stored_events (rowid, originator_id, originator_version, topic, state, season) "
                "SELECT rowid, originator_id, originator_version, topic, state, season FROM ledger.stored_events "
                "WHERE season = ? ORDER BY rowid",
                (season,),
            )
            connection.execute(
                "INSERT INTO main.command_receipts (command_id, fingerprint, outcome, season) "
                "SELECT command_id, fingerprint, outcome, season FROM ledger.command_receipts WHERE season = ?",
                (season,),
            )

        return fill

    def register(self, cursor: Any, season: int, events: int, receipts: int) -> None:
        """In the main file's transaction: the season's file this process built renamed into place and registered,
        the log's floor past every position given, and the season's rows deleted from the main file, which must be
        exactly the `events` and `receipts` the file holds (none, for a file restored from an archive). A file left
        by a build that did not finish, or by a close whose take-out stopped before the removal, is replaced; a
        registered one never (another process's close registered it first)."""
        cursor.execute(
            "INSERT INTO main.log_floor VALUES (1, coalesce((SELECT max(rowid) FROM main.stored_events), 0)) "
            "ON CONFLICT (id) DO UPDATE SET position = max(position, excluded.position)"
        )  # first: the write lock is taken before anything is read, and held to the rename
        if season in registered(cursor):
            self._building(season).unlink(missing_ok=True)
            raise SeasonFilesError(f"season {season}'s file is registered already: nothing was moved")
        cursor.execute("SELECT count(*) FROM main.stored_events WHERE season = ?", (season,))
        in_main = int(cursor.fetchone()[0])
        cursor.execute("SELECT count(*) FROM main.command_receipts WHERE season = ?", (season,))
        receipts_in_main = int(cursor.fetchone()[0])
        if (in_main, receipts_in_main) != (events, receipts) and (in_main, receipts_in_main) != (0, 0):
            raise SeasonFilesError(
                f"season {season}'s file holds {events:,} events and {receipts:,} receipts, the main file "
                f"{in_main:,} and {receipts_in_main:,}: nothing was moved"
            )
        os.replace(self._building(season), self.path(season))  # a commit that fails leaves a file nothing attaches
        cursor.execute("DELETE FROM main.stored_events WHERE season = ?", (season,))
        cursor.execute("DELETE FROM main.command_receipts WHERE season = ?", (season,))
        cursor.execute(f"INSERT INTO main.{REGISTRY} VALUES (?)", (season,))
        self._next_generation(cursor)

    def unregister(self, cursor: Any, season: int) -> None:
        """In the main file's transaction: the season's file no longer part of the store (its removal follows)."""
        cursor.execute(f"DELETE FROM main.{REGISTRY} WHERE season = ?", (season,))
        self._next_generation(cursor)

    @staticmethod
    def _next_generation(cursor: Any) -> None:
        cursor.execute("PRAGMA main.user_version")
        cursor.execute(f"PRAGMA main.user_version = {int(cursor.fetchone()[0]) + 1}")

    def remove(self, season: int) -> None:
        """The season's file deleted (once unregistered: connections still attached to it detach at their next
        transaction)."""
        path = self.path(season)
        for gone in (path, Path(f"{path}-journal")):
            gone.unlink(missing_ok=True)


def registered(connection: Any) -> list[int]:
    """The seasons whose files are part of the store, by the main file's registry."""
    return [int(r[0]) for r in connection.execute(f"SELECT season FROM main.{REGISTRY} ORDER BY season").fetchall()]
