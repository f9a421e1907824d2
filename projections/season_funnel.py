"""`season_funnel`: how many journeys of each season reached each stage, per day (in Makkah), nationality, region
and port of entry (the ministry's season report). A journey counts once per stage, on the day it first got there
(housed counts a pilgrim once, however many times they check in). Sum a season's days up to D for its funnel as of
D: next season's registrations begin while this one is under way, so the season keeps them apart."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.domain.catalogue import JOURNEY_STEPS
from hajj_ledger.domain.vocabulary import REGION_OF, Port, Stage, makkah_day
from hajj_ledger.projections.bulk_sql import makkah_day_sql, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

season_funnel = Model(
    "season_funnel",
    lambda: [
        sa.Column("season", sa.Integer),
        sa.Column("day", sa.Date),
        sa.Column("stage", sa.String(32), info=one_of(Stage)),
        sa.Column("country", sa.String(3)),
        sa.Column("region", sa.String(32)),
        sa.Column("port", sa.String(16), info=one_of(("", *Port))),  # "": not yet arrived
        sa.Column("reached", sa.Integer, nullable=False),
    ],
    key=("season", "day", "stage", "country", "region", "port"),
    indexes=(("season", "stage", "day"),),
)
origin = Model(
    "season_funnel_journeys",
    lambda: [
        sa.Column("journey_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("port", sa.String(16), nullable=False),
        sa.Column("reached", sa.String(400), nullable=False),  # the stages it has reached, space-separated
    ],
    key=("journey_id",),
)
STAGE_CHANGES = frozenset(name for name, step in JOURNEY_STEPS.items() if step.to is not None)


def _firsts(staged: str) -> dict[str, str]:
    """Each stage a journey reached, at the event that first reached it; and each journey's registration, port and
    stages so reached: worked out once for both tables."""
    stages = values_of((name, str(JOURNEY_STEPS[name].to)) for name in sorted(STAGE_CHANGES))
    return {
        "firsts": f"""
  SELECT DISTINCT ON (e.aggregate_id, s.stage) e.aggregate_id, e.position, e.event, s.stage, e.occurred_at, e.port,
    e.season, e.country
  FROM "{staged}" AS e JOIN ({stages}) AS s(event, stage) ON s.event = e.event
  ORDER BY e.aggregate_id, s.stage, e.position""",
        "journeys": """
  SELECT aggregate_id, (array_agg(season) FILTER (WHERE event = 'Registered'))[1] AS season,
    (array_agg(country) FILTER (WHERE event = 'Registered'))[1] AS country,
    min(position) FILTER (WHERE event = 'ArrivedAtPort') AS arrived_at,
    (array_agg(port ORDER BY position) FILTER (WHERE event = 'ArrivedAtPort'))[1] AS port,
    string_agg(stage, ' ' ORDER BY position) AS reached
  FROM firsts GROUP BY aggregate_id HAVING bool_or(event = 'Registered')""",
    }


def _rows(staged: str) -> dict[Model, str]:
    """`apply` over the whole log at once: each stage a journey reached counted on the day of the event that first
    reached it, with the journey's port then (its arrival's, from the arrival on)."""
    return {
        origin: "SELECT aggregate_id, season, country, coalesce(port, ''), reached FROM journeys",
        season_funnel: f"""
SELECT j.season, {makkah_day_sql("f.occurred_at")}, f.stage, j.country, coalesce(r.region, 'other'),
  CASE WHEN f.position >= j.arrived_at THEN j.port ELSE '' END, count(*)
FROM firsts AS f JOIN journeys AS j USING (aggregate_id)
  LEFT JOIN ({values_of(REGION_OF.items())}) AS r(country, region) ON r.country = j.country
GROUP BY 1, 2, 3, 4, 5, 6""",
    }


class SeasonFunnel(Projection):
    name = "season_funnel"
    version = 2  # 2: a season column; days in Makkah time
    models = (season_funnel, origin)
    events = STAGE_CHANGES
    by_aggregate = (origin,)
    in_sql = InSql(fields={"season": "integer", "country": "text", "port": "text"}, rows=_rows, shared=_firsts)

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "Registered":
            journey = {
                "journey_id": key[0],
                "season": event.season,
                "country": event.country,
                "port": "",
                "reached": "",
            }
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
        country, region = journey["country"], REGION_OF.get(journey["country"], "other")
        day = makkah_day(event.stamp.occurred_at)
        rows.add(season_funnel, (journey["season"], day, stage, country, region, journey["port"]), reached=1)


def funnel(
    connection: Connection,
    *,
    season: int | None = None,
    until: date | None = None,
    country: str | None = None,
    region: str | None = None,
    port: str | None = None,
) -> dict[str, int]:
    """Journeys of a season that had reached each stage by the day `until` in Makkah (inclusive), filtered."""
    view = season_funnel.view()
    query = sa.select(view.c.stage, sa.func.sum(view.c.reached)).group_by(view.c.stage)
    for column, value in (("season", season), ("country", country), ("region", region), ("port", port)):
        if value is not None:
            query = query.where(view.c[column] == value)
    if until is not None:
        query = query.where(view.c.day <= until)
    return {stage: int(total) for stage, total in connection.execute(query)}


def last_days(connection: Connection) -> dict[int, date]:
    """Each season in the view, with the last day (in Makkah) on which its journeys reached a stage."""
    view = season_funnel.view()
    query = sa.select(view.c.season, sa.func.max(view.c.day)).group_by(view.c.season).order_by(view.c.season)
    return {season: day for season, day in connection.execute(query)}
