"""Closing a season and restoring it; reading a closed season is `reading.py`'s, its archive's files `files.py`'s.

Closing (`close`): the log is sealed and a checkpoint signed at the season's last event; the season's events (as
stored), its commands' receipts, the chain's digests and checkpoints from the last checkpoint before its first
event to that one, and its rows of every view go to the archive as Parquet files, with a manifest signed with the
ledger's key; the archive is read back from its place and verified; only then does the season leave the hot store,
in one transaction: on PostgreSQL its partitions of the log and of the receipts are detached and dropped; on SQLite
its file (hajj_ledger.store.season_files: its rows moved there from the main file when closing began) is
unregistered, then deleted. Either way a metadata operation, not a DELETE of its rows. The chain keeps the
digests of the archived positions (`ledger_archived` lists their runs), so `verify` of the hot store still links
the whole log and checks every signed checkpoint. A close that fails before that transaction leaves the hot store
whole: the archive written so far is simply not used.

Restoring (`restore`) verifies the archive first, then puts the events and receipts back at their positions, in
one transaction (on SQLite: the season's file written again and registered), and the views' rows after.

The identity vault is not archived: identities stay in the vault, and its retention erases them whether their
season is closed or not (events carry no identity); an archived season's erasures are recorded on the season
(hajj_ledger.identities).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

import pyarrow as pa

from hajj_ledger.archive.files import (
    CHAIN_SCHEMA,
    CHECKPOINTS_SCHEMA,
    EVENTS_SCHEMA,
    PAGE,
    RECEIPTS_SCHEMA,
    chain_pages,
    checkpoints_table,
    events_table,
)
from hajj_ledger.archive.target import MANIFEST, ArchiveError, Target
from hajj_ledger.archive.verification import CHAIN, CHECKPOINTS, EVENTS, FORMAT, RECEIPTS, Verdict, verify_archive
from hajj_ledger.audit.chain import Chain
from hajj_ledger.audit.chain_sql import ChainTables
from hajj_ledger.audit.links import FIRST
from hajj_ledger.audit.manifests import sign_manifest
from hajj_ledger.audit.signing import PublicKeys, SigningKeys
from hajj_ledger.domain.errors import ConflictError, NotFoundError, ValidationError
from hajj_ledger.domain.season_commands import ArchiveSeason, BeginSeasonClosing, CloseSeason, RestoreSeason
from hajj_ledger.domain.vocabulary import Actor, Role, SeasonStage
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.store.season_files import SeasonFiles, registered
from hajj_ledger.store.seasons import NO_SEASON, season_partition

REGISTRY = "season_archives"
MINISTRY = Actor("ministry", Role.MINISTRY)  # who closes, archives and restores a season


@dataclass(frozen=True)
class SeasonTable:
    """One view's table as a season's archive holds it: `views/<name>.parquet`."""

    name: str
    schema: pa.Schema
    physical: tuple[str, ...]  # the tables behind the view (each generation): what a close deletes the rows from
    # Which rows are the season's, as SQL on the view's columns: `%s` stands for the season, {events} and
    # {position} for the log's table and its position column.
    condition: str


class Views(Protocol):
    """The read side's part: its views' rows of a season, read from the store, and written back into one."""

    def tables(self) -> Sequence[SeasonTable]: ...

    def read(self, table: SeasonTable, season: int) -> Iterator[pa.Table]: ...

    def write(self, table: SeasonTable, batches: Iterator[pa.RecordBatch], database_url: str) -> int: ...

    def settle(self, database_url: str, position: int) -> None: ...


class SeasonClosedError(ConflictError):
    """A season closed already (closing it again), or not closed (restoring it)."""


@dataclass(frozen=True)
class Closed:
    """A closed season as the hot store registers it."""

    season: int
    url: str
    manifest_sha256: str
    first_position: int
    last_position: int
    events: int
    closed_at: str


class HotStore:
    """The hot store's side of a close and a restore: the SQL on its log, receipts, chain and registry."""

    def __init__(self, ledger: JourneyLedger) -> None:
        self.tables = ChainTables(ledger)
        self.tables.create()
        self.postgres = self.tables.postgres
        recorder: Any = ledger.recorder
        self.recorder = recorder
        self.events_name: str = recorder.events_table_name
        self.schema: str = recorder.datastore.schema if self.postgres else ""
        self.names = {
            **self.tables.names,
            "receipts": self._qualified("command_receipts"),
            "registry": self._qualified(REGISTRY),
        }
        with self.cursor(commit=True) as cursor:
            cursor.execute(
                self.sql(
                    "CREATE TABLE IF NOT EXISTS {registry} (season INTEGER PRIMARY KEY, url TEXT NOT NULL, "
                    "manifest_sha256 TEXT NOT NULL, first_position BIGINT NOT NULL, last_position BIGINT NOT NULL, "
                    "events BIGINT NOT NULL, closed_at TEXT NOT NULL)"
                )
            )

    def move_out(self, season: int) -> bool:
        """SQLite: the season's events and receipts moved from the main file to a file of their own, unless they are
        there already (a close taken up again, a restored season); whether they were moved now. Only once the
        season takes no more writes (closing)."""
        if self.postgres:
            return False
        files: SeasonFiles = self.recorder.season_files
        with self.cursor() as cursor:
            if season in registered(cursor):
                return False
        events, receipts = files.build(season, files.copy_from_main(season))
        with self.cursor(commit=True) as cursor:
            files.register(cursor, season, events, receipts)
        return True

    def _qualified(self, name: str) -> str:
        return f'"{self.schema}"."{name}"' if self.postgres else name

    def sql(self, text: str) -> str:
        text = text.format(**self.names)
        return text if self.postgres else text.replace("%s", "?")

    def cursor(self, *, commit: bool = False) -> Any:
        return self.tables.cursor(commit=commit)

    def closed(self, season: int) -> Closed | None:
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT * FROM {registry} WHERE season = %s"), (season,))
            row = cursor.fetchone()
        return Closed(*row) if row else None

    def all_closed(self) -> list[Closed]:
        with self.cursor() as cursor:
            cursor.execute(self.sql("SELECT * FROM {registry} ORDER BY season"))
            return [Closed(*row) for row in cursor.fetchall()]

    def extent(self, season: int) -> tuple[int, int, int]:
        """The season's first and last positions in the log, and its events."""
        with self.cursor() as cursor:
            cursor.execute(
                self.sql("SELECT min({position}), max({position}), count(*) FROM {events} WHERE season = %s"), (season,)
            )
            first, last, count = cursor.fetchone()
        return int(first or 0), int(last or 0), int(count)

    def events(self, season: int, first: int, last: int) -> Iterator[pa.Table]:
        """The season's events from `first` to `last`, a page of positions at a time, as the archive holds them."""
        for page in self.tables.season_pages(season, first - 1, last, PAGE):
            yield events_table(page)

    def receipts(self, season: int) -> Iterator[pa.Table]:
        after = "" if not self.postgres else "00000000-0000-0000-0000-000000000000"
        while True:
            with self.cursor() as cursor:
                cast = "::text" if self.postgres else ""
                cursor.execute(
                    self.sql(
                        f"SELECT command_id{cast}, fingerprint, outcome FROM {{receipts}} WHERE season = %s AND "
                        f"command_id > %s{cast.replace('text', 'uuid')} ORDER BY command_id LIMIT %s"
                    ),
                    (season, after, PAGE),
                )
                rows = cursor.fetchall()
            if not rows:
                return
            ids, fingerprints, outcomes = zip(*rows, strict=True)
            yield pa.table([[str(UUID(i)) for i in ids], list(fingerprints), list(outcomes)], RECEIPTS_SCHEMA)
            after = rows[-1][0]

    def take_out(self, season: int, closed: Closed, views: Sequence[SeasonTable]) -> None:
        """The season out of the hot store, in one transaction, if it is still exactly what was archived."""
        with self.cursor(commit=True) as cursor:
            for table in views:
                for physical in filter(lambda name: self._exists(cursor, name), table.physical):
                    cursor.execute(
                        self.sql(f"DELETE FROM {self._qualified(physical)} WHERE " + table.condition), (season,)
                    )
            if self.postgres:  # writers take the same lock: nothing is appended to the season while it goes
                cursor.execute(self.sql("LOCK TABLE {events} IN EXCLUSIVE MODE"))
            cursor.execute(
                self.sql("SELECT count(*), coalesce(max({position}), 0) FROM {events} WHERE season = %s"), (season,)
            )
            count, last = cursor.fetchone()
            if (int(count), int(last)) != (closed.events, closed.last_position):
                raise SeasonClosedError(
                    f"season {season} changed while it was being closed ({count:,} events up to position {last}; "
                    f"{closed.events:,} archived up to {closed.last_position}): nothing was taken out; close it again"
                )
            self._mark_archived(cursor, season, closed.first_position, closed.last_position)
            cursor.execute(
                self.sql("INSERT INTO {registry} VALUES (%s, %s, %s, %s, %s, %s, %s)"),
                (closed.season, closed.url, closed.manifest_sha256, closed.first_position, closed.last_position,
                 closed.events, closed.closed_at),
            )  # fmt: skip
            if self.postgres:
                for name in (self.events_name, "command_receipts"):
                    partition = self._qualified(season_partition(name, season))
                    cursor.execute(f"ALTER TABLE {self._qualified(name)} DETACH PARTITION {partition}")
                    cursor.execute(f"DROP TABLE {partition}")
            else:
                self.recorder.season_files.unregister(cursor, season)
        self.remove_file(season)  # once unregistered: a crash before this leaves a file nothing attaches

    def remove_file(self, season: int) -> None:
        """SQLite: the file of a season taken out, deleted."""
        if not self.postgres:
            self.recorder.season_files.remove(season)

    def _exists(self, cursor: Any, table: str) -> bool:
        if self.postgres:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (self._qualified(table),))
        else:
            cursor.execute("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return bool(cursor.fetchone()[0])

    def _mark_archived(self, cursor: Any, season: int, first: int, last: int) -> None:
        """The runs of sealed positions that are the season's, between its first and last (gaps and islands)."""
        cursor.execute(
            self.sql(
                "INSERT INTO {archived} (first, last, season) SELECT min(position), max(position), %s FROM ("
                "SELECT position, mine, row_number() OVER (ORDER BY position) - "
                "row_number() OVER (PARTITION BY mine ORDER BY position) AS island FROM ("
                "SELECT c.position, s.at IS NOT NULL AS mine FROM {chain} AS c LEFT JOIN "
                "(SELECT {position} AS at FROM {events} WHERE season = %s) AS s ON s.at = c.position "
                "WHERE c.position >= %s AND c.position <= %s) AS marked) AS runs WHERE mine GROUP BY island"
            ),
            (season, season, first, last),
        )

    def put_back(self, season: int, target: Target) -> None:
        """The archived events and receipts back at their positions, in one transaction."""
        with self.cursor(commit=True) as cursor:
            events = self.names["events"]
            receipts = self.names["receipts"]
            if self.postgres:
                for table in (self.events_name, "command_receipts"):
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {self._qualified(season_partition(table, season))} PARTITION OF "
                        f"{self._qualified(table)} FOR VALUES IN ({int(season)})"
                    )
                copy = (
                    f"COPY {events} (notification_id, originator_id, originator_version, topic, state, season) "
                    "FROM STDIN (FORMAT BINARY)"
                )
                with cursor.copy(copy) as writing:
                    writing.set_types(["int8", "uuid", "int8", "text", "bytea", "int4"])
                    for batch in target.batches(EVENTS):
                        for p, i, v, t, s in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                            writing.write_row((p, UUID(bytes=i), v, t, s, season))
                with cursor.copy(f"COPY {receipts} FROM STDIN (FORMAT BINARY)") as writing:
                    writing.set_types(["uuid", "text", "text", "int4"])
                    for batch in target.batches(RECEIPTS):
                        for c, f, o in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                            writing.write_row((UUID(c), f, o, season))
            else:
                files: SeasonFiles = self.recorder.season_files
                written = files.build(
                    season,
                    lambda file: into_sqlite(file, "main.stored_events", target, season, "main.command_receipts"),
                )
                files.register(cursor, season, *written)
            cursor.execute(self.sql("DELETE FROM {archived} WHERE season = %s"), (season,))
            cursor.execute(self.sql("DELETE FROM {registry} WHERE season = %s"), (season,))


def into_sqlite(cursor: Any, events: str, target: Target, season: int, receipts: str = "command_receipts") -> None:
    """The archived events, at their positions, and receipts into a SQLite store (or a season's file)."""
    for batch in target.batches(EVENTS):
        cursor.executemany(
            f"INSERT INTO {events} (rowid, originator_id, originator_version, topic, state, season) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(p, i.hex(), v, t, s, season) for p, i, v, t, s in
             zip(*(c.to_pylist() for c in batch.columns), strict=True)],
        )  # fmt: skip
    for batch in target.batches(RECEIPTS):
        cursor.executemany(
            f"INSERT INTO {receipts} VALUES (?, ?, ?, ?)",
            [(UUID(c).hex, f, o, season) for c, f, o in zip(*(c.to_pylist() for c in batch.columns), strict=True)],
        )


def close(
    ledger: JourneyLedger,
    season: int,
    url: str,
    keys: SigningKeys,
    views: Views | None = None,
    stages: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Archive `season` at `url`, verify the archive there, then take the season out of the hot store; returns the
    archive's manifest. Each stage is recorded on the season (hajj_ledger.domain.season) as the ministry: closing
    begun (refused, with the reason, before its calendar allows), closed (the archive written and verified),
    archived (taken out). A close that stopped once the archive was verified takes up from there. Each stage's
    seconds go into `stages`, if given (move: SQLite's rows into the season's file; seal, write, verify, take_out)."""
    clock = _Clock(stages)
    if season == NO_SEASON:
        raise ValidationError("season", "events of no season (licensed buildings) are never closed")
    url = archive_url(url)
    store = HotStore(ledger)
    if (found := store.closed(season)) is not None:
        if ledger.season(season).stage is not SeasonStage.CLOSED:
            raise SeasonClosedError(f"season {season} is closed already: its archive is {found.url}")
        # Taken out by a close that stopped before its last steps: its file (SQLite) deleted, its stage recorded.
        store.remove_file(season)
        _record(ledger, ArchiveSeason, season)
        return Target(found.url).read_json(MANIFEST)
    stage = ledger.season(season).stage
    if stage in (SeasonStage.OPEN, SeasonStage.RUNNING):
        _record(ledger, BeginSeasonClosing, season)
    elif stage not in (SeasonStage.CLOSING, SeasonStage.CLOSED):
        raise SeasonClosedError(f"season {season} is {stage}: nothing to close")
    if store.move_out(season):  # it takes no more writes now
        clock.lap("move")
    if stage is SeasonStage.CLOSED:  # its archive was written and verified: take the season out
        written = ledger.season(season).archive_written
        assert written is not None
        return _take_out(ledger, store, season, written.url, keys, views, clock)
    first, last, count = store.extent(season)
    if count == 0:
        raise NotFoundError(f"season {season} has no events in the store")
    chain = Chain(ledger, keys)
    checkpoint = chain.checkpoint_at(last)
    clock.lap("seal")
    start = store.tables.checkpoint_before(first)
    target = Target(url)
    target.make()
    files: dict[str, dict[str, Any]] = {}

    def write(name: str, schema: pa.Schema, tables: Iterator[pa.Table]) -> None:
        with target.parquet(name, schema) as (writer, written):
            for table in tables:
                writer.write_table(table)
                written.rows += table.num_rows
        files[name] = written.to_json()

    write(EVENTS, EVENTS_SCHEMA, store.events(season, first, last))
    write(RECEIPTS, RECEIPTS_SCHEMA, store.receipts(season))
    write(CHAIN, CHAIN_SCHEMA, chain_pages(store.tables, start.position if start else FIRST, last))
    covering = [c for c in store.tables.checkpoints(start.position - 1 if start else FIRST, None) if c.position <= last]
    write(CHECKPOINTS, CHECKPOINTS_SCHEMA, iter([checkpoints_table(covering)]))
    tables = list(views.tables()) if views is not None else []
    for table in tables:
        assert views is not None
        write(f"views/{table.name}.parquet", table.schema, views.read(table, season))
    if files[EVENTS]["rows"] != count:
        raise SeasonClosedError(f"season {season} changed while it was being archived; nothing was taken out")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "season": season,
        "closed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": {"first": first, "last": last, "count": count},
        "files": files,
        "views": [t.name for t in tables],
        "chain": {
            "start": {"position": start.position, "head": start.head.hex()}
            if start
            else {"position": None, "head": ""},
            "checkpoint": checkpoint.to_json(),
        },
    }
    sign_manifest(manifest, keys)
    target.write_json(MANIFEST, manifest)
    clock.lap("write")
    return _take_out(ledger, store, season, url, keys, views, clock)


def _take_out(
    ledger: JourneyLedger,
    store: HotStore,
    season: int,
    url: str,
    keys: SigningKeys,
    views: Views | None,
    clock: _Clock,
) -> dict[str, Any]:
    """The archive at `url` verified where it lies (read back, not from memory), the stage recorded, then the season
    out of the hot store."""
    verdict = verify_archive(url, keys.public)
    clock.lap("verify")
    if not verdict.ok:
        problems = "; ".join(verdict.problems)
        raise ArchiveError(f"the archive at {url} does not verify, so season {season} stays: {problems}")
    target = Target(url)
    manifest = target.read_json(MANIFEST)
    events = manifest["events"]
    digest = target.sha256(MANIFEST)
    if ledger.season(season).stage is SeasonStage.CLOSING:
        _record(ledger, CloseSeason, season, archive_url=url, manifest_digest=digest, first_position=events["first"],
                last_position=events["last"], event_count=events["count"])  # fmt: skip
    closed = Closed(season, url, digest, events["first"], events["last"], events["count"], manifest["closed_at"])
    store.take_out(season, closed, list(views.tables()) if views is not None else [])
    _record(ledger, ArchiveSeason, season)
    clock.lap("take_out")
    return manifest


class _Clock:
    """The seconds of each stage of a close, into `stages` if there is one."""

    def __init__(self, stages: dict[str, float] | None) -> None:
        self.stages = stages
        self.started = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stages is not None:
            self.stages[stage] = now - self.started
        self.started = now


def archive_url(url: str) -> str:
    """An archive's place as a URL: a local path becomes a file:// URL."""
    return url if "://" in url else Path(url).absolute().as_uri()


SeasonStep = BeginSeasonClosing | CloseSeason | ArchiveSeason | RestoreSeason


def _record(ledger: JourneyLedger, command: type[SeasonStep], season: int, **fields: Any) -> None:
    """A stage of the season, recorded as the ministry records it."""
    made = command(command_id=uuid4(), occurred_at=datetime.now(UTC), season=season, **fields)
    ledger.record(made, MINISTRY)


def closed_seasons(ledger: JourneyLedger) -> list[Closed]:
    return HotStore(ledger).all_closed()


def restore(ledger: JourneyLedger, season: int, url: str, public: PublicKeys, views: Views | None = None) -> Verdict:
    """Bring a closed season back into the hot store from its archive, verified first; recorded on the season."""
    url = archive_url(url)
    store = HotStore(ledger)
    closed = store.closed(season)
    if closed is None:
        raise SeasonClosedError(f"season {season} is not closed in this store: nothing to restore")
    verdict = verify_archive(url, public)
    if not verdict.ok:
        raise ArchiveError(
            f"the archive at {url} does not verify, so nothing was restored: {'; '.join(verdict.problems)}"
        )
    if verdict.season != season:
        raise ValidationError("season", f"the archive at {url} is of season {verdict.season}, not {season}")
    target = Target(url)
    if target.sha256(MANIFEST) != closed.manifest_sha256:
        raise ValidationError("url", f"{url} is not the archive season {season} was closed to ({closed.url})")
    store.put_back(season, target)
    _record(ledger, RestoreSeason, season)
    if views is not None:
        for table in views.tables():
            views.write(table, target.batches(f"views/{table.name}.parquet"), ledger.database_url)
    return verdict
