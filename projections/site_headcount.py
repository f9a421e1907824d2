"""`site_headcount`: per season, company and site (and building, where housed), how many of its pilgrims are there
now."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import Model, Projection, Rows

site_headcount = Model(
    "site_headcount",
    lambda: [
        sa.Column("season", sa.Integer),
        sa.Column("company_id", sa.String(64)),
        sa.Column("site", sa.String(16)),
        sa.Column("building", sa.String(64)),
        sa.Column("present", sa.Integer, nullable=False),
    ],
    key=("season", "company_id", "site", "building"),
)
# Each pilgrim's season, company and where they are counted now ('' building: at a site, not housed; no company: not
# contracted yet, nowhere counted).
whereabouts = Model(
    "site_headcount_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("site", sa.String(16)),
        sa.Column("building", sa.String(64)),
    ],
    key=("journey_id",),
)
LEAVES = {"HousingCheckedOut", "Boarded", "ReportedMissing", "DeathRecorded", "ExitCleared"}
ARRIVES = {"HousingCheckedIn", "MovedToSite", "Found"}


class SiteHeadcount(Projection):
    name = "site_headcount"
    version = 2  # 2: a season column
    models = (site_headcount, whereabouts)
    events = frozenset({"Registered", "PackageContracted", *LEAVES, *ARRIVES})
    by_aggregate = (whereabouts,)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(whereabouts, key, {"journey_id": key[0], "season": event.season, "company_id": None, "site": None,
                                        "building": None})  # fmt: skip
            return
        found = rows.get(whereabouts, key)
        if found is None:
            return
        here = dict(found)
        if name == "PackageContracted":
            rows.put(whereabouts, key, {**here, "company_id": event.company_id, "site": None, "building": None})
            return
        if here["company_id"] is None:
            return
        if here["site"] is not None:
            self._count(rows, here, -1)
            here.update(site=None, building=None)
        if name in ARRIVES:
            here.update(site=str(event.site), building=getattr(event, "building", ""))
            self._count(rows, here, 1)
        rows.put(whereabouts, key, here)

    def _count(self, rows: Rows, here: dict[str, Any], change: int) -> None:
        rows.add(site_headcount, (here["season"], here["company_id"], here["site"], here["building"]), present=change)
