"""A season out of the writes, kept apart: on SQLite in a file of its own beside the main file, attached to every
connection (hajj_ledger.store.season_files); on PostgreSQL in its partitions. Every read of the log is the same
before and after, positions stay global, a close takes the file out without deleting a row, a close stopped between
its steps is taken up again, and a restore brings the file back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pyarrow as pa
import pytest

from hajj_ledger.archive.seasons import close, closed_seasons, restore
from hajj_ledger.archive.target import ArchiveError
from hajj_ledger.audit.chain import Chain, signing_keys
from hajj_ledger.audit.reads import TrailQuery, event_json, trail
from hajj_ledger.audit.signing import SigningKeys
from hajj_ledger.domain.errors import IdempotencyKeyReusedError
from hajj_ledger.domain.vocabulary import Role, SeasonStage
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections import FOLLOWED, status
from hajj_ledger.projections.closing import SeasonViews
from hajj_ledger.projections.runner import Runner
from hajj_ledger.projections.schema import engine_for
from hajj_ledger.simulation.season import simulate
from hajj_ledger.store.season_files import SeasonFiles, season_file
from tests.support import actor, command

CLOSED, OPEN = 1446, 1447


def _keys() -> SigningKeys:
    keys = signing_keys(required=True)
    assert keys is not None
    return keys


@contextmanager
def _two_seasons(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JourneyLedger]:
    """Two simulated seasons in one store, its views current and its log sealed."""
    monkeypatch.setenv("HAJJ_LEDGER_SEASON_CACHE", str(tmp_path / "cache"))
    ledger = JourneyLedger(url)
    simulate(ledger, 8, CLOSED, 4)
    simulate(ledger, 4, OPEN, 5)
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    runner = Runner(FOLLOWED, url)
    try:
        runner.run(once=True)
    finally:
        runner.close()
    Chain(ledger, _keys()).checkpoint()
    yield ledger
    ledger.close()


@pytest.fixture
def seasons(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JourneyLedger]:
    with _two_seasons(store_url, tmp_path, monkeypatch) as ledger:
        yield ledger


@pytest.fixture
def sqlite_seasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JourneyLedger]:
    """The same on SQLite alone: a season's file of its own is SQLite's (PostgreSQL keeps it in partitions)."""
    with _two_seasons(f"sqlite:///{tmp_path}/ledger.sqlite3", tmp_path, monkeypatch) as ledger:
        yield ledger


def _main_path(ledger: JourneyLedger) -> Path:
    return Path(ledger.database_url.removeprefix("sqlite:///"))


def _in_main_file(ledger: JourneyLedger, query: str, *parameters: Any) -> list[Any]:
    """Rows of the main file alone, read with a connection that attaches nothing."""
    with closing(sqlite3.connect(_main_path(ledger))) as connection:
        return connection.execute(query, parameters).fetchall()


def _reads(ledger: JourneyLedger) -> dict[str, Any]:
    """What the log answers: the catch-up (notifications and the tail), a few of the closed season's journeys'
    histories and trails."""
    log = ledger.recorder.select_notifications(start=1, limit=1_000_000)
    registered = sorted(
        (UUID(str(n.originator_id)), n.id)
        for n in log
        if n.topic.endswith("Journey.Registered") and orjson.loads(n.state)["season"] == CLOSED
    )[:3]
    journeys = [journey for journey, _ in registered]
    return {
        "log": [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in log],
        "page": ledger.recorder.select_notifications(start=registered[0][1], limit=50),
        "tail": ledger.store.select_written_after(registered[1][1], 50),
        "histories": {j: [event_json(e) for e in ledger.history(j)] for j in journeys},
        "positions": {j: [n.id for n in ledger.store.select_aggregate_notifications(j)] for j in journeys},
        "trails": {
            j: [(e.position, e.event) for e in trail(ledger, TrailQuery(aggregate_id=j), 0, 1000).entries]
            for j in journeys
        },
        "head": ledger.head(),
    }


def _stopped_after_the_move(ledger: JourneyLedger, tmp_path: Path) -> None:
    """A close stopped once the season took no more writes (its views' rows could not be written)."""

    def broken(*_: Any) -> Iterator[pa.Table]:
        raise ArchiveError("the target went away while the views were written")
        yield

    views = SeasonViews(ledger.database_url)
    views.read = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(ArchiveError, match="went away"):
        close(ledger, CLOSED, str(tmp_path / "half"), _keys(), views)


def test_a_season_out_of_the_writes_is_read_as_before_and_positions_go_on_from_the_head(
    seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger = seasons
    other = JourneyLedger(ledger.database_url)  # another process's connections, open before the season moves
    before = _reads(ledger)
    assert _reads(other) == before

    _stopped_after_the_move(ledger, tmp_path)

    if ledger.database_url.startswith("sqlite"):
        assert season_file(_main_path(ledger), CLOSED).is_file()
        assert _in_main_file(ledger, "SELECT count(*) FROM stored_events WHERE season = ?", CLOSED) == [(0,)]
        assert _in_main_file(ledger, "SELECT count(*) FROM command_receipts WHERE season = ?", CLOSED) == [(0,)]
    after = _reads(ledger)
    stages = after["head"] - before["head"]  # the season's closing, recorded after the head
    assert stages >= 1 and after["log"][:-stages] == before["log"]
    assert {k: v for k, v in after.items() if k not in ("log", "head")} == {
        k: v for k, v in before.items() if k not in ("log", "head")
    }
    assert _reads(other) == after
    other.close()
    [lag] = status.read(["journey_status"], ledger.database_url)  # `hajj-ledger status`, on a connection of its own
    assert lag.head == after["head"] and lag.lag_events == after["head"] - lag.position > 0 and lag.lag_seconds > 0

    simulate(ledger, 2, OPEN, 6)  # appending goes on after the last position, whichever file holds it
    positions = [n.id for n in ledger.recorder.select_notifications(start=1, limit=1_000_000)]
    assert positions == list(range(1, positions[-1] + 1))  # global and gap-free across the files
    assert positions[-1] > after["head"]


def test_a_close_takes_the_file_out_without_deleting_a_row_of_the_main_file(
    sqlite_seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger = sqlite_seasons
    _stopped_after_the_move(ledger, tmp_path)
    main_rows = _in_main_file(ledger, "SELECT rowid FROM stored_events ORDER BY rowid")
    main_receipts = _in_main_file(ledger, "SELECT command_id FROM command_receipts ORDER BY command_id")
    head = ledger.head()

    close(ledger, CLOSED, str(tmp_path / "archive"), _keys(), SeasonViews(ledger.database_url))

    assert not season_file(_main_path(ledger), CLOSED).exists()
    assert _in_main_file(ledger, "SELECT season FROM season_files") == []
    appended = [(p,) for p in range(head + 1, ledger.head() + 1)]  # the close's own stages, recorded after
    assert _in_main_file(ledger, "SELECT rowid FROM stored_events ORDER BY rowid") == main_rows + appended
    receipts = {r[0] for r in _in_main_file(ledger, "SELECT command_id FROM command_receipts")}
    assert receipts >= {r[0] for r in main_receipts} and len(receipts) == len(main_receipts) + len(appended)
    report = Chain(ledger).verify(_keys().public)
    assert report.ok, report.findings


def test_a_close_stopped_between_its_steps_reopens_and_closes_again(
    sqlite_seasons: JourneyLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = sqlite_seasons
    url, before = ledger.database_url, _reads(sqlite_seasons)
    path = season_file(_main_path(ledger), CLOSED)

    def crash(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt  # the process stopped here

    with monkeypatch.context() as patch:  # the file written whole beside its place, not yet registered
        patch.setattr(SeasonFiles, "register", crash)
        with pytest.raises(KeyboardInterrupt):
            close(ledger, CLOSED, str(tmp_path / "first"), _keys())
    assert not path.exists() and _in_main_file(ledger, "SELECT season FROM season_files") == []
    ledger.close()
    with JourneyLedger(url) as reopened:  # the file not attached: the season is read from the main file still
        read = _reads(reopened)
        assert read["log"][: len(before["log"])] == before["log"] and read["histories"] == before["histories"]

        with monkeypatch.context() as patch:  # taken out, its file not yet deleted
            patch.setattr(SeasonFiles, "remove", crash)
            with pytest.raises(KeyboardInterrupt):
                close(reopened, CLOSED, str(tmp_path / "archive"), _keys())
        assert path.is_file() and [c.season for c in closed_seasons(reopened)] == [CLOSED]
    with JourneyLedger(url) as reopened:  # the file left over is not part of the store
        assert not reopened.store.select_events_of(list(before["histories"]))
        report = Chain(reopened).verify(_keys().public)
        assert report.ok, report.findings
        close(reopened, CLOSED, str(tmp_path / "archive"), _keys())  # its last steps
        assert not path.exists() and reopened.season(CLOSED).stage is SeasonStage.ARCHIVED
        restore(reopened, CLOSED, str(tmp_path / "archive"), _keys().public)
        assert _reads(reopened)["histories"] == before["histories"]


def test_a_restore_brings_the_file_back_and_a_second_close_takes_it_out_again(
    sqlite_seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger, archive = sqlite_seasons, str(tmp_path / "archive")
    before = _reads(ledger)
    path = season_file(_main_path(ledger), CLOSED)
    close(ledger, CLOSED, archive, _keys(), SeasonViews(ledger.database_url))
    assert not path.exists()

    restore(ledger, CLOSED, archive, _keys().public, SeasonViews(ledger.database_url))

    assert path.is_file() and _in_main_file(ledger, "SELECT season FROM season_files") == [(CLOSED,)]
    assert _in_main_file(ledger, "SELECT count(*) FROM stored_events WHERE season = ?", CLOSED) == [(0,)]
    with closing(sqlite3.connect(path)) as season:
        assert season.execute("SELECT count(*) FROM stored_events").fetchone()[0] > 0
        assert season.execute("SELECT count(*) FROM command_receipts").fetchone()[0] > 0
    after = _reads(ledger)
    assert after["log"][: len(before["log"])] == before["log"]
    assert after["histories"] == before["histories"] and after["trails"] == before["trails"]

    close(ledger, CLOSED, archive + "-again", _keys(), SeasonViews(ledger.database_url))

    assert not path.exists() and not ledger.store.select_events_of(list(before["histories"]))


def test_a_close_removes_the_files_left_building_by_a_process_that_died(
    sqlite_seasons: JourneyLedger, tmp_path: Path
) -> None:
    ledger = sqlite_seasons
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    main = _main_path(ledger)
    left = [  # a close killed mid-build, of this season and another, with a journal
        season_file(main, season).with_name(f"{season_file(main, season).name}.building-{int(dead.stdout)}-7{end}")
        for season in (CLOSED, OPEN)
        for end in ("", "-journal")
    ]
    alive = season_file(main, OPEN).with_name(f"{season_file(main, OPEN).name}.building-{os.getpid()}-0")
    for path in (*left, alive):
        path.write_bytes(b"half a season")

    close(ledger, CLOSED, str(tmp_path / "archive"), _keys(), SeasonViews(ledger.database_url))

    assert [path for path in left if path.exists()] == []
    assert alive.read_bytes() == b"half a season"  # a live process's build (here, another thread's) is its own
    assert ledger.season(CLOSED).stage is SeasonStage.ARCHIVED


def test_the_log_across_files_is_read_as_a_merge_of_index_scans(sqlite_seasons: JourneyLedger, tmp_path: Path) -> None:
    ledger = sqlite_seasons
    _stopped_after_the_move(ledger, tmp_path)
    journey: UUID = next(iter(_reads(ledger)["histories"]))

    def plan(query: str, *parameters: Any) -> list[str]:
        with ledger.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute("EXPLAIN QUERY PLAN " + query, parameters)
            return [row[3] for row in cursor.fetchall()]

    catch_up = plan("SELECT rowid, * FROM stored_events WHERE rowid>? ORDER BY rowid LIMIT ?", 10, 500)
    history = plan(
        "SELECT rowid, originator_version FROM stored_events WHERE originator_id = ? ORDER BY originator_version",
        journey.hex,
    )
    for steps in (catch_up, history):
        assert steps[0] == "MERGE (UNION ALL)", steps
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in steps), steps
    assert f"SEARCH s{CLOSED}.stored_events USING INTEGER PRIMARY KEY (rowid>?)" in catch_up
    assert any(step.startswith(f"SEARCH s{CLOSED}.stored_events USING COVERING INDEX") for step in history)


def test_a_process_started_while_a_season_is_in_its_file_opens_the_store_and_reads_it(
    sqlite_seasons: JourneyLedger, tmp_path: Path
) -> None:
    """A server restarted, or `season close` run again, between the move and the take-out: its ledger makes the
    store's tables and indexes as it starts, on a connection that already reads the log through the season's view
    (an unqualified index on it was refused: "views may not be indexed")."""
    ledger = sqlite_seasons
    _stopped_after_the_move(ledger, tmp_path)
    before = _reads(ledger)
    started = JourneyLedger(ledger.database_url)
    try:
        assert _reads(started) == before
    finally:
        started.close()
    engine = engine_for(ledger.database_url)  # `hajj-ledger migrate` in a process of its own
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def test_a_command_id_of_a_season_in_its_file_is_refused_for_a_different_command(
    sqlite_seasons: JourneyLedger, tmp_path: Path
) -> None:
    """The main file's key on the receipts no longer sees the ids of a season moved to its file: a trusting batch
    (no receipt looked up first) must still refuse a command that reuses one of them, as it did before the move."""
    ledger = sqlite_seasons
    _stopped_after_the_move(ledger, tmp_path)
    with closing(sqlite3.connect(season_file(_main_path(ledger), CLOSED))) as moved:
        [(used,)] = moved.execute("SELECT command_id FROM command_receipts LIMIT 1").fetchall()
    fresh = JourneyLedger(ledger.database_url)  # a server started after the move: nothing in its write cache
    try:
        head = fresh.head()
        reused = command("Registered", command_id=UUID(used), pilgrim_id=uuid4(), season=OPEN, country="IDN")
        with pytest.raises(IdempotencyKeyReusedError, match="already used for a different command"):
            fresh.record(reused, actor(Role.MISSION))
        assert fresh.head() == head
    finally:
        fresh.close()
