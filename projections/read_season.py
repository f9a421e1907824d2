"""The season a read shows: every read of the views (the API's, the dashboard's, the command line's, an export) is of
one season, the one asked for or, when none is, the current one.

`default_season` is the one place that says which season is current: the calendar's (`current_season` of the
`seasons` view: the season whose window, from its registration opening to its last day of departures, holds today,
the earlier of two). A store where no season was ever opened (one older than the calendar) still shows something:
the newest season the views hold, the journeys' (`season_funnel`), else the market's (`contracts`,
`service_offers`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.projections.contracts import contracts
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.season_funnel import season_funnel
from hajj_ledger.projections.seasons import current_season
from hajj_ledger.projections.seasons import seasons as calendar
from hajj_ledger.projections.service_offers import service_offers

SEASON = "season"  # the column that says which season a row is of
HOLDING_SEASONS = (season_funnel, contracts, service_offers)  # the journeys' seasons, and the market's


def default_season(connection: Connection, now: datetime | None = None) -> int | None:
    """The season a read shows when none is asked for: the calendar's current season; while no season was ever
    opened, the newest the views hold (None: they hold none)."""
    current = current_season(connection, now)
    return current if current is not None else newest_season(connection)


def chosen_season(connection: Connection, season: int | None) -> int | None:
    """The season asked for, else the current one."""
    return season if season is not None else default_season(connection)


def newest_season(connection: Connection) -> int | None:
    """The newest season with journeys, else the newest of the market's; None when the views hold none."""
    for model in HOLDING_SEASONS:
        view = model.view()
        found: int | None = connection.execute(sa.select(sa.func.max(view.c.season))).scalar()
        if found is not None:
            return found
    return None


def seasons(connection: Connection) -> list[int]:
    """The seasons opened and those the views hold (journeys', offers', contracts'), newest first: those a reader
    may choose from."""
    found = sa.union(*(sa.select(model.view().c.season) for model in (calendar, *HOLDING_SEASONS)))
    return sorted(connection.execute(found).scalars(), reverse=True)


def by_season(model: Model) -> bool:
    """Whether each of a read model's rows is of one season (it has a `season` column), and so read one season at a
    time: every one but the calendar, which lists the seasons themselves."""
    return SEASON in model.column_names and model.name != calendar.name
