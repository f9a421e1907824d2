"""Where the events live: eventsourcing's own SQLite or PostgreSQL recorder, chosen by one URL.

The recorders are the library's, extended by `command_receipts`, written in the same transaction as the events a
command produced (so that a command id is remembered exactly when its events are stored), and by the identity vault.
The SQLite recorder is here; the PostgreSQL one is in `store.postgres`, named by topic, so that psycopg is imported
only for a PostgreSQL store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID
from weakref import WeakKeyDictionary

import orjson
from eventsourcing.persistence import Notification, OperationalError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnection, SQLiteCursor, SQLiteDatastore
from eventsourcing.utils import get_topic

from hajj_ledger.identity.vault import Sealed
from hajj_ledger.settings import settings
from hajj_ledger.store.connections import (
    DATABASE_URL_VARIABLE as DATABASE_URL_VARIABLE,  # where it always was
)
from hajj_ledger.store.connections import DEFAULT_DATABASE_URL as DEFAULT_DATABASE_URL
from hajj_ledger.store.connections import (
    Postgres,
    direct_url,
    unsupported_store,
    url_refusal,
    write_pool_overflow,
    write_pool_size,
)
from hajj_ledger.store.season_files import FOLLOW_TRIES, LOG_HEAD, REGISTRY, SeasonFiles, generation
from hajj_ledger.store.seasons import NO_SEASON, first_seasons, season_shut, seasons_written


@dataclass(frozen=True)
class Receipt:
    """What an accepted command produced: its fingerprint and the events it stored."""

    command_id: UUID
    fingerprint: str
    event: str
    aggregate_id: UUID
    events: tuple[tuple[UUID, int, str], ...]  # (originator id, version, event name) of each stored event

    def outcome_json(self) -> str:
        return orjson.dumps(
            {
                "event": self.event,
                "aggregate_id": self.aggregate_id.hex,
                "events": [[i.hex, v, name] for i, v, name in self.events],
            }
        ).decode()

    @classmethod
    def from_row(cls, command_id: str, fingerprint: str, outcome: str) -> Receipt:
        data = orjson.loads(outcome)
        return cls(
            UUID(command_id),
            fingerprint,
            data["event"],
            UUID(data["aggregate_id"]),
            tuple((UUID(i), v, name) for i, v, name in data["events"]),
        )


class LedgerRecorder(Protocol):
    """What the ledger needs of a store beyond the library's recorder interface."""

    def select_receipts(self, command_ids: Sequence[UUID]) -> dict[UUID, Receipt]: ...

    def select_positions(self, events: Iterable[tuple[UUID, int, str]]) -> list[int]: ...

    def select_sealed(self, journey_id: UUID) -> Sealed | None: ...

    def select_by_passport(self, index: bytes) -> list[UUID]: ...

    def select_by_names(self, entries: Sequence[bytes], limit: int) -> list[UUID]: ...

    def select_all_sealed(self) -> list[Sealed]: ...

    def select_vault_journeys(self) -> list[UUID]: ...

    def replace_sealed(self, sealed: Sequence[Sealed]) -> None: ...

    def select_aggregate_notifications(self, aggregate_id: UUID) -> list[Notification]: ...

    def select_events_of(self, aggregate_ids: Sequence[UUID]) -> list[StoredEvent]: ...

    def select_written_after(self, position: int, limit: int) -> list[Written]: ...


# An event as the log's tail gives it: position, aggregate, version, topic, state. A plain tuple, not a StoredEvent:
# the relay reads whole pages of the log, and building a frozen dataclass a row cost it an eighth of its time.
Written = tuple[int, UUID, int, str, bytes]

# A batch's changes to the vault, written in the same transaction as its events: a sealed identity to keep
# (new or corrected), or None to destroy (erasure).
VaultChanges = Sequence[tuple[UUID, Sealed | None]]


class SeasonedDatastore(SQLiteDatastore):
    """The library's SQLite datastore whose connections attach the store's season files (store.season_files)."""

    season_files: SeasonFiles
    followed: WeakKeyDictionary[SQLiteConnection, int]  # the registry's generation each connection has attached

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        """A transaction on a connection attached to the season files registered. A writer follows the registry
        before it begins (its first statement must be its first write: SQLiteLedgerRecorder._insert_events) and
        writes the main file only; a reader checks it in its transaction, whose snapshot is then what it reads."""
        with self.get_connection(commit=commit) as connection:
            raw = connection.cursor().sqlite_cursor.connection
            if commit:
                self.followed[connection] = self.season_files.follow(raw, self.followed.get(connection, 0))
            for _ in range(FOLLOW_TRIES):
                with connection.transaction(commit=commit) as cursor:
                    if commit or generation(raw) == self.followed.get(connection, 0):
                        yield cursor
                        return
                self.followed[connection] = self.season_files.follow(raw, self.followed.get(connection, 0))
        raise OperationalError("the store's season files kept changing while a read began")


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        # The library made the datastore; its transactions become ones that follow the season files.
        datastore.__class__ = SeasonedDatastore
        assert isinstance(datastore, SeasonedDatastore)
        datastore.season_files = SeasonFiles(Path(datastore.pool.db_name))
        datastore.followed = WeakKeyDictionary()
        super().__init__(datastore, **kwargs)
        self.select_max_notification_id_statement = LOG_HEAD  # the view's max(rowid) would read it whole

    @property
    def season_files(self) -> SeasonFiles:
        assert isinstance(self.datastore, SeasonedDatastore)
        return self.datastore.season_files

    def construct_create_table_statements(self) -> list[str]:
        return [
            # The library's table with each event's season (store.seasons), which a season's close deletes by.
            *(
                statement.replace("state BLOB, ", "state BLOB, season INTEGER NOT NULL DEFAULT 0, ")
                for statement in super().construct_create_table_statements()
            ),
            # The index named in `main`, so that its table is the main file's: a connection reads the log through a
            # TEMP VIEW of the same name once a season is in a file of its own, and views take no index.
            f"CREATE INDEX IF NOT EXISTS main.{self.events_table_name}_season ON {self.events_table_name} (season)",
            "CREATE TABLE IF NOT EXISTS command_receipts (command_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "outcome TEXT NOT NULL, season INTEGER NOT NULL DEFAULT 0)",
            # The highest position a closed season took out of the log: SQLite would otherwise give a position
            # again once the events above it were deleted, and the chain has sealed it.
            "CREATE TABLE IF NOT EXISTS log_floor (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
            # The seasons kept in files of their own, attached (store.season_files).
            f"CREATE TABLE IF NOT EXISTS {REGISTRY} (season INTEGER PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS identity_vault (journey_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
            "wrapped_key BLOB NOT NULL, ciphertext BLOB NOT NULL, passport_index BLOB NOT NULL, "
            "scope TEXT NOT NULL, name_index BLOB NOT NULL)",
            "CREATE INDEX IF NOT EXISTS identity_vault_passport ON identity_vault (passport_index)",
            # SQLite has no arrays: the name index gets a table of its own, one row per entry.
            "CREATE TABLE IF NOT EXISTS identity_names (entry BLOB NOT NULL, journey_id TEXT NOT NULL, "
            "PRIMARY KEY (entry, journey_id)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS identity_names_journey ON identity_names (journey_id)",
        ]

    def create_table(self) -> None:
        """The library's tables; a store made before seasons were kept gets its season columns first, each event and
        receipt its aggregate's season (store.seasons)."""
        events = self.events_table_name
        with self.datastore.transaction(commit=True) as c:
            c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (events,))
            made = c.fetchone()[0]
            c.execute("SELECT count(*) FROM pragma_table_info(?, 'main') WHERE name = 'season'", (events,))
            if made and not c.fetchone()[0]:
                c.execute(f"ALTER TABLE main.{events} ADD COLUMN season INTEGER NOT NULL DEFAULT 0")
                c.execute("ALTER TABLE main.command_receipts ADD COLUMN season INTEGER NOT NULL DEFAULT 0")
                c.execute(f"SELECT originator_id, topic, state FROM main.{events} WHERE originator_version = 1")
                seasons = list(first_seasons(c.fetchall()))
                c.execute("CREATE TEMPORARY TABLE aggregate_seasons (id TEXT PRIMARY KEY, season INTEGER NOT NULL)")
                c.executemany("INSERT INTO aggregate_seasons VALUES (?, ?)", seasons)
                c.execute(
                    f"UPDATE main.{events} SET season = s.season FROM aggregate_seasons AS s "
                    f"WHERE s.id = {events}.originator_id"
                )
                c.execute(
                    "UPDATE main.command_receipts SET season = s.season FROM aggregate_seasons AS s "
                    "WHERE s.id = json_extract(command_receipts.outcome, '$.aggregate_id')"
                )
                c.execute("DROP TABLE aggregate_seasons")
        super().create_table()

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        receipts: Sequence[Receipt] = (),
        vault: VaultChanges = (),
        seasons: Mapping[UUID, int] | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        # One executemany instead of the library's statement per event, each at the position after the newest event
        # and after any that left the main file (log_floor). The rowids are consecutive: this transaction holds
        # SQLite's write lock from its first insert (the first statement: a read first would be refused the lock
        # while another writer holds it, "database is locked", rather than wait) to its commit. Everything goes to
        # the main file, whatever its season (store.season_files).
        events = f"main.{self.events_table_name}"
        c.executemany(
            f"INSERT INTO {events} (rowid, originator_id, originator_version, topic, state, season) VALUES "
            f"(({LOG_HEAD}) + 1, ?, ?, ?, ?, ?)",
            [
                (e.originator_id.hex, e.originator_version, e.topic, e.state, season_in(seasons, e.originator_id))  # type: ignore[union-attr]
                for e in stored_events
            ],
        )
        self._refuse_shut_seasons(c, seasons, stored_events, receipts)
        c.execute(self.select_max_notification_id_statement)
        last = int(c.fetchone()[0]) if stored_events else 0
        ids = list(range(last - len(stored_events) + 1, last + 1))
        c.executemany(
            "INSERT INTO main.command_receipts VALUES (?, ?, ?, ?)",
            [(r.command_id.hex, r.fingerprint, r.outcome_json(), season_in(seasons, r.aggregate_id)) for r in receipts],
        )
        if vault:
            kept, destroyed = final_vault(vault)
            c.execute("PRAGMA secure_delete = ON")  # erased bytes are overwritten, not just unlinked
            self._delete_names(c, [*destroyed, *(s.journey_id for s in kept)])
            c.executemany("DELETE FROM identity_vault WHERE journey_id = ?", [(j.hex,) for j in destroyed])
            self._write_sealed(c, kept)
        return ids

    def _refuse_shut_seasons(
        self,
        c: SQLiteCursor,
        seasons: Mapping[UUID, int] | None,
        stored_events: Sequence[StoredEvent],
        receipts: Sequence[Receipt],
    ) -> None:
        """Raise SeasonShutError if the batch writes into a season another writer has put into closing or later:
        its own aggregate has recorded more than its opening. Read in this transaction, which holds SQLite's write
        lock since its first insert: nothing of the season commits after its SeasonClosing."""
        written = seasons_written(
            [season_in(seasons, e.originator_id) for e in stored_events]
            + [season_in(seasons, r.aggregate_id) for r in receipts]
        )
        if not written:
            return
        c.execute(
            f"SELECT originator_id FROM main.{self.events_table_name} WHERE originator_id IN "
            f"({', '.join('?' * len(written))}) AND originator_version > 1 LIMIT 1",
            [season_id.hex for season_id in written],
        )
        shut = c.fetchone()
        if shut is not None:
            raise season_shut(written, shut[0])

    @staticmethod
    def _write_sealed(c: SQLiteCursor, sealed: Sequence[Sealed]) -> None:
        c.executemany("INSERT OR REPLACE INTO identity_vault VALUES (?, ?, ?, ?, ?, ?, ?)", map(_sqlite_row, sealed))
        c.executemany(  # in the key's order: each B-tree page is reached once, not at random (issue 29)
            "INSERT OR IGNORE INTO identity_names VALUES (?, ?)",
            sorted((entry, s.journey_id.hex) for s in sealed for entry in s.name_index),
        )

    @staticmethod
    def _delete_names(c: SQLiteCursor, journey_ids: Sequence[UUID]) -> None:
        c.executemany("DELETE FROM identity_names WHERE journey_id = ?", [(j.hex,) for j in journey_ids])

    def select_sealed(self, journey_id: UUID) -> Sealed | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM identity_vault WHERE journey_id = ?", (journey_id.hex,))
            row = c.fetchone()
        return sealed_from_row(row) if row else None

    def select_by_passport(self, index: bytes) -> list[UUID]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT journey_id FROM identity_vault WHERE passport_index = ?", (index,))
            return [UUID(r[0]) for r in c.fetchall()]

    def select_by_names(self, entries: Sequence[bytes], limit: int) -> list[UUID]:
        marks = ",".join("?" * len(entries))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT journey_id FROM identity_names WHERE entry IN ({marks}) GROUP BY journey_id "
                "HAVING count(*) = ? ORDER BY journey_id LIMIT ?",
                (*entries, len(entries), limit),
            )
            return [UUID(r[0]) for r in c.fetchall()]

    def select_vault_journeys(self) -> list[UUID]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT journey_id FROM identity_vault")
            return [UUID(r[0]) for r in c.fetchall()]

    def select_all_sealed(self) -> list[Sealed]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM identity_vault")
            return [sealed_from_row(r) for r in c.fetchall()]

    def replace_sealed(self, sealed: Sequence[Sealed]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("PRAGMA secure_delete = ON")
            self._delete_names(c, [s.journey_id for s in sealed])
            self._write_sealed(c, sealed)

    def select_receipts(self, command_ids: Sequence[UUID]) -> dict[UUID, Receipt]:
        if not command_ids:
            return {}
        marks = ",".join("?" * len(command_ids))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT command_id, fingerprint, outcome FROM command_receipts WHERE command_id IN ({marks})",
                [i.hex for i in command_ids],
            )
            rows = c.fetchall()
        return {UUID(r["command_id"]): Receipt.from_row(*r) for r in rows}

    def select_aggregate_notifications(self, aggregate_id: UUID) -> list[Notification]:
        """Every event of one journey or trip with its position in the log, oldest first."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_version, topic, state FROM {self.events_table_name} "
                "WHERE originator_id = ? ORDER BY originator_version",
                (aggregate_id.hex,),
            )
            return [
                Notification(id=r[0], originator_id=aggregate_id, originator_version=r[1], topic=r[2], state=r[3])
                for r in c.fetchall()
            ]

    def select_events_of(self, aggregate_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of many aggregates in one query, each aggregate's in order."""
        marks = ",".join("?" * len(aggregate_ids))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {self.events_table_name} "
                f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
                [i.hex for i in aggregate_ids],
            )
            return [StoredEvent(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]

    def select_written_after(self, position: int, limit: int) -> list[Written]:
        """The events after `position`, with their positions, oldest first."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (position, limit),
            )
            return [(r[0], UUID(r[1]), r[2], r[3], r[4]) for r in c.fetchall()]

    def select_positions(self, events: Iterable[tuple[UUID, int, str]]) -> list[int]:
        with self.datastore.transaction(commit=False) as c:
            positions = []
            for originator_id, version, _ in events:
                c.execute(
                    f"SELECT rowid FROM {self.events_table_name} WHERE originator_id = ? AND originator_version = ?",
                    (originator_id.hex, version),
                )
                positions.append(int(c.fetchone()[0]))
            return positions


def season_in(seasons: Mapping[UUID, int] | None, aggregate_id: object) -> int:
    """An aggregate's season as the ledger gave it with a batch (store.seasons); of no season if not given."""
    return seasons.get(aggregate_id, NO_SEASON) if seasons and isinstance(aggregate_id, UUID) else NO_SEASON


def final_vault(vault: VaultChanges) -> tuple[list[Sealed], list[UUID]]:
    """What a batch leaves in the vault: each journey's last change, as identities kept and journeys erased."""
    last = dict(vault)
    return [s for s in last.values() if s is not None], [j for j, s in last.items() if s is None]


def vault_row(sealed: Sealed) -> tuple[Any, ...]:
    """A vault row; the name index as its entries joined (each is 8 bytes), as one value of an unnest."""
    s = sealed
    return (s.journey_id, s.key_id, s.wrapped_key, s.ciphertext, s.passport_index, s.scope, b"".join(s.name_index))


def _sqlite_row(sealed: Sealed) -> tuple[Any, ...]:
    return (sealed.journey_id.hex, *vault_row(sealed)[1:])


def sealed_from_row(row: Any) -> Sealed:
    journey_id = row[0] if isinstance(row[0], UUID) else UUID(row[0])
    names = row[6]
    if isinstance(names, bytes):
        names = [names[i : i + 8] for i in range(0, len(names), 8)]
    return Sealed(journey_id, row[1], bytes(row[2]), bytes(row[3]), bytes(row[4]), row[5], tuple(map(bytes, names)))


def database_url() -> str:
    return settings().database_url


def _use_wal(path: str) -> None:
    """Switch a new SQLite file to WAL once, waiting out other processes (every 0.1 s, for up to 30 s): the library
    switches it on each new connection otherwise, and that switch fails at once ("database is locked") when ledgers
    start together."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

    def switch() -> None:
        with closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")

    def locked(error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    Retrying(retry=retry_if_exception(locked), wait=wait_fixed(0.1), stop=stop_after_attempt(300), reraise=True)(switch)


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a `sqlite:///PATH` or a PostgreSQL URL (libpq's, with the ledger's
    parameters: hajj_ledger.store.connections)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
        if not path:
            raise url_refusal(DATABASE_URL_VARIABLE, url, f"no file in {url!r}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _use_wal(path)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": get_topic(SQLiteLedgerRecorder),
        }
    if parts.scheme in ("postgresql", "postgres"):
        found = Postgres.from_url(url)
        # By name: psycopg and the library's PostgreSQL module are imported only for a PostgreSQL store.
        recorder = "TransactionPooledLedgerRecorder" if found.transaction_pooled else "PostgresLedgerRecorder"
        return {
            # The library's factory, whose pool connects with the whole of libpq's URL (hosts, target_session_attrs,
            # TLS, ...) and follows a promotion: hajj_ledger.store.postgres.
            "PERSISTENCE_MODULE": "hajj_ledger.store.postgres:LedgerPostgresFactory",
            "POSTGRES_CONNINFO": found.conninfo,
            "POSTGRES_DBNAME": found.dbname,
            "POSTGRES_HOST": found.host,
            "POSTGRES_PORT": str(found.port),
            "POSTGRES_USER": found.user,
            "POSTGRES_PASSWORD": found.password,
            "POSTGRES_SCHEMA": found.schema,
            "POSTGRES_POOL_SIZE": str(write_pool_size()),
            "POSTGRES_MAX_OVERFLOW": str(write_pool_overflow()),
            "POSTGRES_LOCK_TIMEOUT": "30",
            # How long to wait for a pooled connection: the library tries ten times, so a database that is away
            # is reported in about ten seconds (the library's 30 s made that five minutes).
            "POSTGRES_CONNECT_TIMEOUT": str(found.connect_timeout),
            # The library SETs this on each new connection. Through a transaction pooler that SET stays on whichever
            # server connection ran it, for every client after: there it sets the server's default (none), and the
            # pooler's own idle_transaction_timeout does the job.
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "0" if found.transaction_pooled else "5",
            "APPLICATION_RECORDER_TOPIC": f"hajj_ledger.store.postgres:{recorder}",
        }
    raise unsupported_store(url)


def direct_database_url() -> str:
    """Where what needs a session of its own goes (LISTEN, session advisory locks, DDL): the database URL, unless
    that goes through a transaction pooler; then `HAJJ_LEDGER_DIRECT_DATABASE_URL`."""
    return direct_url(database_url())
