"""`GET /v1/views`: the index of the views; `GET /v1/summary`: the season at a glance, from the views the caller may
read, scoped as those views are, once they have reached the position asked for. The figures are counted by
projections/queries.py; the answers' models are in api/schemas.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from hajj_ledger.api.deps import ArchivesDep, Caller, MinPosition, ReadModelsDep, ReadsDep, SeasonQuery, allow, caller
from hajj_ledger.api.schemas import ColumnPublic, SummaryPublic, ViewPublic, ViewsPublic
from hajj_ledger.domain.access import EVERY_AGENCY, SUMMARY_READERS, SUMMARY_VIEWS, VIEW_READERS
from hajj_ledger.domain.vocabulary import Day, makkah_day
from hajj_ledger.projections import PROJECTIONS, projection, queries
from hajj_ledger.projections.framework import ONE_OF
from hajj_ledger.projections.read_season import chosen_season, seasons

router = APIRouter(prefix="/v1", tags=["overview"], dependencies=[Depends(caller)])

_TYPES = (
    (sa.Boolean, "boolean"),
    (sa.Integer, "integer"),
    (sa.DateTime, "timestamp"),
    (sa.Date, "date"),
    (sa.Uuid, "uuid"),
    (sa.String, "text"),
)


def _type(column: sa.Column[Any]) -> str:
    return next(name for kind, name in _TYPES if isinstance(column.type, kind))


def _description(name: str) -> str:
    """The first paragraph of the view's module: each view says what it holds there, once."""
    text = sys.modules[type(projection(name)).__module__].__doc__ or ""
    first = text.split("\n\n")[0].removeprefix(f"`{name}`: ")
    return " ".join(first.split())


@router.get(
    "/views",
    openapi_extra=allow(EVERY_AGENCY),
    summary="The index of the views",
    description="Every view the API serves at `/v1/views/<name>`: what it holds, its columns (and which filter, "
    "which also bound from below with `min_<column>`; those worked out when read, as a trip overdue, last), its key "
    "and the roles that may read it (VIEW_READERS), and whether the caller's role is one of them.",
)
def views(agency: Caller) -> ViewsPublic:
    items = []
    for served in PROJECTIONS:
        model = served.models[0]
        readers = VIEW_READERS[served.name]
        columns = [
            ColumnPublic(
                name=c.name,
                type=_type(c),
                filter=c.name != "position",
                at_least=c.name in model.at_least,
                one_of=list(c.info[ONE_OF]) if ONE_OF in c.info else None,
            )
            for c in model.view().c
        ]
        columns += [ColumnPublic(name=name, type="boolean", filter=True) for name in model.read_columns()]
        items.append(
            ViewPublic(
                name=served.name,
                description=_description(served.name),
                path=f"/v1/views/{served.name}",
                key=list(model.key),
                columns=columns,
                readers=sorted(readers),
                readable=agency.role in readers,
            )
        )
    return ViewsPublic(items=items)


@router.get(
    "/summary",
    openapi_extra=allow(SUMMARY_READERS),
    summary="The season at a glance",
    description="The figures of the season at a glance, each from the view it is counted in, and each only for a "
    "role that may read that view (otherwise null), scoped as the view is (a mission counts its own pilgrims): the "
    "funnel by stage with the day's movement (season_funnel), arrivals per day by port and mode (port_arrivals), "
    "pilgrims in the Kingdom by place, and those in hospital, missing and deceased (journey_status), trips on the "
    "road (trip_manifest), overstays (overstay_watch); the market's free places by kind (service_offers), places "
    "contracted, used and free (contracts), beds occupied and free (building_occupancy), trips on the road and "
    "overdue (trips_on_road). Every figure of journeys, offers and contracts is of one season: `season`, by default "
    "the current one (the same for every caller); trips and buildings are of no season, their figures are of now. "
    "`day` defaults to today in Makkah. A closed season's figures come from its archive, as they were before it "
    "closed. "
    "With `min_position`, it answers once every view it counts for the caller has applied the log up to there, "
    "waiting (bounded) as the views do, else 503 with Retry-After.",
)
def summary(
    agency: Caller,
    engine: ReadModelsDep,
    reads: ReadsDep,
    archives: ArchivesDep,
    season: SeasonQuery = None,
    day: Annotated[Day | None, Query(description="the day whose movement 'today' shows (in Makkah)")] = None,
    min_position: MinPosition = None,
) -> SummaryPublic:
    reader = agency.actor

    def readable(name: str, figure: Callable[[], Any]) -> Any:
        return figure() if agency.role in VIEW_READERS[name] else None

    with ExitStack() as opened:
        connection = opened.enter_context(engine.connect())
        counts = [name for name in SUMMARY_VIEWS if agency.role in VIEW_READERS[name]]
        reads.await_position(connection, counts, min_position, agency)
        now = datetime.now(UTC)
        day = day or makkah_day(now)
        chosen = chosen_season(connection, season)
        counted = chosen if chosen is not None else 0  # no season yet: every season's figures are empty
        now_figures = connection  # trips and buildings are of no season: the hot store's, of now
        archived = archives.of(chosen)
        if archived is not None:  # a closed season's rows left the hot store with it: its archive's
            connection = opened.enter_context(archived.engine.connect())
        return SummaryPublic.model_validate(
            {
                "season": chosen,
                "seasons": seasons(now_figures),
                "day": day,
                "funnel": readable("season_funnel", lambda: queries.funnel(connection, reader, counted, day)),
                "stages": readable("journey_status", lambda: queries.stages(connection, reader, counted)),
                "arrivals": readable("port_arrivals", lambda: queries.arrivals(connection, reader, counted)),
                "in_kingdom": readable("journey_status", lambda: queries.in_kingdom(connection, reader, counted)),
                "trips_on_the_road": readable("trip_manifest", lambda: queries.trips_departed(now_figures, reader)),
                "cases": readable("journey_status", lambda: queries.cases(connection, reader, counted)),
                "overstays": readable("overstay_watch", lambda: queries.overstays(connection, reader, counted, now)),
                "offers": readable("service_offers", lambda: queries.offers(connection, reader, counted)),
                "contracts": readable("contracts", lambda: queries.contracted(connection, reader, counted)),
                "beds": readable("building_occupancy", lambda: queries.beds(now_figures, reader)),
                "road": readable("trips_on_road", lambda: queries.road(now_figures, reader, now)),
            }
        )
