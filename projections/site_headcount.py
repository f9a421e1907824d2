"""`site_headcount`: per season, company and site (and building, where housed), how many of its pilgrims are there
now."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.bulk_sql import last_of, literals
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows

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
MOVES = {"PackageContracted", *LEAVES, *ARRIVES}  # each one clears where the pilgrim was; an arrival counts anew


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once. Moves before a journey's first contract are not counted. After it, each
    arrival counts +1 at its place and -1 again at the journey's next move, unless that is a contract (which clears
    the place without counting it off): so an arrival stays counted when it is the journey's last move or the last
    before a contract. Its place's row is there either way."""
    arrives = literals(ARRIVES)
    return {
        whereabouts: f"""
SELECT r.aggregate_id, r.season, contract.company_id,
  CASE WHEN move.event IN ({arrives}) THEN move.site END,
  CASE WHEN move.event IN ({arrives}) THEN coalesce(move.building, '') END
FROM "{staged}" AS r
LEFT JOIN {last_of(staged, ("PackageContracted",))} AS contract ON contract.aggregate_id = r.aggregate_id
LEFT JOIN {last_of(staged, MOVES)} AS move ON move.aggregate_id = r.aggregate_id AND contract.position IS NOT NULL
WHERE r.event = 'Registered'
""",
        site_headcount: f"""
SELECT r.season, contract.company_id, move.site, coalesce(move.building, ''),
  count(*) FILTER (WHERE move.next IS NULL OR move.next = 'PackageContracted')
FROM (
  SELECT aggregate_id, event, site, building, lead(event) OVER journey AS next,
    count(*) FILTER (WHERE event = 'PackageContracted') OVER journey AS contracts
  FROM "{staged}" WHERE event IN ({literals(MOVES)})
  WINDOW journey AS (PARTITION BY aggregate_id ORDER BY position)
) AS move
JOIN (
  SELECT aggregate_id, company_id, row_number() OVER (PARTITION BY aggregate_id ORDER BY position) AS contracts
  FROM "{staged}" WHERE event = 'PackageContracted'
) AS contract ON contract.aggregate_id = move.aggregate_id AND contract.contracts = move.contracts
JOIN "{staged}" AS r ON r.aggregate_id = move.aggregate_id AND r.event = 'Registered'
WHERE move.event IN ({arrives})
GROUP BY 1, 2, 3, 4
""",
    }


class SiteHeadcount(Projection):
    name = "site_headcount"
    version = 2  # 2: a season column
    models = (site_headcount, whereabouts)
    events = frozenset({"Registered", *MOVES})
    by_aggregate = (whereabouts,)
    in_sql = InSql(fields={"season": "integer", "company_id": "text", "site": "text", "building": "text"}, rows=_rows)

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
