"""`trail_index`: not a view but the audit trail's index over the log, read by the audit service
(`hajj_ledger.audit.reads`), which names these tables.

One row per event: its position, the recording agency, the event's name and its recorded time (microseconds since
the epoch, the same integer on either store), with an index for each filter the trail offers (agency, event, both).
Recorded time follows position only roughly (writers stamp events before they take the insert lock), so it is
summed up per block of positions: the earliest and latest recorded time in each. A time range then bounds the
positions to read, whatever the order of the stamps.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.audit import reads as audit
from hajj_ledger.audit.reads import BLOCKS_TABLE, INDEX_TABLE, microseconds
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.projections.bulk_sql import literals
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows

trail_index = Model(
    INDEX_TABLE,
    lambda: [
        sa.Column("position", sa.BigInteger, autoincrement=False),
        sa.Column("agency_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    ],
    key=("position",),
    indexes=(("agency_id", "position"), ("event", "position"), ("agency_id", "event", "position")),
)
trail_blocks = Model(
    BLOCKS_TABLE,
    lambda: [
        sa.Column("block", sa.BigInteger, autoincrement=False),  # positions from BLOCK * block, BLOCK of them
        sa.Column("earliest_us", sa.BigInteger, nullable=False),
        sa.Column("latest_us", sa.BigInteger, nullable=False),
    ],
    key=("block",),
)


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: a row per event, and each block's earliest and latest recorded time."""
    recorded = "(extract(epoch FROM e.recorded_at) * 1000000)::bigint"  # `microseconds`: exact, numeric
    events = f'"{staged}" AS e WHERE e.event IN ({literals(STEPS)})'
    return {
        trail_index: f"SELECT e.position, e.agency_id, e.event, {recorded} FROM {events}",
        trail_blocks: f"SELECT e.position / {audit.BLOCK}, min({recorded}), max({recorded}) FROM {events} GROUP BY 1",
    }


class TrailIndex(Projection):
    name = "trail_index"
    version = 1
    models = (trail_index, trail_blocks)
    events = frozenset(STEPS)
    in_sql = InSql(fields={}, rows=_rows)

    def keys_at(self, event: Any, position: int) -> list[tuple[Model, tuple[Any, ...]]]:
        return [(trail_blocks, (position // audit.BLOCK,))]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        recorded = microseconds(event.recorded_at)
        row = {"position": position, "agency_id": event.stamp.agency_id, "event": type(event).__name__,
               "recorded_us": recorded}  # fmt: skip
        rows.put(trail_index, (position,), row)
        key = (position // audit.BLOCK,)
        block = rows.get(trail_blocks, key)
        if block is None:
            block = {"block": key[0], "earliest_us": recorded, "latest_us": recorded}
        else:
            block["earliest_us"] = min(block["earliest_us"], recorded)
            block["latest_us"] = max(block["latest_us"], recorded)
        rows.put(trail_blocks, key, block)


def latest_positions(connection: Connection, events: Collection[str], count: int) -> list[int]:
    """The positions of the last `count` events of these types, newest first."""
    view = trail_index.view()
    query = sa.select(view.c.position).where(view.c.event.in_(sorted(events)))
    return list(connection.execute(query.order_by(view.c.position.desc()).limit(count)).scalars())
