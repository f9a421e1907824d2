"""The log and the commands' receipts partitioned by season (PostgreSQL), so that a closed season leaves the hot
store as a partition detached and dropped (hajj_ledger.archive): each event and receipt gets its aggregate's season
(store.seasons: from the aggregate's first event), the rows are copied into the partitioned tables at their
positions, and the sequence of positions carries on. The old append function goes; the first ledger to start makes
the new one. A SQLite store gets its season column from the ledger itself when it starts (store.recorders).

Revision ID: 0009
Revises: 0007 (0006 at first: chained after the seasons view once it was on main)
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

from alembic import op

from hajj_ledger.audit.reads import registrations_index
from hajj_ledger.projections.status import POSTGRES_EVENTS
from hajj_ledger.store.seasons import first_seasons, season_partition

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RECEIPTS = "command_receipts"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    events, _ = POSTGRES_EVENTS
    raw: Any = bind.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (events,))
        found = cursor.fetchone()
        if found is None or found[0] == "p":  # no store yet (the ledger makes it partitioned), or done already
            return
        _partition(cursor, events)


def _partition(cursor: Any, events: str) -> None:
    old_events, old_receipts = f"{events}_unpartitioned", f"{RECEIPTS}_unpartitioned"
    cursor.execute(f"ALTER TABLE {events} RENAME TO {old_events}")
    cursor.execute(f"ALTER TABLE {old_events} RENAME CONSTRAINT {events}_pkey TO {old_events}_pkey")
    cursor.execute(f"ALTER INDEX {events}_notification_id_idx RENAME TO {old_events}_notification_id_idx")
    cursor.execute(f"DROP INDEX IF EXISTS {events}_registrations")  # made again below, on the new table
    cursor.execute(f"ALTER TABLE {RECEIPTS} RENAME TO {old_receipts}")
    cursor.execute(f"ALTER TABLE {old_receipts} RENAME CONSTRAINT {RECEIPTS}_pkey TO {old_receipts}_pkey")
    sequence = f"{events}_notification_id_seq"
    cursor.execute(
        f"CREATE TABLE {events} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, "
        f"state bytea, notification_id bigint NOT NULL DEFAULT nextval('{sequence}'), season integer NOT NULL "
        "DEFAULT 0, PRIMARY KEY (originator_id, originator_version, season)) PARTITION BY LIST (season)"
    )
    cursor.execute(f"ALTER SEQUENCE {sequence} OWNED BY {events}.notification_id")
    cursor.execute(
        f"CREATE TABLE {RECEIPTS} (command_id uuid NOT NULL, fingerprint text NOT NULL, outcome text NOT NULL, "
        "season integer NOT NULL DEFAULT 0, PRIMARY KEY (command_id, season)) PARTITION BY LIST (season)"
    )
    # Each aggregate's season, from its first event.
    cursor.execute("CREATE TEMPORARY TABLE aggregate_seasons (originator_id uuid PRIMARY KEY, season integer)")
    after = None  # a page at a time, by id: the pages are read and written on the one connection in turn
    while True:
        cursor.execute(
            f"SELECT originator_id, topic, state FROM {old_events} WHERE originator_version = 1 "
            + ("AND originator_id > %s " if after else "")
            + "ORDER BY originator_id LIMIT 10000",
            (after,) if after else (),
        )
        rows = [(i, t, bytes(s)) for i, t, s in cursor.fetchall()]
        if not rows:
            break
        with cursor.copy("COPY aggregate_seasons FROM STDIN") as copy:
            for row in first_seasons(rows):
                copy.write_row(row)
        after = rows[-1][0]
    cursor.execute("SELECT DISTINCT season FROM aggregate_seasons")
    for season in {0, *(s for (s,) in cursor.fetchall())}:
        for table in (events, RECEIPTS):
            cursor.execute(
                f"CREATE TABLE {season_partition(table, season)} PARTITION OF {table} FOR VALUES IN ({int(season)})"
            )
    cursor.execute(
        f"INSERT INTO {events} SELECT e.originator_id, e.originator_version, e.topic, e.state, e.notification_id, "
        f"coalesce(s.season, 0) FROM {old_events} AS e LEFT JOIN aggregate_seasons AS s USING (originator_id)"
    )
    cursor.execute(
        f"INSERT INTO {RECEIPTS} SELECT r.command_id, r.fingerprint, r.outcome, coalesce(s.season, 0) "
        f"FROM {old_receipts} AS r LEFT JOIN aggregate_seasons AS s "
        "ON s.originator_id = (r.outcome::json ->> 'aggregate_id')::uuid"
    )
    cursor.execute(f"CREATE UNIQUE INDEX {events}_notification_id_idx ON {events} (notification_id, season)")
    cursor.execute(registrations_index(events, "notification_id"))
    cursor.execute(f"DROP TABLE {old_events}, {old_receipts}")
    cursor.execute("DROP TABLE aggregate_seasons")
    cursor.execute(f"DROP FUNCTION IF EXISTS {events}_append(uuid[], int8[], text[], bytea[], uuid[], text[], text[])")


def downgrade() -> None:
    raise NotImplementedError("the log stays partitioned: restore a backup taken before 0009 to go back")
