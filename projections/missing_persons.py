"""`missing_persons`: pilgrims reported missing and not yet found, since when, and where they were last known."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.projections.framework import Model, Projection, Rows

missing_persons = Model(
    "missing_persons",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_known_place", sa.String(32)),
        sa.Column("reported_by", sa.String(64), nullable=False),
    ],
    key=("journey_id",),
    indexes=(("season", "since"),),
)
# Who each pilgrim belongs to and where they were last recorded, for when they go missing.
last_known = Model(
    "missing_persons_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("place", sa.String(32)),
    ],
    key=("journey_id",),
)
PLACED = {"ArrivedAtPort", "EntryCleared", "CustomsCleared", "ReceivedAtPort", "HousingCheckedIn", "HousingCheckedOut",
          "MovedToSite", "ExitCleared"}  # fmt: skip
ENDS = {"Departed", "DeathRecorded", "Cancelled"}


class MissingPersons(Projection):
    name = "missing_persons"
    version = 2  # 2: a season column
    models = (missing_persons, last_known)
    events = frozenset({"Registered", "PackageContracted", "BusAssigned", "ReportedMissing", "Found", *PLACED, *ENDS})
    by_aggregate = (last_known, missing_persons)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            rows.put(last_known, key, {"journey_id": key[0], "season": event.season,
                                       "mission_id": event.stamp.agency_id, "company_id": None,
                                       "place": None})  # fmt: skip
            return
        known = rows.get(last_known, key)
        if known is None:
            return
        if name in ENDS:
            rows.delete(last_known, key)
            rows.delete(missing_persons, key)
        elif name == "ReportedMissing":
            rows.put(missing_persons, key, {
                "journey_id": key[0], "season": known["season"], "mission_id": known["mission_id"],
                "company_id": known["company_id"],
                "since": event.stamp.occurred_at, "last_known_place": known["place"],
                "reported_by": event.stamp.agency_id,
            })  # fmt: skip
        elif name == "Found":
            rows.delete(missing_persons, key)
            rows.put(last_known, key, {**known, "place": str(event.site)})
        elif name == "PackageContracted":
            rows.put(last_known, key, {**known, "company_id": event.company_id})
        elif name == "BusAssigned":
            rows.put(last_known, key, {**known, "place": f"bus to {event.destination}"})
        else:
            rows.put(last_known, key, {**known, "place": str(getattr(event, "site", None) or event.port)})
