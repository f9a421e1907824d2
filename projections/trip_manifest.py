"""`trip_manifest`: per bus trip, its capacity, how many seats are assigned and boarded, and its status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import TripStage
from hajj_ledger.projections.framework import Model, Projection, Rows, one_of


def route() -> list[sa.Column[Any]]:
    """A trip and its route, as every view of trips shows them."""
    return [
        sa.Column("trip_id", sa.Uuid),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("bus_plate", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
    ]


trip_manifest = Model(
    "trip_manifest",
    lambda: [
        *route(),
        sa.Column("departs_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("assigned", sa.Integer, nullable=False),
        sa.Column("boarded", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, info=one_of(TripStage)),
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
