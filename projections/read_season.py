"""The season a read shows: every read of the views (the API's, the dashboard's, the command line's, an export) is of
one season, the one asked for or, when none is, the current one.

`default_season` is the one place that says which season is current. Until the seasons' calendar is kept, it is the
newest season the views hold: the journeys' (`season_funnel`), else the market's (`contracts`, `service_offers`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hajj_ledger.projections.contracts import contracts
from hajj_ledger.projections.framework import Model
from hajj_ledger.projections.season_funnel import season_funnel
from hajj_ledger.projections.service_offers import service_offers

SEASON = "season"  # the column that says which season a row is of


def default_season(connection: Connection, now: datetime | None = None) -> int | None:
    """The season a read shows when none is asked for (None: the views hold no season yet)."""
    return newest_season(connection)


def chosen_season(connection: Connection, season: int | None) -> int | None:
    """The season asked for, else the current one."""
    return season if season is not None else default_season(connection)


def newest_season(connection: Connection) -> int | None:
    """The newest season with journeys, else the newest of the market's; None when the views hold none."""
    for model in (season_funnel, contracts, service_offers):
        view = model.view()
        found: int | None = connection.execute(sa.select(sa.func.max(view.c.season))).scalar()
        if found is not None:
            return found
    return None


def seasons(connection: Connection) -> list[int]:
    """The seasons the views hold (journeys', offers', contracts'), newest first: those a reader may choose from."""
    found = sa.union(*(sa.select(model.view().c.season) for model in (season_funnel, contracts, service_offers)))
    return sorted(connection.execute(found).scalars(), reverse=True)


def by_season(model: Model) -> bool:
    """Whether each of a read model's rows is of one season (it has a `season` column)."""
    return SEASON in model.column_names
