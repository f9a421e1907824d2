"""`port_arrivals`: per season, port, flight and day (in Makkah), how many were booked, arrived, cleared and
received (Passports, GACA, the agents office). Land and sea arrivals have no flight: their flight is ''. Each count is
of its journey's season: a flight booked for next season's pilgrims while this season's still arrive counts apart."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import Port, makkah_day
from hajj_ledger.projections.bulk_sql import last_of, literal, makkah_day_sql, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

COUNTS = ("booked", "arrived", "entry_cleared", "customs_cleared", "received")
COUNTED = {"ArrivedAtPort": "arrived", "EntryCleared": "entry_cleared", "CustomsCleared": "customs_cleared",
           "ReceivedAtPort": "received"}  # fmt: skip

port_arrivals = Model(
    "port_arrivals",
    lambda: [
        sa.Column("season", sa.Integer),
        sa.Column("port", sa.String(16), info=one_of(Port)),
        sa.Column("flight", sa.String(8)),
        sa.Column("day", sa.Date),
        *(sa.Column(c, sa.Integer, nullable=False) for c in COUNTS),
    ],
    key=("season", "port", "flight", "day"),
    indexes=(("season", "day", "port"),),
)
# Each journey's season (from its registration) and arrival (once arrived), so that its booking counts in its season
# and its clearances against the right flight and day.
arrivals_by_journey = Model(
    "port_arrivals_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("port", sa.String(16)),
        sa.Column("flight", sa.String(8)),
        sa.Column("day", sa.Date),
    ],
    key=("journey_id",),
)


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: arrival bookings counted on their flight's day, arrivals on theirs, and
    each clearance against the journey's last arrival before it (none: not counted), all in the journey's season."""
    arrival = f"e.port, coalesce(e.flight, ''), {makkah_day_sql('e.occurred_at')}"
    counts = ", ".join(f"count(*) FILTER (WHERE c.counted = {literal(column)})" for column in COUNTS)
    return {
        arrivals_by_journey: f"""
SELECT r.aggregate_id, r.season, e.port, CASE WHEN e.position IS NOT NULL THEN coalesce(e.flight, '') END,
  {makkah_day_sql("e.occurred_at")}
FROM "{staged}" AS r
LEFT JOIN {last_of(staged, ("ArrivedAtPort",))} AS e ON e.aggregate_id = r.aggregate_id
WHERE r.event = 'Registered'
""",
        port_arrivals: f"""
SELECT r.season, c.port, c.flight, c.day, {counts}
FROM (
  SELECT aggregate_id, port, flight, {makkah_day_sql("scheduled_at")} AS day, 'booked' AS counted
  FROM "{staged}" WHERE event = 'FlightBooked' AND direction = 'arrival'
  UNION ALL
  SELECT aggregate_id, {arrival}, {literal(COUNTED["ArrivedAtPort"])} FROM "{staged}" AS e WHERE event = 'ArrivedAtPort'
  UNION ALL (
    SELECT DISTINCT ON (c.position) c.aggregate_id, {arrival}, counting.counted
    FROM "{staged}" AS c
    JOIN ({values_of((e, c) for e, c in COUNTED.items() if e != "ArrivedAtPort")}) AS counting(event, counted)
      ON counting.event = c.event
    JOIN "{staged}" AS e ON e.aggregate_id = c.aggregate_id AND e.position < c.position AND e.event = 'ArrivedAtPort'
    ORDER BY c.position, e.position DESC
  )
) AS c
JOIN "{staged}" AS r ON r.aggregate_id = c.aggregate_id AND r.event = 'Registered'
GROUP BY 1, 2, 3, 4
""",
    }


class PortArrivals(Projection):
    name = "port_arrivals"
    version = 3  # 2: days in Makkah time; 3: a season column
    models = (port_arrivals, arrivals_by_journey)
    events = frozenset({"Registered", "FlightBooked", *COUNTED})
    by_aggregate = (arrivals_by_journey,)
    in_sql = InSql(
        fields={"season": "integer", "port": "text", "flight": "text", "direction": "text",
                "scheduled_at": "timestamptz"},
        rows=_rows,
    )  # fmt: skip

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        name = type(event).__name__
        key = (event.originator_id,)
        if name == "Registered":
            rows.put(arrivals_by_journey, key, {"journey_id": key[0], "season": event.season, "port": None,
                                                "flight": None, "day": None})  # fmt: skip
            return
        journey = rows.get(arrivals_by_journey, key)
        if journey is None:
            return
        season = journey["season"]
        if name == "FlightBooked":
            if event.direction == "arrival":
                self._count(rows, (season, str(event.port), event.flight, makkah_day(event.scheduled_at)), "booked")
            return
        if name == "ArrivedAtPort":
            journey = {**journey, "port": str(event.port), "flight": event.flight or "",
                       "day": makkah_day(event.stamp.occurred_at)}  # fmt: skip
            rows.put(arrivals_by_journey, key, journey)
        elif journey["day"] is None:
            return
        self._count(rows, (season, journey["port"], journey["flight"], journey["day"]), COUNTED[name])

    @staticmethod
    def _count(rows: Rows, key: tuple[Any, ...], column: str) -> None:
        rows.add(port_arrivals, key, **{column: 1})
