"""`trips_on_road`: bus trips that have left, on the road or arrived, with their route, the last checkpoint passed
and when; a trip on the road past its expected arrival is overdue, found when read (no event says so)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import InSql, Key, Model, Projection, Rows, one_of
from hajj_ledger.projections.trip_manifest import route

trips_on_road = Model(
    "trips_on_road",
    lambda: [
        *route(),
        sa.Column("departed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_arrival", sa.DateTime(timezone=True)),
        sa.Column("last_checkpoint", sa.String(64)),
        sa.Column("checkpoint_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False, info=one_of(("on_road", "arrived"))),
    ],
    key=("trip_id",),
    indexes=(("status", "expected_arrival"),),
    at_read=lambda view: {
        "overdue": sa.and_(
            view.c.status == sa.literal_column("'on_road'"),  # in the SQL itself: the hot read binds only its own
            view.c.expected_arrival.is_not(None),
            view.c.expected_arrival < sa.bindparam("now", type_=view.c.expected_arrival.type),
        )
    },
)
# Trips scheduled and not yet left: their route and times, for when they leave.
scheduled = Model(
    "trips_on_road_scheduled",
    lambda: [
        *route(),
        sa.Column("expected_arrival", sa.DateTime(timezone=True)),
    ],
    key=("trip_id",),
)
ROUTE = ("operator", "bus_plate", "origin", "destination", "expected_arrival")


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: a trip waits until it is cancelled or leaves; it is on the road from its
    first departure, unless cancelled before it, and arrived once it arrives after that. Its last checkpoint is the
    latest by the reporter's clock of those passed after it left (of two at one moment, the later recorded)."""
    route = ", ".join(f"s.{c}" for c in ROUTE)
    on_road = ", ".join(f"s.{c}" for c in ROUTE if c != "expected_arrival")  # which it shows after when it left
    departed = f"""(
  SELECT DISTINCT ON (aggregate_id) aggregate_id, position, occurred_at FROM "{staged}"
  WHERE event = 'TripDeparted' ORDER BY aggregate_id, position
)"""
    return {
        scheduled: f"""
SELECT s.aggregate_id, {route}
FROM "{staged}" AS s
WHERE s.event = 'TripScheduled' AND NOT EXISTS (
  SELECT FROM "{staged}" AS e WHERE e.aggregate_id = s.aggregate_id AND e.event IN ('TripCancelled', 'TripDeparted')
)
""",
        trips_on_road: f"""
SELECT s.aggregate_id, {on_road}, d.occurred_at, s.expected_arrival, checkpoint.checkpoint, checkpoint.occurred_at,
  CASE WHEN arrived.position IS NULL THEN 'on_road' ELSE 'arrived' END
FROM "{staged}" AS s
JOIN {departed} AS d ON d.aggregate_id = s.aggregate_id
LEFT JOIN (
  SELECT DISTINCT ON (c.aggregate_id) c.aggregate_id, c.checkpoint, c.occurred_at
  FROM "{staged}" AS c JOIN {departed} AS d ON d.aggregate_id = c.aggregate_id AND d.position < c.position
  WHERE c.event = 'CheckpointPassed'
  ORDER BY c.aggregate_id, c.occurred_at DESC, c.position DESC
) AS checkpoint ON checkpoint.aggregate_id = s.aggregate_id
LEFT JOIN (
  SELECT aggregate_id, max(position) AS position FROM "{staged}" WHERE event = 'TripArrived' GROUP BY aggregate_id
) AS arrived ON arrived.aggregate_id = s.aggregate_id AND arrived.position > d.position
WHERE s.event = 'TripScheduled' AND NOT EXISTS (
  SELECT FROM "{staged}" AS e WHERE e.aggregate_id = s.aggregate_id AND e.event = 'TripCancelled'
    AND e.position < d.position
)
""",
    }


class TripsOnRoad(Projection):
    name = "trips_on_road"
    version = 1
    models = (trips_on_road, scheduled)
    events = frozenset({"TripScheduled", "TripCancelled", "TripDeparted", "CheckpointPassed", "TripArrived"})
    in_sql = InSql(
        fields={"operator": "text", "bus_plate": "text", "origin": "text", "destination": "text",
                "expected_arrival": "timestamptz", "checkpoint": "text"},
        rows=_rows,
    )  # fmt: skip

    def keys(self, event: Any) -> list[tuple[Model, Key]]:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "TripScheduled" or name == "TripCancelled":
            return [(scheduled, key)]
        if name == "TripDeparted":
            return [(scheduled, key), (trips_on_road, key)]
        return [(trips_on_road, key)]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "TripScheduled":
            rows.put(scheduled, key, {"trip_id": key[0], **{c: getattr(event, c) for c in ROUTE}})
            return
        if name == "TripCancelled":
            rows.delete(scheduled, key)
            return
        if name == "TripDeparted":
            route = rows.get(scheduled, key)
            if route is None:
                return
            rows.delete(scheduled, key)
            rows.put(trips_on_road, key, {**route, "departed_at": event.stamp.occurred_at, "last_checkpoint": None,
                                          "checkpoint_at": None, "status": "on_road"})  # fmt: skip
            return
        found = rows.get(trips_on_road, key)
        if found is None:
            return
        if name == "TripArrived":
            rows.put(trips_on_road, key, {**found, "status": "arrived"})
        elif _after(event.stamp.occurred_at, found["checkpoint_at"]):
            # A checkpoint reported late, after a later one, does not take the later one's place.
            rows.put(trips_on_road, key, {**found, "last_checkpoint": event.checkpoint,
                                          "checkpoint_at": event.stamp.occurred_at})  # fmt: skip


def _after(moment: datetime, last: datetime | None) -> bool:
    if last is None:
        return True
    return moment >= (last if last.tzinfo is not None else last.replace(tzinfo=UTC))  # SQLite's: UTC, zone dropped
