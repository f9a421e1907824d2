"""`service_offers`: the market, one row per offer a company published: its kind, site, places contracted and
free, price and validity; what missions shop in and each company keeps an eye on."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.vocabulary import OfferKind, OfferSite, OfferStage
from hajj_ledger.projections.bulk_sql import values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of


def offered() -> list[sa.Column[Any]]:
    """What an offer is, as the views of the market show it: whose, for which season, of what kind, where."""
    return [
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, info=one_of(OfferKind)),
        sa.Column("site", sa.String(16), nullable=False, info=one_of(OfferSite)),
    ]


service_offers = Model(
    "service_offers",
    lambda: [
        sa.Column("offer_id", sa.Uuid),
        *offered(),
        sa.Column("places", sa.Integer, nullable=False),
        sa.Column("contracted", sa.Integer, nullable=False),
        sa.Column("free", sa.Integer, nullable=False),
        sa.Column("price_sar", sa.Integer, nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, info=one_of(OfferStage)),
    ],
    key=("offer_id",),
    indexes=(("company_id", "offer_id"),),
    at_least=("free",),
)
AMENDABLE = ("places", "price_sar", "valid_until")
RESERVING = {"PlacesReserved": 1, "PlacesReleased": -1}


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each offer published, each amendable field as last given (an amendment
    leaves out what it does not change), the places reserved less those released, withdrawn once withdrawn."""

    def latest(column: str) -> str:
        return f"(array_agg({column} ORDER BY position DESC) FILTER (WHERE {column} IS NOT NULL))[1] AS {column}"

    return {
        service_offers: f"""
SELECT p.aggregate_id, p.company_id, p.season, p.kind, p.site, amended.places, coalesce(reserved.places, 0),
  amended.places - coalesce(reserved.places, 0), amended.price_sar, p.valid_from, amended.valid_until,
  CASE WHEN withdrawn.aggregate_id IS NULL THEN 'published' ELSE 'withdrawn' END
FROM "{staged}" AS p
JOIN (
  SELECT aggregate_id, {", ".join(latest(column) for column in AMENDABLE)}
  FROM "{staged}" WHERE event IN ('OfferPublished', 'OfferAmended') GROUP BY aggregate_id
) AS amended ON amended.aggregate_id = p.aggregate_id
LEFT JOIN (
  SELECT e.aggregate_id, sum(reserving.change * e.places) AS places
  FROM "{staged}" AS e JOIN ({values_of(RESERVING.items())}) AS reserving(event, change) USING (event)
  GROUP BY e.aggregate_id
) AS reserved ON reserved.aggregate_id = p.aggregate_id
LEFT JOIN (
  SELECT DISTINCT aggregate_id FROM "{staged}" WHERE event = 'OfferWithdrawn'
) AS withdrawn ON withdrawn.aggregate_id = p.aggregate_id
WHERE p.event = 'OfferPublished'
"""
    }


class ServiceOffers(Projection):
    name = "service_offers"
    version = 1
    models = (service_offers,)
    events = frozenset({"OfferPublished", "OfferAmended", "OfferWithdrawn", *RESERVING})
    by_aggregate = (service_offers,)
    in_sql = InSql(
        fields={"company_id": "text", "season": "integer", "kind": "text", "site": "text", "places": "integer",
                "price_sar": "integer", "valid_from": "timestamptz", "valid_until": "timestamptz"},
        rows=_rows,
    )  # fmt: skip

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "OfferPublished":
            row = {c: getattr(event, c) for c in ("company_id", "season", "places", "price_sar", "valid_from",
                                                  "valid_until")}  # fmt: skip
            row.update(offer_id=key[0], kind=str(event.kind), site=str(event.site), contracted=0, status="published")
        else:
            found = rows.get(service_offers, key)
            if found is None:
                return
            row = dict(found)
            if name == "OfferAmended":
                row.update({c: getattr(event, c) for c in AMENDABLE if getattr(event, c) is not None})
            elif name == "OfferWithdrawn":
                row["status"] = "withdrawn"
            else:
                row["contracted"] += RESERVING[name] * event.places
        row["free"] = row["places"] - row["contracted"]
        rows.put(service_offers, key, row)
