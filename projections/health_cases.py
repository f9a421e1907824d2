"""`health_cases`: admissions, discharges and deaths per season, facility and nationality (the Ministry of
Health); counted over a whole season, so seasons are kept apart."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.bulk_sql import literal, literals
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows

COUNTS = ("admitted", "discharged", "deaths")
health_cases = Model(
    "health_cases",
    lambda: [
        sa.Column("season", sa.Integer),
        sa.Column("facility", sa.String(64)),
        sa.Column("country", sa.String(3)),
        *(sa.Column(c, sa.Integer, nullable=False) for c in COUNTS),
    ],
    key=("season", "facility", "country"),
    indexes=(("country",),),
)
nationality = Model(
    "health_cases_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
    ],
    key=("journey_id",),
)
COUNTED = {"HospitalAdmitted": "admitted", "HospitalDischarged": "discharged", "DeathRecorded": "deaths"}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each journey's nationality, and each case counted against it."""
    counting = {column: event for event, column in COUNTED.items()}
    counts = ", ".join(f"count(*) FILTER (WHERE e.event = {literal(counting[column])})" for column in COUNTS)
    return {
        nationality: f"""SELECT aggregate_id, season, country FROM "{staged}" WHERE event = 'Registered'""",
        health_cases: f"""
SELECT coalesce(j.season, 0), coalesce(nullif(e.facility, ''), 'unknown'), coalesce(j.country, '???'), {counts}
FROM "{staged}" AS e
LEFT JOIN "{staged}" AS j ON j.aggregate_id = e.aggregate_id AND j.event = 'Registered'
WHERE e.event IN ({literals(COUNTED)})
GROUP BY 1, 2, 3
""",
    }


class HealthCases(Projection):
    name = "health_cases"
    version = 2  # 2: a season column
    models = (health_cases, nationality)
    events = frozenset({"Registered", *COUNTED})
    by_aggregate = (nationality,)
    in_sql = InSql(fields={"season": "integer", "country": "text", "facility": "text"}, rows=_rows)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(nationality, key, {"journey_id": key[0], "season": event.season, "country": event.country})
            return
        pilgrim = rows.get(nationality, key)
        season, country = (pilgrim["season"], pilgrim["country"]) if pilgrim else (0, "???")
        rows.add(health_cases, (season, event.facility or "unknown", country), **{COUNTED[name]: 1})
