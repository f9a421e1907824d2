"""`GET /v1/views`: the index of the views; `GET /v1/summary`: the season at a glance, from the views the caller may
read, scoped as those views are, once they have reached the position asked for."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import (
    ArchivesDep,
    Caller,
    MinPosition,
    ReadModelsDep,
    ReadsDep,
    SeasonQuery,
    allow,
    caller,
)
from hajj_ledger.api.reads import scope_column
from hajj_ledger.domain.access import EVERY_AGENCY, SUMMARY_READERS, SUMMARY_VIEWS, VIEW_READERS
from hajj_ledger.domain.catalogue import IN_KINGDOM
from hajj_ledger.domain.vocabulary import (
    PORT_MODES,
    ContractStage,
    Day,
    OfferStage,
    Port,
    Stage,
    TripStage,
    makkah_day,
)
from hajj_ledger.projections import PROJECTIONS, projection
from hajj_ledger.projections.framework import ONE_OF
from hajj_ledger.projections.read_season import chosen_season, seasons

router = APIRouter(prefix="/v1", tags=["overview"], dependencies=[Depends(caller)])


class ColumnPublic(BaseModel):
    name: str
    type: str = Field(description="integer, text, boolean, date, timestamp or uuid")
    filter: bool = Field(description="whether `GET /v1/views/<name>` filters by it")
    at_least: bool = Field(
        default=False, description="whether it also takes `min_<column>`: rows with at least that value (free places)"
    )
    one_of: list[str] | None = Field(
        default=None, description="the only values it holds (a stage, a status); a filter by any other is refused"
    )


class ViewPublic(BaseModel):
    name: str
    description: str
    path: str = Field(description="where it is served")
    key: list[str] = Field(description="the columns that identify a row, in the order pages follow")
    columns: list[ColumnPublic]
    readers: list[str] = Field(description="the roles that may read it (scoped roles see their own rows only)")
    readable: bool = Field(description="whether the caller's role may read it")


class ViewsPublic(BaseModel):
    items: list[ViewPublic]


_TYPES = ((sa.Boolean, "boolean"), (sa.Integer, "integer"), (sa.DateTime, "timestamp"), (sa.Date, "date"),
          (sa.Uuid, "uuid"), (sa.String, "text"))  # fmt: skip


def _type(column: sa.Column[Any]) -> str:
    return next(name for kind, name in _TYPES if isinstance(column.type, kind))


def _description(name: str) -> str:
    """The first paragraph of the view's module: each view says what it holds there, once."""
    text = sys.modules[type(projection(name)).__module__].__doc__ or ""
    first = text.split("\n\n")[0].removeprefix(f"`{name}`: ")
    return " ".join(first.split())


@router.get(
    "/views", openapi_extra=allow(EVERY_AGENCY), summary="The index of the views",
    description="Every view the API serves at `/v1/views/<name>`: what it holds, its columns (and which filter, "
    "which also bound from below with `min_<column>`; those worked out when read, as a trip overdue, last), its key "
    "and the roles that may read it (VIEW_READERS), and whether the caller's role is one of them.",
)  # fmt: skip
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
                name=served.name, description=_description(served.name), path=f"/v1/views/{served.name}",
                key=list(model.key), columns=columns, readers=sorted(readers), readable=agency.role in readers,
            )
        )  # fmt: skip
    return ViewsPublic(items=items)


class StagePublic(BaseModel):
    stage: str
    reached: int = Field(description="journeys of the season that have reached it")
    today: int = Field(description="of those, journeys that reached it on the day")


class StageNowPublic(BaseModel):
    stage: str
    journeys: int = Field(description="journeys of the season at that stage now")


class ArrivalsPublic(BaseModel):
    day: date = Field(description="in Makkah")
    port: str
    mode: str
    arrived: int


class PlacePublic(BaseModel):
    place: str | None = Field(description="a port, a city or a holy site")
    pilgrims: int


class CasesPublic(BaseModel):
    in_hospital: int
    missing: int
    deceased: int


class OfferPlacesPublic(BaseModel):
    kind: str
    offers: int = Field(description="offers of the season published and not withdrawn")
    places: int
    free: int = Field(description="places not contracted")


class ContractPlacesPublic(BaseModel):
    contracts: int = Field(description="contracts of the season signed")
    places: int
    used: int = Field(description="places taken by journeys")
    free: int


class BedsPublic(BaseModel):
    buildings: int = Field(description="licensed buildings, suspended or not")
    beds: int
    occupied: int
    free: int


class RoadPublic(BaseModel):
    on_the_road: int = Field(description="trips departed and not arrived")
    overdue: int = Field(description="of those, trips past their expected arrival")


class SummaryPublic(BaseModel):
    season: int | None = Field(
        description="the one season every figure of journeys, offers and contracts counts: the one asked for, else "
        "the current one (null: no season in the views yet)"
    )
    seasons: list[int] = Field(description="the seasons the views hold, newest first: those there is a page of")
    day: date = Field(description="the day 'today' means, in Makkah")
    funnel: list[StagePublic] | None = Field(description="season_funnel; null when the role may not read it")
    stages: list[StageNowPublic] | None = Field(description="journey_status: the season's journeys by stage now")
    arrivals: list[ArrivalsPublic] | None = Field(description="port_arrivals, per day, port and mode")
    in_kingdom: list[PlacePublic] | None = Field(description="journey_status: pilgrims in the Kingdom now, by place")
    trips_on_the_road: int | None = Field(description="trip_manifest: trips departed and not yet arrived")
    cases: CasesPublic | None = Field(description="journey_status: pilgrims in hospital, missing, deceased")
    overstays: int | None = Field(description="overstay_watch: in the Kingdom with their visa run out")
    offers: list[OfferPlacesPublic] | None = Field(description="service_offers: the market's places, by kind")
    contracts: ContractPlacesPublic | None = Field(description="contracts: places contracted, used and free")
    beds: BedsPublic | None = Field(description="building_occupancy: beds occupied and free")
    road: RoadPublic | None = Field(description="trips_on_road: trips on the road, and those overdue")


def _view(name: str) -> sa.Table:
    return projection(name).models[0].view()


def _scoped(query: sa.Select[Any], name: str, agency: Agency) -> sa.Select[Any]:
    """A scoped role's own rows only, as `GET /v1/views/<name>` gives them."""
    column = scope_column(name, agency)
    return query if column is None else query.where(_view(name).c[column] == agency.agency_id)


def _count(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _funnel(connection: Connection, agency: Agency, season: int, day: date) -> list[StagePublic]:
    view = _view("season_funnel")
    query = _scoped(
        sa.select(view.c.stage, sa.func.sum(view.c.reached), _count_day(view, day))
        .where(view.c.season == season)
        .group_by(view.c.stage),
        "season_funnel", agency,
    )  # fmt: skip
    found = {stage: (reached, today) for stage, reached, today in connection.execute(query)}
    return [
        StagePublic(stage=stage, reached=found[stage][0], today=found[stage][1]) for stage in Stage if stage in found
    ]


def _count_day(view: sa.Table, day: date) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((view.c.day == day, view.c.reached), else_=0)), 0)


def _stages(connection: Connection, agency: Agency, season: int) -> list[StageNowPublic]:
    """The journeys by the stage they are at now: the funnel a role that reads journeys but not `season_funnel` sees
    (a mission, its own)."""
    view = _view("journey_status")
    query = _scoped(
        sa.select(view.c.stage, sa.func.count()).where(view.c.season == season).group_by(view.c.stage),
        "journey_status", agency,
    )  # fmt: skip
    found = {stage: journeys for stage, journeys in connection.execute(query)}
    return [StageNowPublic(stage=stage, journeys=found[stage]) for stage in Stage if stage in found]


def _arrivals(connection: Connection, agency: Agency, season: int) -> list[ArrivalsPublic]:
    view = _view("port_arrivals")
    query = _scoped(
        sa.select(view.c.day, view.c.port, sa.func.sum(view.c.arrived))
        .where(view.c.season == season)
        .group_by(view.c.day, view.c.port)
        .having(sa.func.sum(view.c.arrived) > 0)
        .order_by(view.c.day, view.c.port),
        "port_arrivals", agency,
    )  # fmt: skip
    return [
        ArrivalsPublic(day=day, port=port, mode=PORT_MODES[Port(port)], arrived=arrived)
        for day, port, arrived in connection.execute(query)
    ]


def _in_kingdom(connection: Connection, agency: Agency, season: int) -> list[PlacePublic]:
    view = _view("journey_status")
    query = _scoped(
        sa.select(view.c.place, sa.func.count())
        .where(view.c.season == season, view.c.stage.in_([str(s) for s in IN_KINGDOM]), ~view.c.deceased)
        .group_by(view.c.place)
        .order_by(view.c.place),
        "journey_status", agency,
    )  # fmt: skip
    return [PlacePublic(place=place, pilgrims=count) for place, count in connection.execute(query)]


def _trips(connection: Connection, agency: Agency) -> int:
    view = _view("trip_manifest")
    query = _scoped(sa.select(sa.func.count()).where(view.c.status == str(TripStage.DEPARTED)), "trip_manifest", agency)
    return int(connection.execute(query).scalar_one())


def _cases(connection: Connection, agency: Agency, season: int) -> CasesPublic:
    view = _view("journey_status")
    query = _scoped(
        sa.select(_count(view.c.in_hospital), _count(view.c.missing), _count(view.c.deceased))
        .where(view.c.season == season),
        "journey_status", agency,
    )  # fmt: skip
    in_hospital, missing, deceased = connection.execute(query).one()
    return CasesPublic(in_hospital=in_hospital, missing=missing, deceased=deceased)


def _overstays(connection: Connection, agency: Agency, season: int, now: datetime) -> int:
    view = _view("overstay_watch")
    query = _scoped(
        sa.select(sa.func.count()).where(view.c.season == season, view.c.in_kingdom, view.c.visa_valid_until < now),
        "overstay_watch", agency,
    )  # fmt: skip
    return int(connection.execute(query).scalar_one())


def _offers(connection: Connection, agency: Agency, season: int) -> list[OfferPlacesPublic]:
    view = _view("service_offers")
    query = _scoped(
        sa.select(view.c.kind, sa.func.count(), sa.func.sum(view.c.places), sa.func.sum(view.c.free))
        .where(view.c.season == season, view.c.status == str(OfferStage.PUBLISHED))
        .group_by(view.c.kind)
        .order_by(view.c.kind),
        "service_offers", agency,
    )  # fmt: skip
    return [
        OfferPlacesPublic(kind=kind, offers=offers, places=places, free=free)
        for kind, offers, places, free in connection.execute(query)
    ]


def _sums(*columns: sa.Column[Any]) -> list[Any]:
    return [sa.func.coalesce(sa.func.sum(column), 0) for column in columns]


def _contracts(connection: Connection, agency: Agency, season: int) -> ContractPlacesPublic:
    view = _view("contracts")
    query = _scoped(
        sa.select(sa.func.count(), *_sums(view.c.places, view.c.used, view.c.free))
        .where(view.c.season == season, view.c.status == str(ContractStage.SIGNED)),
        "contracts", agency,
    )  # fmt: skip
    contracts, places, used, free = connection.execute(query).one()
    return ContractPlacesPublic(contracts=contracts, places=places, used=used, free=free)


def _beds(connection: Connection, agency: Agency) -> BedsPublic:
    view = _view("building_occupancy")
    query = _scoped(
        sa.select(sa.func.count(), *_sums(view.c.beds, view.c.occupied, view.c.free)),
        "building_occupancy", agency,
    )  # fmt: skip
    buildings, beds, occupied, free = connection.execute(query).one()
    return BedsPublic(buildings=buildings, beds=beds, occupied=occupied, free=free)


def _road(connection: Connection, agency: Agency, now: datetime) -> RoadPublic:
    model = projection("trips_on_road").models[0]
    view = model.view()
    assert model.at_read is not None
    overdue = model.at_read(view)["overdue"]  # as the view's own rows have it
    query = _scoped(
        sa.select(sa.func.count(), _count(overdue)).where(view.c.status == "on_road"), "trips_on_road", agency
    )
    on_the_road, late = connection.execute(query, {"now": now}).one()
    return RoadPublic(on_the_road=on_the_road, overdue=late)


@router.get(
    "/summary", openapi_extra=allow(SUMMARY_READERS), summary="The season at a glance",
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
)  # fmt: skip
def summary(
    agency: Caller,
    engine: ReadModelsDep,
    reads: ReadsDep,
    archives: ArchivesDep,
    season: SeasonQuery = None,
    day: Annotated[Day | None, Query(description="the day whose movement 'today' shows (in Makkah)")] = None,
    min_position: MinPosition = None,
) -> SummaryPublic:
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
        return SummaryPublic(
            season=chosen,
            seasons=seasons(now_figures),
            day=day,
            funnel=readable("season_funnel", lambda: _funnel(connection, agency, counted, day)),
            stages=readable("journey_status", lambda: _stages(connection, agency, counted)),
            arrivals=readable("port_arrivals", lambda: _arrivals(connection, agency, counted)),
            in_kingdom=readable("journey_status", lambda: _in_kingdom(connection, agency, counted)),
            trips_on_the_road=readable("trip_manifest", lambda: _trips(now_figures, agency)),
            cases=readable("journey_status", lambda: _cases(connection, agency, counted)),
            overstays=readable("overstay_watch", lambda: _overstays(connection, agency, counted, now)),
            offers=readable("service_offers", lambda: _offers(connection, agency, counted)),
            contracts=readable("contracts", lambda: _contracts(connection, agency, counted)),
            beds=readable("building_occupancy", lambda: _beds(now_figures, agency)),
            road=readable("trips_on_road", lambda: _road(now_figures, agency, now)),
        )
