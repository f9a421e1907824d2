"""`missing_persons`: pilgrims reported missing and not yet found, since when, and where they were last known."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.bulk_sql import last_of, literals
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows

missing_persons = Model(
    "missing_persons",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_known_place", sa.String(32)),
        sa.Column("reported_by", sa.String(64), nullable=False),
    ],
    key=("journey_id",),
    indexes=(("season", "since"),),
)
# Who each pilgrim belongs to and where they were last recorded, for when they go missing.
last_known = Model(
    "missing_persons_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("place", sa.String(32)),
    ],
    key=("journey_id",),
)
PLACED = {"ArrivedAtPort", "EntryCleared", "CustomsCleared", "ReceivedAtPort", "HousingCheckedIn", "HousingCheckedOut",
          "MovedToSite", "ExitCleared"}  # fmt: skip
ENDS = {"Departed", "DeathRecorded", "Cancelled"}
PLACING = {"Found", "BusAssigned", *PLACED}  # the events that say where the pilgrim was last known


def _place(event: str) -> str:
    """Where a placing event (of the staged alias `event`) puts the pilgrim, as `apply` says it."""
    return (f"CASE WHEN {event}.event = 'BusAssigned' THEN 'bus to ' || {event}.destination "
            f"ELSE coalesce(nullif({event}.site, ''), {event}.port) END")  # fmt: skip


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: journeys registered and not ended, with their last contract's company and
    their last known place; missing, those whose last report of missing was not followed by a finding, with the
    company and place as they stood before that report."""
    # The journeys registered and not ended, with their registration's season and mission. Grouped rather than
    # NOT EXISTS: the planner estimates such an anti-join at one row, and on 10 M events nested its joins in a loop.
    ongoing = f"""(
  SELECT aggregate_id, min(season) FILTER (WHERE event = 'Registered') AS season,
    min(agency_id) FILTER (WHERE event = 'Registered') AS agency_id
  FROM "{staged}" WHERE event IN ('Registered', {literals(ENDS)})
  GROUP BY aggregate_id
  HAVING bool_or(event = 'Registered') AND NOT bool_or(event IN ({literals(ENDS)}))
)"""
    missing = last_of(staged, ("ReportedMissing",))

    def before_missing(events: set[str], value: str) -> str:  # of the last of these events before the report
        return f"""(
  SELECT DISTINCT ON (m.aggregate_id) m.aggregate_id, {value} AS value
  FROM {missing} AS m JOIN "{staged}" AS e ON e.aggregate_id = m.aggregate_id AND e.position < m.position
  WHERE e.event IN ({literals(events)})
  ORDER BY m.aggregate_id, e.position DESC
)"""

    return {
        last_known: f"""
SELECT r.aggregate_id, r.season, r.agency_id, contract.company_id, {_place("placed")}
FROM {ongoing} AS r
LEFT JOIN {last_of(staged, ("PackageContracted",))} AS contract ON contract.aggregate_id = r.aggregate_id
LEFT JOIN {last_of(staged, PLACING)} AS placed ON placed.aggregate_id = r.aggregate_id
""",
        missing_persons: f"""
SELECT m.aggregate_id, r.season, r.agency_id, contract.value, m.occurred_at, placed.value, m.agency_id
FROM {missing} AS m
JOIN {ongoing} AS r ON r.aggregate_id = m.aggregate_id
LEFT JOIN {before_missing({"PackageContracted"}, "e.company_id")} AS contract ON contract.aggregate_id = m.aggregate_id
LEFT JOIN {before_missing(PLACING, _place("e"))} AS placed ON placed.aggregate_id = m.aggregate_id
LEFT JOIN {last_of(staged, ("Found",))} AS found ON found.aggregate_id = m.aggregate_id
WHERE found.position IS NULL OR found.position < m.position
""",
    }


class MissingPersons(Projection):
    name = "missing_persons"
    version = 2  # 2: a season column
    models = (missing_persons, last_known)
    events = frozenset({"Registered", "PackageContracted", "BusAssigned", "ReportedMissing", "Found", *PLACED, *ENDS})
    by_aggregate = (last_known, missing_persons)
    in_sql = InSql(
        fields={"season": "integer", "company_id": "text", "site": "text", "port": "text", "destination": "text"},
        rows=_rows,
    )

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(last_known, key, {"journey_id": key[0], "season": event.season,
                                       "mission_id": event.stamp.agency_id, "company_id": None,
                                       "place": None})  # fmt: skip
            return
        known = rows.get(last_known, key)
        if known is None:
            return
        if name in ENDS:
            rows.delete(last_known, key)
            rows.delete(missing_persons, key)
        elif name == "ReportedMissing":
            rows.put(missing_persons, key, {
                "journey_id": key[0], "season": known["season"], "mission_id": known["mission_id"],
                "company_id": known["company_id"],
                "since": event.stamp.occurred_at, "last_known_place": known["place"],
                "reported_by": event.stamp.agency_id,
            })  # fmt: skip
        elif name == "Found":
            rows.delete(missing_persons, key)
            rows.put(last_known, key, {**known, "place": str(event.site)})
        elif name == "PackageContracted":
            rows.put(last_known, key, {**known, "company_id": event.company_id})
        elif name == "BusAssigned":
            rows.put(last_known, key, {**known, "place": f"bus to {event.destination}"})
        else:
            rows.put(last_known, key, {**known, "place": str(getattr(event, "site", None) or event.port)})
