"""Every kind of aggregate the ledger keeps, what each is called, and which one each event belongs to."""

from __future__ import annotations

from eventsourcing.domain import Aggregate

from hajj_ledger.domain.building import Building
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.market import Contract, ServiceOffer
from hajj_ledger.domain.season import Season
from hajj_ledger.domain.trip import Trip

AGGREGATES = (Journey, Trip, ServiceOffer, Contract, Building, Season)
KIND: dict[type[Aggregate], str] = {
    Journey: "journey", Trip: "trip", ServiceOffer: "offer", Contract: "contract", Building: "building",
    Season: "season",
}  # fmt: skip
AGGREGATE_OF: dict[str, type[Aggregate]] = {name: kind for kind in AGGREGATES for name in kind.Event.steps}
