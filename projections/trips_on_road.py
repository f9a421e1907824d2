"""`trips_on_road`: bus trips that have left, on the road or arrived, with their route, the last checkpoint passed
and when; a trip on the road past its expected arrival is overdue, found when read (no event says so)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import Key, Model, Projection, Rows, one_of
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


class TripsOnRoad(Projection):
    name = "trips_on_road"
    version = 1
    models = (trips_on_road, scheduled)
    events = frozenset({"TripScheduled", "TripCancelled", "TripDeparted", "CheckpointPassed", "TripArrived"})

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
