"""SQLite's season files on bare connections (hajj_ledger.store.season_files): named after the main file, written
whole, registered in the main file's transaction, attached by each connection that follows the registry, and read
with the main file's rows through one view in position order."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from hajj_ledger.store.season_files import LOG_HEAD, REGISTRY, SeasonFiles, SeasonFilesError, generation, season_file

TABLES = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
    "season INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (originator_id, originator_version))",
    "CREATE INDEX stored_events_season ON stored_events (season)",
    "CREATE TABLE command_receipts (command_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, outcome TEXT NOT NULL, "
    "season INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE log_floor (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
    f"CREATE TABLE {REGISTRY} (season INTEGER PRIMARY KEY)",
)


@pytest.fixture
def main(tmp_path: Path) -> Path:
    """A main file of ten events, the odd positions of season 1446 (each with a receipt), the even of none."""
    path = tmp_path / "ledger.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        for statement in TABLES:
            connection.execute(statement)
        for position in range(1, 11):
            season = 1446 if position % 2 else 0
            connection.execute(
                "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state, season) "
                "VALUES (?, ?, ?, 't', x'00', ?)",
                (position, f"a{position % 3}", position, season),
            )
            if season:
                connection.execute("INSERT INTO command_receipts VALUES (?, 'f', 'o', ?)", (f"c{position}", season))
    return path


def _move(files: SeasonFiles, season: int) -> None:
    events, receipts = files.build(season, files.copy_from_main(season))
    with closing(sqlite3.connect(files.main, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        files.register(connection.cursor(), season, events, receipts)
        connection.execute("COMMIT")


def _log(connection: sqlite3.Connection) -> list[tuple[int, int]]:
    return connection.execute("SELECT rowid, season FROM stored_events WHERE rowid > 2 ORDER BY rowid").fetchall()


def test_a_season_file_is_named_after_the_main_file() -> None:
    assert season_file(Path("/var/ledger.sqlite"), 1446) == Path("/var/ledger.s1446.sqlite")
    assert season_file(Path("var/hajj-ledger.sqlite3"), 1447) == Path("var/hajj-ledger.s1447.sqlite3")


def test_a_moved_season_is_read_through_the_view_at_its_positions_by_a_connection_that_follows(main: Path) -> None:
    files = SeasonFiles(main)
    reader = sqlite3.connect(main, isolation_level=None, uri=True)
    followed = files.follow(reader)
    before = _log(reader)

    _move(files, 1446)

    assert season_file(main, 1446).is_file()
    assert _log(reader) == [(p, 0) for p in (4, 6, 8, 10)]  # not followed yet: the main file alone
    assert generation(reader) == followed + 1
    files.follow(reader, followed)
    assert _log(reader) == before
    assert reader.execute("SELECT count(*) FROM command_receipts WHERE season = 1446").fetchone()[0] == 5
    assert reader.execute(LOG_HEAD).fetchone()[0] == 10
    reader.close()


def test_a_move_that_would_lose_rows_registers_nothing(main: Path) -> None:
    files = SeasonFiles(main)
    events, receipts = files.build(1446, files.copy_from_main(1446))
    with closing(sqlite3.connect(main, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        with pytest.raises(SeasonFilesError, match="nothing was moved"):
            files.register(connection.cursor(), 1446, events - 1, receipts)
        connection.execute("ROLLBACK")
        assert connection.execute(f"SELECT count(*) FROM {REGISTRY}").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM stored_events").fetchone()[0] == 10


def test_an_unregistered_file_is_detached_and_a_missing_one_is_not_made(main: Path) -> None:
    files = SeasonFiles(main)
    _move(files, 1446)
    reader = sqlite3.connect(main, isolation_level=None, uri=True)
    followed = files.follow(reader)
    with closing(sqlite3.connect(main, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        files.unregister(connection.cursor(), 1446)
        connection.execute("COMMIT")
    files.remove(1446)

    files.follow(reader, followed)

    assert [row[1] for row in reader.execute("PRAGMA database_list") if row[1] not in ("main", "temp")] == []
    assert _log(reader) == [(p, 0) for p in (4, 6, 8, 10)]
    with closing(sqlite3.connect(main, isolation_level=None)) as connection:  # a registry naming a file not there
        connection.execute(f"INSERT INTO {REGISTRY} VALUES (1446)")
        connection.execute(f"PRAGMA user_version = {generation(connection) + 1}")
    with pytest.raises(sqlite3.OperationalError, match="is not there"):
        files.follow(reader)
    assert not season_file(main, 1446).exists()
    reader.close()


def test_a_close_of_a_season_another_close_registered_meanwhile_moves_nothing(main: Path) -> None:
    """Two closes of one season at once (two processes): each found it unregistered and built its file; the one that
    registers second must neither replace the registered file (the main file no longer holds its rows) nor
    register again."""
    files = SeasonFiles(main)
    reader = sqlite3.connect(main, isolation_level=None, uri=True)
    followed = files.follow(reader)
    before = _log(reader)
    built, registered_first = threading.Event(), threading.Event()
    refused: list[Exception] = []

    def second_close() -> None:
        events, receipts = files.build(1446, files.copy_from_main(1446))
        built.set()
        assert registered_first.wait(10)
        with closing(sqlite3.connect(main, isolation_level=None)) as connection:
            connection.execute("BEGIN")
            try:
                files.register(connection.cursor(), 1446, events, receipts)
            except SeasonFilesError as error:
                refused.append(error)
            connection.execute("ROLLBACK")

    second = threading.Thread(target=second_close)
    second.start()
    assert built.wait(10)
    _move(files, 1446)  # the first close
    registered_first.set()
    second.join(10)

    assert [str(e) for e in refused] == ["season 1446's file is registered already: nothing was moved"]
    assert [p.name for p in main.parent.iterdir() if ".s1446." in p.name] == [season_file(main, 1446).name]
    files.follow(reader, followed)
    assert _log(reader) == before
    reader.close()
