"""`port_arrivals`: per port, flight and day (in Makkah), how many were booked, arrived, cleared and received
(Passports, GACA, the agents office). Land and sea arrivals have no flight: their flight is ''. A day belongs to one
season's arrival window (the weeks before Hajj, a year from the next), so seasons do not mix here."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import Port, makkah_day
from hajj_ledger.projections.framework import Model, Projection, Rows, one_of

COUNTS = ("booked", "arrived", "entry_cleared", "customs_cleared", "received")
COUNTED = {"ArrivedAtPort": "arrived", "EntryCleared": "entry_cleared", "CustomsCleared": "customs_cleared",
           "ReceivedAtPort": "received"}  # fmt: skip

port_arrivals = Model(
    "port_arrivals",
    lambda: [
        sa.Column("port", sa.String(16), info=one_of(Port)),
        sa.Column("flight", sa.String(8)),
        sa.Column("day", sa.Date),
        *(sa.Column(c, sa.Integer, nullable=False) for c in COUNTS),
    ],
    key=("port", "flight", "day"),
    indexes=(("day", "port"),),
)
# Which arrival a journey belongs to, so that its clearances count against the right flight and day.
arrivals_by_journey = Model(
    "port_arrivals_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("port", sa.String(16), nullable=False),
        sa.Column("flight", sa.String(8), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
    ],
    key=("journey_id",),
)


class PortArrivals(Projection):
    name = "port_arrivals"
    version = 2  # 2: days in Makkah time
    models = (port_arrivals, arrivals_by_journey)
    events = frozenset({"FlightBooked", *COUNTED})

    def keys(self, event: Any) -> list[tuple[Model, tuple[Any, ...]]]:
        journey = (arrivals_by_journey, (event.originator_id,))
        return [] if type(event).__name__ == "FlightBooked" else [journey]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        name = type(event).__name__
        if name == "FlightBooked":
            if event.direction == "arrival":
                self._count(rows, (str(event.port), event.flight, makkah_day(event.scheduled_at)), "booked")
            return
        if name == "ArrivedAtPort":
            key = (str(event.port), event.flight or "", makkah_day(event.stamp.occurred_at))
            rows.put(arrivals_by_journey, (event.originator_id,),
                     {"journey_id": event.originator_id, "port": key[0], "flight": key[1], "day": key[2]})  # fmt: skip
        else:
            arrival = rows.get(arrivals_by_journey, (event.originator_id,))
            if arrival is None:
                return
            key = (arrival["port"], arrival["flight"], arrival["day"])
        self._count(rows, key, COUNTED[name])

    @staticmethod
    def _count(rows: Rows, key: tuple[Any, ...], column: str) -> None:
        rows.add(port_arrivals, key, **{column: 1})
