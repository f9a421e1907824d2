"""`trip_manifest`: per bus trip, its capacity, how many seats are assigned and boarded, and its status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import TripStage
from hajj_ledger.projections.bulk_sql import last_of, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of


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
ROUTE = ("operator", "bus_plate", "origin", "destination", "departs_at")


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each trip scheduled, its seats reserved less those released, the
    boardings onto it after it was scheduled (the journeys' events), and its last status."""
    return {
        trip_manifest: f"""
SELECT s.aggregate_id, {", ".join(f"s.{c}" for c in ROUTE)}, s.capacity, coalesce(seats.assigned, 0),
  coalesce(boarded.boarded, 0), coalesce(status.status, 'scheduled')
FROM "{staged}" AS s
LEFT JOIN (
  SELECT aggregate_id, count(*) FILTER (WHERE event = 'SeatReserved') - count(*) FILTER (WHERE event = 'SeatReleased')
    AS assigned
  FROM "{staged}" WHERE event IN ('SeatReserved', 'SeatReleased') GROUP BY aggregate_id
) AS seats ON seats.aggregate_id = s.aggregate_id
LEFT JOIN (
  SELECT t.aggregate_id, count(*) AS boarded
  FROM "{staged}" AS b JOIN "{staged}" AS t ON t.aggregate_id = b.trip_id AND t.position < b.position
  WHERE b.event = 'Boarded' AND t.event = 'TripScheduled' GROUP BY t.aggregate_id
) AS boarded ON boarded.aggregate_id = s.aggregate_id
LEFT JOIN (
  SELECT latest.aggregate_id, named.status
  FROM {last_of(staged, STATUS)} AS latest JOIN ({values_of(STATUS.items())}) AS named(event, status) USING (event)
) AS status ON status.aggregate_id = s.aggregate_id
WHERE s.event = 'TripScheduled'
"""
    }


class TripManifest(Projection):
    name = "trip_manifest"
    version = 1
    models = (trip_manifest,)
    events = frozenset({"TripScheduled", "SeatReserved", "SeatReleased", "Boarded", *STATUS})
    in_sql = InSql(
        fields={"trip_id": "uuid", "operator": "text", "bus_plate": "text", "origin": "text", "destination": "text",
                "departs_at": "timestamptz", "capacity": "integer"},
        rows=_rows,
    )  # fmt: skip

    def keys(self, event: Any) -> list[tuple[Model, tuple[Any, ...]]]:
        trip_id = event.trip_id if type(event).__name__ == "Boarded" else event.originator_id
        return [(trip_manifest, (trip_id,))]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        name = type(event).__name__
        if name == "TripScheduled":
            row = {c: getattr(event, c) for c in ROUTE}
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
