"""`awaiting_transport`: pilgrims received at a port and not yet on a bus, and since when (the car syndicate)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import Port
from hajj_ledger.projections.bulk_sql import last_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

awaiting_transport = Model(
    "awaiting_transport",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("port", sa.String(16), nullable=False, info=one_of(Port)),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trip_id", sa.Uuid),
    ],
    key=("journey_id",),
    indexes=(("season", "port", "since"),),
)
# Each journey's season, from its registration, for when it waits.
seasons = Model(
    "awaiting_transport_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
    ],
    key=("journey_id",),
)
GONE = {"Boarded", "DeathRecorded"}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: a registered journey waits from its last reception at a port, unless it
    boarded or died since, on the trip of its last bus assignment since (none if that was cancelled)."""
    return {
        seasons: f"""SELECT aggregate_id, season FROM "{staged}" WHERE event = 'Registered'""",
        awaiting_transport: f"""
SELECT r.aggregate_id, j.season, r.port, r.occurred_at,
  CASE WHEN bus.event = 'BusAssigned' AND bus.position > r.position THEN bus.trip_id END
FROM {last_of(staged, ("ReceivedAtPort",))} AS r
JOIN "{staged}" AS j ON j.aggregate_id = r.aggregate_id AND j.event = 'Registered'
LEFT JOIN {last_of(staged, ("BusAssigned", "BusAssignmentCancelled"))} AS bus ON bus.aggregate_id = r.aggregate_id
LEFT JOIN {last_of(staged, GONE)} AS gone ON gone.aggregate_id = r.aggregate_id
WHERE gone.position IS NULL OR gone.position < r.position
""",
    }


class AwaitingTransport(Projection):
    name = "awaiting_transport"
    version = 2  # 2: a season column
    models = (awaiting_transport, seasons)
    events = frozenset({"Registered", "ReceivedAtPort", "BusAssigned", "BusAssignmentCancelled", *GONE})
    by_aggregate = (awaiting_transport, seasons)
    in_sql = InSql(fields={"season": "integer", "port": "text", "trip_id": "uuid"}, rows=_rows)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(seasons, key, {"journey_id": key[0], "season": event.season})
            return
        if name == "ReceivedAtPort":
            journey = rows.get(seasons, key)
            if journey is not None:
                rows.put(awaiting_transport, key, {"journey_id": key[0], "season": journey["season"],
                                                   "port": str(event.port), "since": event.stamp.occurred_at,
                                                   "trip_id": None})  # fmt: skip
            return
        waiting = rows.get(awaiting_transport, key)
        if waiting is None:
            return
        if name in GONE:
            rows.delete(awaiting_transport, key)
        else:
            rows.put(awaiting_transport, key, {**waiting, "trip_id": event.trip_id if name == "BusAssigned" else None})
