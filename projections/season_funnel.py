"""`season_funnel`: how many journeys reached each stage, per day, nationality, region and port of entry
(the ministry's season report). A journey counts once per stage, on the day it first got there (housed counts
a pilgrim once, however many times they check in). Sum the days up to D for the funnel as of D."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.calibration import REGION_OF
from hajj_ledger.catalogue import JOURNEY_STEPS
from hajj_ledger.projections.framework import Model, Projection, Rows

season_funnel = Model(
    "season_funnel",
    lambda: [
        sa.Column("day", sa.Date),
        sa.Column("stage", sa.String(32)),
        sa.Column("country", sa.String(3)),
        sa.Column("region", sa.String(32)),
        sa.Column("port", sa.String(16)),
        sa.Column("reached", sa.Integer, nullable=False),
    ],
    key=("day", "stage", "country", "region", "port"),
    indexes=(("stage", "day"),),
)
origin = Model(
    "season_funnel_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("port", sa.String(16), nullable=False),
        sa.Column("reached", sa.String(400), nullable=False),  # the stages it has reached, space-separated
    ],
    key=("journey_id",),
)
STAGE_CHANGES = frozenset(name for name, step in JOURNEY_STEPS.items() if step.to is not None)


class SeasonFunnel(Projection):
    name = "season_funnel"
    version = 1
    models = (season_funnel, origin)
    events = STAGE_CHANGES

    def keys(self, event: Any) -> list[tuple[Model, tuple[Any, ...]]]:
        return [(origin, (event.originator_id,))]

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            journey = {"journey_id": key[0], "country": event.country, "port": "", "reached": ""}
        else:
            found = rows.get(origin, key)
            if found is None:
                return
            journey = dict(found)
        if name == "ArrivedAtPort":
            journey["port"] = str(event.port)
        stage = str(JOURNEY_STEPS[name].to)
        if stage in journey["reached"].split():
            return
        journey["reached"] = f"{journey['reached']} {stage}".strip()
        rows.put(origin, key, journey)
        country = journey["country"]
        day = event.stamp.occurred_at.date()
        rows.add(season_funnel, (day, stage, country, REGION_OF.get(country, "other"), journey["port"]), reached=1)


def funnel(
    connection: Connection,
    *,
    until: date | None = None,
    country: str | None = None,
    region: str | None = None,
    port: str | None = None,
) -> dict[str, int]:
    """Journeys that had reached each stage by `until` (inclusive), filtered."""
    view = season_funnel.view()
    query = sa.select(view.c.stage, sa.func.sum(view.c.reached)).group_by(view.c.stage)
    for column, value in (("country", country), ("region", region), ("port", port)):
        if value is not None:
            query = query.where(view.c[column] == value)
    if until is not None:
        query = query.where(view.c.day <= until)
    return {stage: int(total) for stage, total in connection.execute(query)}
