"""`building_occupancy`: per licensed building, its beds, how many are taken now and free, its licence and its
latest inspection; what the municipality, Civil Defence and the operating company watch."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import City
from hajj_ledger.projections.bulk_sql import last_of, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

INSPECTION = {"InspectionPassed": "passed", "InspectionFailed": "failed"}

building_occupancy = Model(
    "building_occupancy",
    lambda: [
        sa.Column("building_id", sa.Uuid),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("city", sa.String(16), nullable=False, info=one_of(City)),
        sa.Column("district", sa.String(64), nullable=False),
        sa.Column("beds", sa.Integer, nullable=False),
        sa.Column("occupied", sa.Integer, nullable=False),
        sa.Column("free", sa.Integer, nullable=False),
        sa.Column("licence_valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("licence", sa.String(16), nullable=False, info=one_of(("valid", "suspended"))),
        sa.Column("inspection", sa.String(16), nullable=False, info=one_of(("none", *INSPECTION.values()))),
    ],
    key=("building_id",),
    indexes=(("company_id", "building_id"),),
    at_least=("free",),
    fillfactor=70,  # rewritten with every bed taken and freed
)
BEDS = {"BedTaken": 1, "BedFreed": -1}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each building licensed, its beds taken less those freed, its licence's
    end as last renewed, suspended if its last licence event suspended it, and its last inspection."""
    return {
        building_occupancy: f"""
SELECT b.aggregate_id, b.company_id, b.city, b.district, b.beds, coalesce(taken.beds, 0),
  b.beds - coalesce(taken.beds, 0), coalesce(renewed.licence_valid_until, b.licence_valid_until),
  CASE WHEN licence.event = 'LicenceSuspended' THEN 'suspended' ELSE 'valid' END,
  coalesce(inspection.result, 'none')
FROM "{staged}" AS b
LEFT JOIN (
  SELECT e.aggregate_id, sum(bed.change) AS beds
  FROM "{staged}" AS e JOIN ({values_of(BEDS.items())}) AS bed(event, change) USING (event)
  GROUP BY e.aggregate_id
) AS taken ON taken.aggregate_id = b.aggregate_id
LEFT JOIN {last_of(staged, ("LicenceRenewed",))} AS renewed ON renewed.aggregate_id = b.aggregate_id
LEFT JOIN {last_of(staged, ("LicenceRenewed", "LicenceSuspended"))} AS licence ON licence.aggregate_id = b.aggregate_id
LEFT JOIN (
  SELECT latest.aggregate_id, named.result
  FROM {last_of(staged, INSPECTION)} AS latest
  JOIN ({values_of(INSPECTION.items())}) AS named(event, result) USING (event)
) AS inspection ON inspection.aggregate_id = b.aggregate_id
WHERE b.event = 'BuildingLicensed'
"""
    }


class BuildingOccupancy(Projection):
    name = "building_occupancy"
    version = 1
    models = (building_occupancy,)
    events = frozenset({"BuildingLicensed", "LicenceSuspended", "LicenceRenewed", *INSPECTION, *BEDS})
    by_aggregate = (building_occupancy,)
    in_sql = InSql(
        fields={"company_id": "text", "city": "text", "district": "text", "beds": "integer",
                "licence_valid_until": "timestamptz"},
        rows=_rows,
    )  # fmt: skip

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "BuildingLicensed":
            row = {c: getattr(event, c) for c in ("company_id", "district", "beds", "licence_valid_until")}
            row.update(building_id=key[0], city=str(event.city), occupied=0, licence="valid", inspection="none")
        else:
            found = rows.get(building_occupancy, key)
            if found is None:
                return
            row = dict(found)
            if name == "LicenceSuspended":
                row["licence"] = "suspended"
            elif name == "LicenceRenewed":
                row.update(licence="valid", licence_valid_until=event.licence_valid_until)
            elif name in INSPECTION:
                row["inspection"] = INSPECTION[name]
            else:
                row["occupied"] += BEDS[name]
        row["free"] = row["beds"] - row["occupied"]
        rows.put(building_occupancy, key, row)
