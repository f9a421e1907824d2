"""`journey_status`: one row per journey, where it stands now; what a mission, a company or the ministry lists."""

from __future__ import annotations

import typing
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.domain.catalogue import JOURNEY_STEPS
from hajj_ledger.domain.journey import Journey
from hajj_ledger.domain.vocabulary import Stage
from hajj_ledger.projections.bulk_sql import literals, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

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


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over each journey's events at once: its last row, from one window over the journey in order.

    Each column is the value of the last event of those that set it (`last`), except the stage around a bus: an
    assignment cancelled puts back the stage before it. The ledger lets a cancellation follow only the assignment
    it cancels (catalogue: from bus_assigned), so the stage then is that of the last event that changed it other than
    an assignment, and the stage before a bus that of the last such event before the assignment."""
    places = [n for n in JOURNEY_STEPS if n != "FlightBooked" and _fields(n) & set(PLACE_FIELDS)]
    place = f"coalesce({', '.join(reversed(PLACE_FIELDS))})"  # the later field wins, as in `apply`
    bus = literals(("BusAssigned", "BusAssignmentCancelled", "TransferCompleted"))

    def each(value: str, events: str) -> str:  # the values of the events that set a column, in order
        return f"array_agg({value}) FILTER (WHERE {events}) OVER journey"

    def last(values: str) -> str:
        return f"{values}[cardinality({values})]"

    on_bus = f"{last('bus')} = 'BusAssigned'"
    return {
        journey_status: f"""
SELECT aggregate_id, pilgrim_id, season, country, mission_id, {last("companies")},
  CASE WHEN {last("changes")} = 'BusAssignmentCancelled' THEN {last("settled")} ELSE {last("stages")} END,
  CASE WHEN {on_bus} THEN (SELECT u.stage FROM unnest(settled, settled_at) AS u(stage, at)
    WHERE u.at < {last("bus_at")} ORDER BY u.at DESC LIMIT 1) END,
  CASE WHEN {last("places")} = 'TransferCompleted' THEN (SELECT u.destination FROM unnest(destinations, bus_at)
    AS u(destination, at) WHERE u.at < {last("places_at")} AND u.destination IS NOT NULL ORDER BY u.at DESC LIMIT 1)
    ELSE {last("places")} END,
  CASE WHEN {on_bus} THEN {last("trips")} END, CASE WHEN {on_bus} THEN {last("destinations")} END,
  coalesce({last("hospital")}, false), coalesce({last("missing")}, false), deceased, {last("visas")},
  event, occurred_at, recorded_at, position
FROM (
  SELECT e.aggregate_id, e.position, e.event, e.occurred_at, e.recorded_at,
    lead(e.position) OVER journey AS next_position,
    first_value(e.event) OVER journey AS first_event, first_value(e.pilgrim_id) OVER journey AS pilgrim_id,
    first_value(e.season) OVER journey AS season, first_value(e.country) OVER journey AS country,
    first_value(e.agency_id) OVER journey AS mission_id,
    {each("e.company_id", "e.event = 'PackageContracted'")} AS companies,
    {each("e.event", "to_stage.stage IS NOT NULL OR e.event = 'BusAssignmentCancelled'")} AS changes,
    {each("to_stage.stage", "to_stage.stage IS NOT NULL")} AS stages,
    {each("to_stage.stage", "to_stage.stage IS NOT NULL AND e.event <> 'BusAssigned'")} AS settled,
    {each("e.position", "to_stage.stage IS NOT NULL AND e.event <> 'BusAssigned'")} AS settled_at,
    {each("e.event", f"e.event IN ({bus})")} AS bus,
    {each("e.position", f"e.event IN ({bus})")} AS bus_at,
    {each("e.trip_id", f"e.event IN ({bus})")} AS trips,
    {each("e.destination", f"e.event IN ({bus})")} AS destinations,
    {
            each(
                f"CASE e.event WHEN 'TransferCompleted' THEN e.event WHEN 'Departed' THEN NULL ELSE {place} END",
                f"e.event IN ({literals(places)}, 'TransferCompleted', 'Departed')",
            )
        } AS places,
    {each("e.position", f"e.event IN ({literals(places)}, 'TransferCompleted', 'Departed')")} AS places_at,
    {each("e.event = 'HospitalAdmitted'", "e.event IN ('HospitalAdmitted', 'HospitalDischarged', 'DeathRecorded')")}
      AS hospital,
    {each("e.event = 'ReportedMissing'", "e.event IN ('ReportedMissing', 'Found')")} AS missing,
    coalesce(bool_or(e.event = 'DeathRecorded') OVER journey, false) AS deceased,
    {each("e.valid_until", "e.event IN ('VisaIssued', 'VisaRejected', 'VisaRevoked', 'VisaRequested')")} AS visas
  FROM "{staged}" AS e
  LEFT JOIN ({values_of((n, str(s.to)) for n, s in JOURNEY_STEPS.items() if s.to)}) AS to_stage(event, stage)
    ON to_stage.event = e.event
  WHERE e.event IN ({literals(JOURNEY_STEPS)})
  WINDOW journey AS (PARTITION BY e.aggregate_id ORDER BY e.position
    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) AS j
WHERE next_position IS NULL AND first_event = 'Registered'
"""
    }


def _fields(event: str) -> set[str]:
    return set(typing.get_type_hints(getattr(Journey, event)))


class JourneyStatus(Projection):
    name = "journey_status"
    version = 1
    models = (journey_status,)
    events = frozenset(JOURNEY_STEPS)
    by_aggregate = (journey_status,)
    in_sql = InSql(
        fields={"pilgrim_id": "uuid", "season": "integer", "country": "text", "company_id": "text",
                "valid_until": "timestamptz", "port": "text", "site": "text", "trip_id": "uuid", "destination": "text"},
        rows=_rows,
    )  # fmt: skip

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


def latest_position(connection: Connection, column: str, agency_id: str, season: int | None) -> int | None:
    """The position of the last event of the journeys whose `column` (mission_id, company_id) is `agency_id`, of
    one season or all: where that agency's own latest events end."""
    view = journey_status.view()
    query = sa.select(sa.func.max(view.c.position)).where(view.c[column] == agency_id)
    if season is not None:
        query = query.where(view.c.season == season)
    found = connection.execute(query).scalar()
    return int(found) if found is not None else None
