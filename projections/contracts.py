"""`contracts`: per contract between a mission and a company, the places contracted on the offer, used by journeys
and still free, and where it stands (proposed, signed, terminated)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.bulk_sql import last_of, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of
from hajj_ledger.projections.service_offers import offered

STATUS = {"ContractProposed": "proposed", "ContractSigned": "signed", "ContractTerminated": "terminated"}

contracts = Model(
    "contracts",
    lambda: [
        sa.Column("contract_id", sa.Uuid),
        sa.Column("offer_id", sa.Uuid, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        *offered(),
        sa.Column("places", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("free", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, info=one_of(STATUS.values())),
    ],
    key=("contract_id",),
    indexes=(("mission_id", "contract_id"), ("company_id", "contract_id")),
    at_least=("free",),
)
USING = {"PlaceTaken": 1, "PlaceFreed": -1}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each contract proposed, its places as last proposed or amended, the
    places its journeys took less those freed, and its last status."""
    return {
        contracts: f"""
SELECT p.aggregate_id, p.offer_id, p.mission_id, p.company_id, p.season, p.kind, p.site, places.places,
  coalesce(used.places, 0), places.places - coalesce(used.places, 0), status.status
FROM "{staged}" AS p
JOIN {last_of(staged, ("ContractProposed", "ContractAmended"))} AS places ON places.aggregate_id = p.aggregate_id
LEFT JOIN (
  SELECT e.aggregate_id, sum(taking.change) AS places
  FROM "{staged}" AS e JOIN ({values_of(USING.items())}) AS taking(event, change) USING (event)
  GROUP BY e.aggregate_id
) AS used ON used.aggregate_id = p.aggregate_id
JOIN (
  SELECT latest.aggregate_id, named.status
  FROM {last_of(staged, STATUS)} AS latest JOIN ({values_of(STATUS.items())}) AS named(event, status) USING (event)
) AS status ON status.aggregate_id = p.aggregate_id
WHERE p.event = 'ContractProposed'
"""
    }


class Contracts(Projection):
    name = "contracts"
    version = 1
    models = (contracts,)
    events = frozenset({"ContractAmended", *STATUS, *USING})
    by_aggregate = (contracts,)
    in_sql = InSql(
        fields={"offer_id": "uuid", "mission_id": "text", "company_id": "text", "season": "integer", "kind": "text",
                "site": "text", "places": "integer"},
        rows=_rows,
    )  # fmt: skip

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "ContractProposed":
            row = {c: getattr(event, c) for c in ("offer_id", "mission_id", "company_id", "season", "places")}
            row.update(contract_id=key[0], kind=str(event.kind), site=str(event.site), used=0)
        else:
            found = rows.get(contracts, key)
            if found is None:
                return
            row = dict(found)
            if name == "ContractAmended":
                row["places"] = event.places
            elif name in USING:
                row["used"] += USING[name]
        row["status"] = STATUS.get(name, row.get("status"))
        row["free"] = row["places"] - row["used"]
        rows.put(contracts, key, row)
