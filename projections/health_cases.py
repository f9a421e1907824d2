"""`health_cases`: admissions, discharges and deaths per season, facility and nationality (the Ministry of
Health); counted over a whole season, so seasons are kept apart."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import Model, Projection, Rows

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


class HealthCases(Projection):
    name = "health_cases"
    version = 2  # 2: a season column
    models = (health_cases, nationality)
    events = frozenset({"Registered", *COUNTED})
    by_aggregate = (nationality,)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(nationality, key, {"journey_id": key[0], "season": event.season, "country": event.country})
            return
        pilgrim = rows.get(nationality, key)
        season, country = (pilgrim["season"], pilgrim["country"]) if pilgrim else (0, "???")
        rows.add(health_cases, (season, event.facility or "unknown", country), **{COUNTED[name]: 1})
