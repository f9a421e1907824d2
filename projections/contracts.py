"""`contracts`: per contract between a mission and a company, the places contracted on the offer, used by journeys
and still free, and where it stands (proposed, signed, terminated)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import Model, Projection, Rows, one_of
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


class Contracts(Projection):
    name = "contracts"
    version = 1
    models = (contracts,)
    events = frozenset({"ContractAmended", *STATUS, *USING})
    by_aggregate = (contracts,)

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
