"""`trip_manifest`: per bus trip, its capacity, how many seats are assigned and boarded, and its status."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.projections.framework import Model, Projection, Rows

trip_manifest = Model(
    "trip_manifest",
    lambda: [
        sa.Column("trip_id", sa.Uuid),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("bus_plate", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("departs_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("assigned", sa.Integer, nullable=False),
        sa.Column("boarded", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    ],
    key=("trip_id",),
    indexes=(("origin", "departs_at"),),
)
STATUS = {"TripDeparted": "departed", "TripArrived": "arrived", "TripCancelled": "cancelled"}


class TripManifest(Projection):
    name = "trip_manifest"
    version = 1
    models = (trip_manifest,)
    events = frozenset({"TripScheduled", "SeatReserved", "SeatReleased", "Boarded", *STATUS})

    def keys(self, event: Any) -> list[tuple[Model, tuple[Any, ...]]]:
        trip_id = event.trip_id if type(event).__name__ == "Boarded" else event.originator_id
        return [(trip_manifest, (trip_id,))]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        name = type(event).__name__
        if name == "TripScheduled":
            row = {c: getattr(event, c) for c in ("operator", "bus_plate", "origin", "destination", "departs_at")}
            row.update(trip_id=event.originator_id, capacity=event.capacity, assigned=0, boarded=0, status="scheduled")
            rows.put(trip_manifest, (event.originator_id,), row)
            return
        key = (event.trip_id if name == "Boarded" else event.originator_id,)
        found = rows.get(trip_manifest, key)
        if found is None:
            return
        row = dict(found)
        if name in STATUS:
            row["status"] = STATUS[name]
        else:
            column, change = {"SeatReserved": ("assigned", 1), "SeatReleased": ("assigned", -1),
                              "Boarded": ("boarded", 1)}[name]  # fmt: skip
            row[column] += change
        rows.put(trip_manifest, key, row)


def manifest(connection: Connection, trip_id: UUID) -> dict[str, Any] | None:
    view = trip_manifest.view()
    found = connection.execute(sa.select(view).where(view.c.trip_id == trip_id)).mappings().first()
    return dict(found) if found else None


def trips(connection: Connection, *, origin: str | None = None, status: str | None = None, limit: int = 100
          ) -> list[dict[str, Any]]:  # fmt: skip
    view = trip_manifest.view()
    query = sa.select(view).order_by(view.c.departs_at, view.c.trip_id).limit(limit)
    if origin is not None:
        query = query.where(view.c.origin == origin)
    if status is not None:
        query = query.where(view.c.status == status)
    return [dict(r) for r in connection.execute(query).mappings()]
