"""`overstay_watch`: pilgrims in the Kingdom (entry cleared, no exit cleared, alive) with their visa's end, so that
Passports find those whose visa has run out. Nobody records an overstay: it is found."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.bulk_sql import last_of, literals
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows

overstay_watch = Model(
    "overstay_watch",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("visa_valid_until", sa.DateTime(timezone=True)),
        sa.Column("entered_at", sa.DateTime(timezone=True)),
        sa.Column("in_kingdom", sa.Boolean, nullable=False),
    ],
    key=("journey_id",),
    indexes=(("season", "in_kingdom", "visa_valid_until"),),
)
GONE = {"ExitCleared", "Departed", "DeathRecorded", "Cancelled"}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each journey registered and not gone, with its last visa's end (none
    once revoked) and its last entry. The journeys registered and not gone are grouped rather than found by NOT
    EXISTS: the planner estimates such an anti-join at one row and may nest the joins after it in a loop (it did, in
    missing_persons, on 10 M events)."""
    registered = ("season", "agency_id", "country")
    return {
        overstay_watch: f"""
SELECT r.aggregate_id, r.season, r.agency_id, r.country, visa.valid_until, entry.occurred_at,
  entry.position IS NOT NULL
FROM (
  SELECT aggregate_id, {", ".join(f"min({c}) FILTER (WHERE event = 'Registered') AS {c}" for c in registered)}
  FROM "{staged}" WHERE event IN ('Registered', {literals(GONE)})
  GROUP BY aggregate_id
  HAVING bool_or(event = 'Registered') AND NOT bool_or(event IN ({literals(GONE)}))
) AS r
LEFT JOIN {last_of(staged, ("VisaIssued", "VisaRevoked"))} AS visa ON visa.aggregate_id = r.aggregate_id
LEFT JOIN {last_of(staged, ("EntryCleared",))} AS entry ON entry.aggregate_id = r.aggregate_id
"""
    }


class OverstayWatch(Projection):
    name = "overstay_watch"
    version = 2  # 2: a season column
    models = (overstay_watch,)
    events = frozenset({"Registered", "VisaIssued", "VisaRevoked", "EntryCleared", *GONE})
    by_aggregate = (overstay_watch,)
    in_sql = InSql(fields={"season": "integer", "country": "text", "valid_until": "timestamptz"}, rows=_rows)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(overstay_watch, key, {"journey_id": key[0], "season": event.season,
                                           "mission_id": event.stamp.agency_id,
                                           "country": event.country, "visa_valid_until": None, "entered_at": None,
                                           "in_kingdom": False})  # fmt: skip
            return
        found = rows.get(overstay_watch, key)
        if found is None:
            return
        if name in GONE:
            rows.delete(overstay_watch, key)
        elif name == "EntryCleared":
            rows.put(overstay_watch, key, {**found, "in_kingdom": True, "entered_at": event.stamp.occurred_at})
        else:
            rows.put(overstay_watch, key, {**found, "visa_valid_until": getattr(event, "valid_until", None)})
