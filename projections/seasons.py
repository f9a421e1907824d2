"""`seasons`: one row per season the ministry opened: its calendar (days in Makkah), its stage as recorded and, once
closed, its archive; and the current season, which every read defaults to (`current_season`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hajj_ledger.domain.catalogue import SEASON_STEPS
from hajj_ledger.domain.season import CALENDAR_FIELDS, Season, current_of
from hajj_ledger.domain.vocabulary import SeasonStage, makkah_day
from hajj_ledger.projections.bulk_sql import last_of, values_of
from hajj_ledger.projections.framework import InSql, Model, Projection, Rows, one_of

ARCHIVE = ("archive_url", "manifest_digest", "first_position", "last_position", "event_count")

seasons = Model(
    "seasons",
    lambda: [
        sa.Column("season_id", sa.Uuid),
        sa.Column("season", sa.Integer, nullable=False, unique=True),
        # As recorded: a season is running from its first arrival day, by the clock (`season_rows`).
        sa.Column("stage", sa.String(16), nullable=False, info=one_of(SeasonStage)),
        *(sa.Column(name, sa.Date, nullable=False) for name in CALENDAR_FIELDS),
        sa.Column("hajj_until", sa.Date, nullable=False),
        sa.Column("hajj_days", sa.String(64), nullable=False),  # in the Hijri calendar: 8-13 Dhu al-Hijjah 1446
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archive_url", sa.String(2000)),
        sa.Column("manifest_digest", sa.String(64)),
        sa.Column("first_position", sa.BigInteger),
        sa.Column("last_position", sa.BigInteger),
        sa.Column("event_count", sa.BigInteger),
    ],
    key=("season_id",),
)


CALENDAR = (*CALENDAR_FIELDS, "hajj_until")  # a season's days, as opened


def _rows(staged: str, connection: sa.Connection) -> dict[Model, str]:
    """`apply` over the whole log at once: each season opened, with its days, its stage by its last step and its
    archive as last closed. Its days of the Hajj in the Hijri calendar are worked out here, in Python
    (`Season.hajj_days_of`, by hijridate), once for each first and last day opened: SQL has no Hijri calendar."""
    opened = connection.exec_driver_sql(
        f"""SELECT DISTINCT hajj_from, hajj_until FROM "{staged}" WHERE event = 'SeasonOpened'"""
    ).all()
    if not opened:
        return {}  # no season opened: no rows
    said = values_of((first, last, Season.hajj_days_of(first, last)) for first, last in opened)
    return {
        seasons: f"""
SELECT o.aggregate_id, o.season, stage.stage, {", ".join(f"o.{c}" for c in CALENDAR)}, said.hajj_days,
  o.occurred_at, {", ".join(f"closed.{c}" for c in ARCHIVE)}
FROM "{staged}" AS o
JOIN {last_of(staged, SEASON_STEPS)} AS latest ON latest.aggregate_id = o.aggregate_id
JOIN ({values_of((name, str(step.to)) for name, step in SEASON_STEPS.items())}) AS stage(event, stage)
  ON stage.event = latest.event
JOIN ({said}) AS said(hajj_from, hajj_until, hajj_days)
  ON said.hajj_from = o.hajj_from AND said.hajj_until = o.hajj_until
LEFT JOIN {last_of(staged, ("SeasonClosed",))} AS closed ON closed.aggregate_id = o.aggregate_id
WHERE o.event = 'SeasonOpened'
"""
    }


class Seasons(Projection):
    name = "seasons"
    version = 1
    models = (seasons,)
    events = frozenset(SEASON_STEPS)
    by_aggregate = (seasons,)
    in_sql = InSql(
        fields={"season": "integer", **dict.fromkeys(CALENDAR, "date"), "archive_url": "text",
                "manifest_digest": "text", "first_position": "bigint", "last_position": "bigint",
                "event_count": "bigint"},
        rows=_rows,
        reads=True,
    )  # fmt: skip

    def apply(self, event: Any, position: int, rows: Rows) -> None:
        key = (event.originator_id,)
        name = type(event).__name__
        if name == "SeasonOpened":
            row = {c: getattr(event, c) for c in ("season", *CALENDAR)}
            row.update(dict.fromkeys(ARCHIVE), season_id=key[0], opened_at=event.stamp.occurred_at)
            row["hajj_days"] = Season.hajj_days_of(event.hajj_from, event.hajj_until)
        else:
            found = rows.get(seasons, key)
            if found is None:
                return
            row = dict(found)
            if name == "SeasonClosed":
                row.update({c: getattr(event, c) for c in ARCHIVE})
        row["stage"] = str(SEASON_STEPS[name].to)
        rows.put(seasons, key, row)


def season_rows(connection: sa.Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every season opened, oldest first: its row, with its stage as of `now` (open turns running on its first
    arrival day in Makkah) and whether it is the current season."""
    today = makkah_day(now or datetime.now(UTC))
    view = seasons.view()
    found = [dict(row) for row in connection.execute(sa.select(view).order_by(view.c.season)).mappings()]
    current = current_of(((r["season"], r["registration_from"], r["departures_until"]) for r in found), today)
    for row in found:
        if row["stage"] == SeasonStage.OPEN and today >= row["arrivals_from"]:
            row["stage"] = str(SeasonStage.RUNNING)
        row["current"] = row["season"] == current
    return found


def current_season(connection: sa.Connection, now: datetime | None = None) -> int | None:
    """The season today (in Makkah, `now` or the clock's) belongs to: among the seasons opened, the one whose window
    (registration opens .. the last day of departures) holds today, the earlier when two do (the next season's
    registration opens while the current one is in the Hajj); if none holds today, the latest that has begun; if none
    has begun, the first to begin; None when no season was ever opened."""
    view = seasons.view()
    windows = connection.execute(sa.select(view.c.season, view.c.registration_from, view.c.departures_until))
    return current_of(((season, opens, ends) for season, opens, ends in windows), makkah_day(now or datetime.now(UTC)))
