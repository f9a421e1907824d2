"""The PostgreSQL recorder: eventsourcing's, extended by the receipts and the vault, with a batch appended in one
round trip. In a module of its own so that a SQLite store never imports psycopg (the command line starts faster)."""

from __future__ import annotations

import logging
import select
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import ConnectionPool, PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Cursor
from psycopg.pq import ConnStatus
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.sql import SQL, Identifier, Literal
from psycopg_pool.base import AttemptWithBackoff

from hajj_ledger.identity.vault import Sealed
from hajj_ledger.store.connections import OutcomeUnknownError
from hajj_ledger.store.recorders import (
    Receipt,
    VaultChanges,
    Written,
    final_vault,
    sealed_from_row,
    season_in,
    vault_row,
)
from hajj_ledger.store.seasons import NO_SEASON, season_partition, season_shut, seasons_written

log = logging.getLogger("hajj_ledger.store")


class _Quickly(AttemptWithBackoff):
    """The pool's attempts to connect again after a failure: from 0.1 s, growing by half, never more than 0.5 s
    apart (psycopg_pool's own start at 1 s and double: a promotion that took 2 s was followed 3 s later)."""

    INITIAL_DELAY = 0.1
    DELAY_BACKOFF = 1.5
    LONGEST = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.LONGEST)


class FailoverPool(ConnectionPool[Any]):
    """The event store's pool: libpq's whole connection string (several hosts, `target_session_attrs`, TLS), and
    connections made again quickly while the database is away (during a promotion, say)."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _Quickly(timeout=self.reconnect_timeout), growing)


class LedgerPostgresFactory(PostgresFactory):
    """The library's factory, its pool replaced (before it opens) by one that connects with the URL's own
    connection string (`POSTGRES_CONNINFO`) rather than the host, port, database and user alone."""

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        conninfo = self.env.get("POSTGRES_CONNINFO")
        if not conninfo:
            return
        given = self.datastore.pool
        self.datastore.pool = FailoverPool(
            conninfo, connection_class=given.connection_class, kwargs={"row_factory": dict_row},
            min_size=given.min_size, max_size=given.max_size, open=False, configure=given._configure,
            check=given._check, timeout=given.timeout, max_waiting=given.max_waiting,
            max_lifetime=given.max_lifetime, name="ledger-writes",
        )  # fmt: skip


# The append function's arguments: the events, their receipts, and the seasons written into (store.seasons).
APPEND_ARGUMENTS = "uuid[], int8[], text[], bytea[], int4[], uuid[], text[], text[], int4[], uuid[]"
SEASON_SHUT_STATE = "HL409"  # the SQLSTATE the append function refuses a season past its opening with


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.receipts_table = Identifier(datastore.schema, "command_receipts")
        self.events_table = Identifier(datastore.schema, events_table_name)
        # The log and the receipts are partitioned by season (store.seasons): a closed season leaves the hot store
        # as a partition detached and dropped, not as millions of rows deleted. A partition per season is made by
        # the append function when a batch first names the season; season 0 (no season) is never closed. The keys
        # take the season in (a partitioned table's must): an aggregate's season never changes, so they stay as
        # unique as the library's.
        statements = self.sql_create_statements
        unique = next(i for i, s in enumerate(statements) if self.notification_id_index_name in repr(s))
        statements[unique] = SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {events} (notification_id, season)"
        ).format(index=Identifier(self.notification_id_index_name), events=self.events_table)
        statements[self.create_table_statement_index : self.create_table_statement_index + 1] = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {events} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
                "topic text, state bytea, notification_id bigserial, season integer NOT NULL DEFAULT 0, "
                "PRIMARY KEY (originator_id, originator_version, season)) PARTITION BY LIST (season)"
            ).format(events=self.events_table),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (command_id uuid NOT NULL, fingerprint text NOT NULL, "
                "outcome text NOT NULL, season integer NOT NULL DEFAULT 0, PRIMARY KEY (command_id, season)) "
                "PARTITION BY LIST (season)"
            ).format(self.receipts_table),
            *(
                SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES IN (0)").format(
                    Identifier(datastore.schema, season_partition(table, NO_SEASON)),
                    Identifier(datastore.schema, table),
                )
                for table in (events_table_name, "command_receipts")
            ),
        ]
        self.vault_table = Identifier(datastore.schema, "identity_vault")
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (journey_id uuid PRIMARY KEY, key_id text NOT NULL, "
                "wrapped_key bytea NOT NULL, ciphertext bytea NOT NULL, passport_index bytea NOT NULL, "
                "scope text NOT NULL, name_index bytea[] NOT NULL)"
            ).format(self.vault_table),
            SQL("CREATE INDEX IF NOT EXISTS identity_vault_passport ON {} (passport_index)").format(self.vault_table),
            SQL("CREATE INDEX IF NOT EXISTS identity_vault_names ON {} USING gin (name_index)").format(
                self.vault_table
            ),
        ]
        # unnest flattens arrays of arrays: each row's name index arrives joined and is cut back into entries.
        self.upsert_vault = SQL(
            "INSERT INTO {} SELECT j, k, w, c, p, s, ARRAY(SELECT substring(n FROM i FOR 8) "
            "FROM generate_series(1, length(n), 8) AS i) "
            "FROM unnest(%b::uuid[], %b::text[], %b::bytea[], %b::bytea[], %b::bytea[], %b::text[], %b::bytea[]) "
            "AS v(j, k, w, c, p, s, n) "
            "ON CONFLICT (journey_id) DO UPDATE SET key_id = EXCLUDED.key_id, wrapped_key = EXCLUDED.wrapped_key, "
            "ciphertext = EXCLUDED.ciphertext, passport_index = EXCLUDED.passport_index, scope = EXCLUDED.scope, "
            "name_index = EXCLUDED.name_index"
        ).format(self.vault_table)
        self.events_of = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(self.events_table)
        self.written_after = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(self.events_table)
        # A batch is appended by one function call: the receipts, then the table lock (so that positions commit in
        # order), the notification and the events, with no round trip to the client while the lock is held.
        # Whole columns go as binary arrays: the library's array of composite values is dumped as text, value by
        # value, which profiling showed costing more than the insert itself.
        self.append_function = Identifier(datastore.schema, f"{events_table_name}_append")
        self.create_append_function = SQL(
            "CREATE OR REPLACE FUNCTION {function}(ids uuid[], versions int8[], topics text[], states bytea[], "
            "seasons int4[], receipt_ids uuid[], fingerprints text[], outcomes text[], receipt_seasons int4[], "
            "season_ids uuid[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$ DECLARE s int4; shut record; BEGIN "
            # A season's first batch makes its partitions (one look at the catalogue per season a batch names).
            "FOR s IN SELECT DISTINCT x FROM unnest(seasons || receipt_seasons) AS x LOOP "
            "IF to_regclass(format('%I.%I', {schema}, {events_name} || '_s' || s)) IS NULL THEN "
            "PERFORM pg_advisory_xact_lock(hashtext('hajj_ledger.partitions')); "
            "EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF {events} FOR VALUES IN (%s)', "
            "{schema}, {events_name} || '_s' || s, s); "
            "EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF {receipts} FOR VALUES IN (%s)', "
            "{schema}, 'command_receipts_s' || s, s); "
            "END IF; END LOOP; "
            "INSERT INTO {receipts} SELECT * FROM unnest(receipt_ids, fingerprints, outcomes, receipt_seasons); "
            "SET LOCAL lock_timeout = '{timeout}s'; "
            "LOCK TABLE {events} IN EXCLUSIVE MODE; "
            # A season put into closing (or later) by another writer takes no more events: its own aggregate (of no
            # season) has recorded more than its opening. Read under the lock, so nothing of it commits after.
            "SELECT originator_id INTO shut FROM {events} WHERE season = 0 AND originator_id = ANY(season_ids) "
            "AND originator_version > 1 LIMIT 1; "
            "IF FOUND THEN RAISE EXCEPTION 'a season past its opening takes no more events' USING "
            "ERRCODE = '{shut_state}', DETAIL = shut.originator_id::text; END IF; "
            "NOTIFY {channel}; "
            "RETURN QUERY INSERT INTO {events} (originator_id, originator_version, topic, state, season) "
            "SELECT * FROM unnest(ids, versions, topics, states, seasons) RETURNING notification_id; "
            "END $body$"
        ).format(
            function=self.append_function,
            receipts=self.receipts_table,
            events=self.events_table,
            schema=Literal(datastore.schema),
            events_name=Literal(events_table_name),
            timeout=datastore.lock_timeout,
            shut_state=SQL(SEASON_SHUT_STATE),
            channel=Identifier(self.channel_name),
        )
        self.sql_create_statements.append(self.create_append_function)
        self.append = SQL(
            "SELECT * FROM {}(%b::uuid[], %b::int8[], %b::text[], %b::bytea[], %b::int4[], %b::uuid[], %b::text[], "
            "%b::text[], %b::int4[], %b::uuid[]) AS appended(notification_id)"
        ).format(self.append_function)

    def create_table(self) -> None:
        """The library's, one process at a time: ledgers starting together on an empty database otherwise collide
        in PostgreSQL's catalog ("tuple concurrently updated"). Nothing at all once the tables exist: even `CREATE
        INDEX IF NOT EXISTS` locks its table first, and a ledger starting beside busy writers deadlocked with them
        (it held the events table, a writer held the receipts and waited for the events table). A store made
        before the append function existed gets the function alone."""
        with self.datastore.get_connection() as connection:
            tables = [self.events_table, self.receipts_table, self.vault_table]
            function = self.append_function.as_string(connection)
            found = connection.execute(
                SQL(
                    "SELECT bool_and(to_regclass(t) IS NOT NULL) AS tables, "
                    "to_regprocedure(%s) IS NOT NULL AS function FROM unnest(%s::text[]) AS t"
                ),
                (f"{function}({APPEND_ARGUMENTS})", [t.as_string(connection) for t in tables]),
            ).fetchone()
            assert found is not None
            if found["tables"] and found["function"]:
                return
            connection.execute("SELECT pg_advisory_lock(hashtext('hajj_ledger.create_table'))")
            try:
                if found["tables"]:  # the function as it was before it checked the seasons written into goes
                    connection.execute(f"DROP FUNCTION IF EXISTS {function}({APPEND_ARGUMENTS.rpartition(',')[0]})")
                    connection.execute(self.create_append_function)
                else:
                    super().create_table()
            finally:
                connection.execute("SELECT pg_advisory_unlock(hashtext('hajj_ledger.create_table'))")

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        receipts: Sequence[Receipt] = (),
        vault: VaultChanges = (),
        seasons: Mapping[UUID, int] | None = None,
        **_: Any,
    ) -> Sequence[int] | None:
        """The events and their commands' receipts, appended in one statement (one round trip, its own transaction),
        or, with changes to the vault, in one transaction with them.

        Not the library's pipelined transaction: there a statement that failed while later ones were still being
        sent (a duplicate receipt in a large batch, when another server had recorded the same command) came back
        as "pipeline aborted", an OperationalError that the library retried ten times on the same conflict, instead
        of the violation itself; and psycopg kept as prepared a statement whose preparation the server had skipped,
        so the connection's next insert failed with "prepared statement _pg3_N does not exist". Here the first
        failure is raised as what it is, and nothing is half-written.

        Not retried here (the library's retried ten times): a connection lost once the statement was sent leaves
        its outcome unknown, raised as OutcomeUnknownError; the ledger runs the batch again, within its patience,
        and the receipts' keys settle it (a repeat, if the first had committed).
        """
        if not stored_events and not receipts and not vault:
            return []
        event_seasons = [season_in(seasons, e.originator_id) for e in stored_events]
        receipt_seasons = [season_in(seasons, r.aggregate_id) for r in receipts]
        written = seasons_written(event_seasons + receipt_seasons)
        arguments = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            event_seasons,
            [r.command_id for r in receipts],
            [r.fingerprint for r in receipts],
            [r.outcome_json() for r in receipts],
            receipt_seasons,
            list(written),
        )
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            if _peer_gone(connection):  # found broken before anything was sent: nothing was recorded
                raise psycopg.OperationalError("the connection was closed by the server before the batch was sent")
            try:
                if vault:  # BEGIN, the vault's rows, the append and COMMIT sent together: one round trip.
                    # Nothing is prepared in it: a statement after one that failed is skipped, its preparation too.
                    with connection.pipeline(), connection.transaction():
                        self._write_vault(curs, vault)
                        curs.execute(self.append, arguments, prepare=False)
                else:
                    curs.execute(self.append, arguments, prepare=True)
                return [row["notification_id"] for row in curs]
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                state = error.sqlstate or ""
                if state == SEASON_SHUT_STATE:  # a refusal, not the store away: nothing was written
                    raise season_shut(written, error.diag.message_detail or "") from error
                if state and not state.startswith(("08", "57P")):  # the server refused it (a lock timeout, ...)
                    raise
                raise OutcomeUnknownError(
                    f"the connection was lost before the store confirmed {len(receipts)} command(s) ({error})"
                ) from error

    # The library retries these ten times, 0.2 s apart, each waiting for a pooled connection: twelve seconds before
    # a database that is away is reported. Here a lost connection is made afresh and the read tried once more;
    # a database that is away is reported within the pool's wait (`connect_timeout`).

    def max_notification_id(self) -> int | None:
        found: int | None = self._once_more(_unwrapped(PostgresApplicationRecorder.max_notification_id), self)
        return found

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return self._once_more(_unwrapped(PostgresApplicationRecorder.select_events), self, *args, **kwargs)

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return self._once_more(_unwrapped(PostgresApplicationRecorder.select_notifications), self, *args, **kwargs)

    def _once_more(self, read: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)
        except (InterfaceError, OperationalError) as error:
            if type(error.__cause__).__name__ == "PoolTimeout":  # away, or busy: nothing to make afresh
                raise
            self.recover()
            return read(*args, **kwargs)

    def recover(self) -> None:
        """After a write found its connection lost or its server read-only (a failover, a restart): every pooled
        connection is dropped and made again (those in use are dropped when returned), to whichever host takes
        writes now."""
        log.warning("the store's connections are dropped and made again")
        self.datastore.pool.drain()

    def _write_vault(self, curs: Cursor[DictRow], vault: VaultChanges) -> None:
        kept, destroyed = final_vault(vault)
        if destroyed:
            delete = SQL("DELETE FROM {} WHERE journey_id = ANY(%s)").format(self.vault_table)
            curs.execute(delete, (destroyed,), prepare=False)
        if kept:
            rows = [list(column) for column in zip(*map(vault_row, kept), strict=True)]
            curs.execute(self.upsert_vault, rows, prepare=False)

    def select_receipts(self, command_ids: Sequence[UUID]) -> dict[UUID, Receipt]:
        if not command_ids:
            return {}
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL("SELECT command_id::text, fingerprint, outcome::text FROM {} WHERE command_id = ANY(%s)").format(
                    self.receipts_table
                ),
                (list(command_ids),),
            )
            rows = curs.fetchall()
        return {UUID(r["command_id"]): Receipt.from_row(r["command_id"], r["fingerprint"], r["outcome"]) for r in rows}

    def select_sealed(self, journey_id: UUID) -> Sealed | None:
        with self.datastore.cursor() as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE journey_id = %s").format(self.vault_table), (journey_id,))
            row = curs.fetchone()
        return sealed_from_row(list(row.values())) if row else None

    def select_by_passport(self, index: bytes) -> list[UUID]:
        with self.datastore.cursor() as curs:
            curs.execute(SQL("SELECT journey_id FROM {} WHERE passport_index = %s").format(self.vault_table), (index,))
            return [r["journey_id"] for r in curs.fetchall()]

    def select_by_names(self, entries: Sequence[bytes], limit: int) -> list[UUID]:
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL("SELECT journey_id FROM {} WHERE name_index @> %s::bytea[] ORDER BY journey_id LIMIT %s").format(
                    self.vault_table
                ),
                (list(entries), limit),
            )
            return [r["journey_id"] for r in curs.fetchall()]

    def select_vault_journeys(self) -> list[UUID]:
        with self.datastore.cursor() as curs:
            curs.execute(SQL("SELECT journey_id FROM {}").format(self.vault_table))
            return [r["journey_id"] for r in curs.fetchall()]

    def select_all_sealed(self) -> list[Sealed]:
        with self.datastore.cursor() as curs:
            curs.execute(SQL("SELECT * FROM {}").format(self.vault_table))
            return [sealed_from_row(list(r.values())) for r in curs.fetchall()]

    def replace_sealed(self, sealed: Sequence[Sealed]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for s in sealed:
                curs.execute(
                    SQL(
                        "UPDATE {} SET key_id = %s, wrapped_key = %s, passport_index = %s, name_index = %s::bytea[] "
                        "WHERE journey_id = %s"
                    ).format(self.vault_table),
                    (s.key_id, s.wrapped_key, s.passport_index, list(s.name_index), s.journey_id),
                )

    def select_aggregate_notifications(self, aggregate_id: UUID) -> list[Notification]:
        """Every event of one journey or trip with its position in the log, oldest first."""
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, originator_version, topic, state FROM {} "
                    "WHERE originator_id = %s ORDER BY originator_version"
                ).format(self.events_table),
                (aggregate_id,),
            )
            return [
                Notification(
                    id=r["notification_id"],
                    originator_id=aggregate_id,
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in curs.fetchall()
            ]

    def select_events_of(self, aggregate_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of many aggregates in one query, each aggregate's in order."""
        with self.datastore.cursor() as curs:
            curs.execute(self.events_of, (list(aggregate_ids),), prepare=True)
            return [
                StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                for r in curs.fetchall()
            ]

    def select_written_after(self, position: int, limit: int) -> list[Written]:
        """The events after `position`, with their positions, oldest first."""
        # Rows as tuples, in binary: the relay reads whole pages of the log here. A dict a row cost it a tenth of its
        # time, and the text format (the state's bytes sent as hex) nearly half of the query's.
        with self.datastore.get_connection() as connection, connection.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.written_after, (position, limit), prepare=True, binary=True)
            return curs.fetchall()

    def select_positions(self, events: Iterable[tuple[UUID, int, str]]) -> list[int]:
        """The positions of these events (by aggregate and version), in the order asked."""
        keys = list(events)
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT e.notification_id FROM unnest(%s::uuid[], %s::int8[]) WITH ORDINALITY AS k(id, version, n) "
                    "JOIN {} AS e ON e.originator_id = k.id AND e.originator_version = k.version ORDER BY k.n"
                ).format(self.events_table),
                ([i for i, _, _ in keys], [v for _, v, _ in keys]),
            )
            positions = [int(r["notification_id"]) for r in curs.fetchall()]
        assert len(positions) == len(keys), "a receipt names an event the store does not hold"
        return positions


def _peer_gone(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server has closed this pooled connection (it went away, or restarted, while the connection sat in
    the pool): a look at the socket, without a round trip. Then a batch is known not to have been sent; otherwise a
    connection lost once the batch was written leaves its outcome unknown."""
    if connection.closed:
        return True
    try:
        readable = select.select([connection.fileno()], [], [], 0)[0]
        if readable:  # the end of the stream, or a message the server sent unasked (a notice, a parameter's change)
            connection.pgconn.consume_input()
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return connection.pgconn.status != ConnStatus.OK


def _unwrapped(method: Any) -> Any:
    """A library method without its retry decorator."""
    return getattr(method, "__wrapped__", method)


class TransactionPooledLedgerRecorder(PostgresLedgerRecorder):
    """The recorder on a URL through a transaction pooler (`pool_mode=transaction`): its connections prepare no
    statement (the library asks for them; psycopg would also prepare any statement run five times), since a
    prepared statement lives on one server connection and the next transaction may run on another."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        assert isinstance(datastore.pool.kwargs, dict)  # the library's; and its pool is not open yet
        datastore.pool.kwargs = {**datastore.pool.kwargs, "prepare_threshold": None}
        super().__init__(datastore, **kwargs)

    def create_table(self) -> None:
        """Nothing is created through the pooler: creating the tables takes a session lock and runs in several
        transactions. `hajj-ledger migrate` creates them over HAJJ_LEDGER_DIRECT_DATABASE_URL."""
        self.datastore.register_type_adapters()
