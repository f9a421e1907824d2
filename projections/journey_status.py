"""`journey_status`: one row per journey, where it stands now; what a mission, a company or the ministry lists."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.catalogue import JOURNEY_STEPS
from hajj_ledger.domain.vocabulary import Stage
from hajj_ledger.projections.framework import Model, Projection, Rows, one_of

PLACE_FIELDS = ("port", "site")  # events naming where the pilgrim now is

journey_status = Model(
    "journey_status",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("pilgrim_id", sa.Uuid, nullable=False),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("mission_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64)),
        sa.Column("stage", sa.String(32), nullable=False, info=one_of(Stage)),
        sa.Column("stage_before_bus", sa.String(32), info=one_of(Stage)),
        sa.Column("place", sa.String(32)),
        sa.Column("trip_id", sa.Uuid),
        sa.Column("trip_destination", sa.String(32)),
        sa.Column("in_hospital", sa.Boolean, nullable=False),
        sa.Column("missing", sa.Boolean, nullable=False),
        sa.Column("deceased", sa.Boolean, nullable=False),
        sa.Column("visa_valid_until", sa.DateTime(timezone=True)),
        sa.Column("last_event", sa.String(32), nullable=False),
        sa.Column("last_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    ],
    key=("journey_id",),
    # Mission and company scope every agency's listing; stage is filtered within a scope, not indexed, so that
    # the row's many updates stay in place (fillfactor).
    indexes=(("mission_id", "journey_id"), ("company_id", "journey_id")),
    fillfactor=70,
)


class JourneyStatus(Projection):
    name = "journey_status"
    version = 1
    models = (journey_status,)
    events = frozenset(JOURNEY_STEPS)
    by_aggregate = (journey_status,)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            row: dict[str, Any] = {
                "journey_id": event.originator_id, "pilgrim_id": event.pilgrim_id, "season": event.season,
                "country": event.country, "mission_id": event.stamp.agency_id, "in_hospital": False,
                "missing": False, "deceased": False,
            }  # fmt: skip
        else:
            found = rows.get(journey_status, key)
            if found is None:
                return
            row = dict(found)
        previous = row.get("stage")
        row["stage"] = JOURNEY_STEPS[name].to or previous
        if name != "FlightBooked":  # a booking says where the pilgrim will be, not where they are
            for field in PLACE_FIELDS:
                if hasattr(event, field):
                    row["place"] = str(getattr(event, field))
        match name:
            case "PackageContracted":
                row["company_id"] = event.company_id
            case "VisaIssued":
                row["visa_valid_until"] = event.valid_until
            case "VisaRejected" | "VisaRevoked" | "VisaRequested":
                row["visa_valid_until"] = None
            case "BusAssigned":
                row.update(stage_before_bus=previous, trip_id=event.trip_id, trip_destination=event.destination)
            case "BusAssignmentCancelled":
                row.update(stage=row["stage_before_bus"], stage_before_bus=None, trip_id=None, trip_destination=None)
            case "TransferCompleted":
                row.update(place=row["trip_destination"], stage_before_bus=None, trip_id=None, trip_destination=None)
            case "HospitalAdmitted" | "HospitalDischarged":
                row["in_hospital"] = name == "HospitalAdmitted"
            case "ReportedMissing" | "Found":
                row["missing"] = name == "ReportedMissing"
            case "DeathRecorded":
                row.update(deceased=True, in_hospital=False)
            case "Departed":
                row["place"] = None
        row.update(
            last_event=name, last_occurred_at=event.stamp.occurred_at, last_recorded_at=event.timestamp,
            position=position,
        )  # fmt: skip
        rows.put(journey_status, key, row)
