"""`building_occupancy`: per licensed building, its beds, how many are taken now and free, its licence and its
latest inspection; what the municipality, Civil Defence and the operating company watch."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import City
from hajj_ledger.projections.framework import Model, Projection, Rows, one_of

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


class BuildingOccupancy(Projection):
    name = "building_occupancy"
    version = 1
    models = (building_occupancy,)
    events = frozenset({"BuildingLicensed", "LicenceSuspended", "LicenceRenewed", *INSPECTION, *BEDS})
    by_aggregate = (building_occupancy,)

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
