"""The read models as readers ask them: each view a plain table (`Model.view()`), and each question a function over
it, giving plain rows (as cosmicpython's views do). A journey's row, a page of a view, how far the views have
reached, and the season at a glance's figures; the same SQL on either store, scoped to the reader as every read of
a view is (`scope_column`). The HTTP face serves them (api/reads.py, api/routes/overview.py)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from hajj_ledger.domain.access import WHOLE_VIEW_READERS
from hajj_ledger.domain.catalogue import IN_KINGDOM, SCOPE
from hajj_ledger.domain.vocabulary import PORT_MODES, Actor, ContractStage, OfferStage, Port, Stage, TripStage
from hajj_ledger.projections import projection
from hajj_ledger.projections.framework import AT_LEAST, Model
from hajj_ledger.projections.journey_status import journey_status
from hajj_ledger.projections.schema import positions

Row = dict[str, Any]
Page = tuple[list[Row], int]  # the rows, and the position the view had reached


def scope_column(name: str, reader: Actor) -> str | None:
    """The column holding the reader's agency in the rows of view `name` it may read; None: it reads every row."""
    if reader.role not in SCOPE or reader.role in WHOLE_VIEW_READERS.get(name, ()):
        return None
    return SCOPE[reader.role][0]


def plain_row(row: Mapping[Any, Any]) -> Row:
    """A row with plain `str` keys (SQLAlchemy's are a subclass, which orjson refuses)."""
    return {str(k): v for k, v in row.items()}


# A journey, a page, the views' positions: each built once per shape (the hot reads compile each once for psycopg).


@functools.cache
def journey_query() -> sa.Select[Any]:
    view = journey_status.view()
    return sa.select(view).where(view.c.journey_id == sa.bindparam("journey_id", type_=view.c.journey_id.type))


@functools.cache
def page_query(model: Model, filters: tuple[str, ...], scope: str | None, after: bool) -> sa.Select[Any]:
    """A page of a view: rows past the cursor's key (if any), filtered, in key order, one more than asked for (so
    that the answer knows whether another page follows)."""
    view = model.view()
    key = [view.c[k] for k in model.key]
    query = model.readable().order_by(*key).limit(sa.bindparam("limit", type_=sa.Integer))
    worked_out = model.read_columns()
    for name in filters:
        bounded = name.removeprefix(AT_LEAST)
        if name in worked_out:
            query = query.where(worked_out[name] == sa.bindparam(f"filter_{name}", type_=sa.Boolean))
        elif bounded != name and bounded in model.at_least:
            query = query.where(view.c[bounded] >= sa.bindparam(f"filter_{name}", type_=view.c[bounded].type))
        else:
            query = query.where(view.c[name] == sa.bindparam(f"filter_{name}", type_=view.c[name].type))
    if scope is not None:
        query = query.where(view.c[scope] == sa.bindparam("scope", type_=view.c[scope].type))
    if after:
        query = query.where(sa.tuple_(*key) > sa.tuple_(*(sa.bindparam(f"after_{c.name}", type_=c.type) for c in key)))
    return query


def page_parameters(
    model: Model, reader: Actor, filters: dict[str, Any], after: list[Any] | None, limit: int
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The query of a page and its parameters."""
    given = {name: value for name, value in filters.items() if value is not None}
    scope = scope_column(model.name, reader)
    query = page_query(model, tuple(sorted(given)), scope, after is not None)
    parameters: dict[str, Any] = {"limit": limit + 1, **{f"filter_{n}": v for n, v in given.items()}}
    if model.at_read is not None:
        parameters["now"] = datetime.now(UTC)
    if scope is not None:
        parameters["scope"] = reader.agency_id
    if after is not None:
        parameters.update({f"after_{k}": v for k, v in zip(model.key, after, strict=True)})
    return query, parameters


@functools.cache
def position_query(*, one_array: bool = False) -> sa.Select[Any]:
    """The lowest position the views `names` have reached (the serving generation of each). The names are bound as
    one array (`one_array`, PostgreSQL's: a statement compiled once, whatever their number), or else spread into
    the statement when it runs (either store)."""
    if one_array:
        names = positions.c.projection == sa.any_(sa.bindparam("names", type_=postgresql.ARRAY(sa.String)))
    else:
        names = positions.c.projection.in_(sa.bindparam("names", expanding=True))
    return sa.select(sa.func.min(positions.c.position).label("reached")).where(names, positions.c.serving.is_(True))


def read_page(connection: Connection, name: str, query: sa.Select[Any], parameters: dict[str, Any]) -> Page:
    """A page of view `name` through SQLAlchemy, and the position the view had reached."""
    rows = [plain_row(r) for r in connection.execute(query, parameters).mappings()]
    reached = connection.execute(position_query(), {"names": [name]}).scalar()
    return rows, reached or 0


# The season at a glance: each figure from the view it is counted in, of one season where the view is by season,
# scoped as the reader's page of that view is.


def _view(name: str) -> sa.Table:
    return projection(name).models[0].view()


def _scoped(query: sa.Select[Any], name: str, reader: Actor) -> sa.Select[Any]:
    """A scoped reader's own rows only, as its pages of the view give them."""
    column = scope_column(name, reader)
    return query if column is None else query.where(_view(name).c[column] == reader.agency_id)


def _count(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _sums(*columns: sa.Column[Any]) -> list[Any]:
    return [sa.func.coalesce(sa.func.sum(column), 0) for column in columns]


def funnel(connection: Connection, reader: Actor, season: int, day: date) -> list[Row]:
    """The journeys that have reached each stage, and of those, how many did on `day`."""
    view = _view("season_funnel")
    today = sa.func.coalesce(sa.func.sum(sa.case((view.c.day == day, view.c.reached), else_=0)), 0)
    query = sa.select(view.c.stage, sa.func.sum(view.c.reached), today).where(view.c.season == season)
    rows = connection.execute(_scoped(query.group_by(view.c.stage), "season_funnel", reader))
    found = {stage: (reached, on_the_day) for stage, reached, on_the_day in rows}
    return [{"stage": s, "reached": found[s][0], "today": found[s][1]} for s in Stage if s in found]


def stages(connection: Connection, reader: Actor, season: int) -> list[Row]:
    """The journeys by the stage they are at now: the funnel a role that reads journeys but not `season_funnel`
    sees (a mission, its own)."""
    view = _view("journey_status")
    query = sa.select(view.c.stage, sa.func.count()).where(view.c.season == season).group_by(view.c.stage)
    found = {stage: journeys for stage, journeys in connection.execute(_scoped(query, "journey_status", reader))}
    return [{"stage": stage, "journeys": found[stage]} for stage in Stage if stage in found]


def arrivals(connection: Connection, reader: Actor, season: int) -> list[Row]:
    """The pilgrims arrived per day (in Makkah), port and the port's mode."""
    view = _view("port_arrivals")
    query = (
        sa.select(view.c.day, view.c.port, sa.func.sum(view.c.arrived))
        .where(view.c.season == season)
        .group_by(view.c.day, view.c.port)
        .having(sa.func.sum(view.c.arrived) > 0)
        .order_by(view.c.day, view.c.port)
    )
    return [
        {"day": day, "port": port, "mode": PORT_MODES[Port(port)], "arrived": arrived}
        for day, port, arrived in connection.execute(_scoped(query, "port_arrivals", reader))
    ]


def in_kingdom(connection: Connection, reader: Actor, season: int) -> list[Row]:
    """The pilgrims in the Kingdom now, by the place they are at."""
    view = _view("journey_status")
    query = (
        sa.select(view.c.place, sa.func.count())
        .where(view.c.season == season, view.c.stage.in_([str(s) for s in IN_KINGDOM]), ~view.c.deceased)
        .group_by(view.c.place)
        .order_by(view.c.place)
    )
    return [
        {"place": place, "pilgrims": count}
        for place, count in connection.execute(_scoped(query, "journey_status", reader))
    ]


def trips_departed(connection: Connection, reader: Actor) -> int:
    """The trips departed and not yet arrived (trips are of no season)."""
    view = _view("trip_manifest")
    query = sa.select(sa.func.count()).where(view.c.status == str(TripStage.DEPARTED))
    return int(connection.execute(_scoped(query, "trip_manifest", reader)).scalar_one())


def cases(connection: Connection, reader: Actor, season: int) -> Row:
    """The pilgrims in hospital, missing and deceased."""
    view = _view("journey_status")
    query = sa.select(
        _count(view.c.in_hospital).label("in_hospital"),
        _count(view.c.missing).label("missing"),
        _count(view.c.deceased).label("deceased"),
    ).where(view.c.season == season)
    return plain_row(connection.execute(_scoped(query, "journey_status", reader)).mappings().one())


def overstays(connection: Connection, reader: Actor, season: int, now: datetime) -> int:
    """The pilgrims in the Kingdom with their visa run out."""
    view = _view("overstay_watch")
    query = sa.select(sa.func.count()).where(view.c.season == season, view.c.in_kingdom, view.c.visa_valid_until < now)
    return int(connection.execute(_scoped(query, "overstay_watch", reader)).scalar_one())


def offers(connection: Connection, reader: Actor, season: int) -> list[Row]:
    """The market's offers published and not withdrawn, their places and those free, by kind."""
    view = _view("service_offers")
    query = (
        sa.select(
            view.c.kind,
            sa.func.count().label("offers"),
            sa.func.sum(view.c.places).label("places"),
            sa.func.sum(view.c.free).label("free"),
        )
        .where(view.c.season == season, view.c.status == str(OfferStage.PUBLISHED))
        .group_by(view.c.kind)
        .order_by(view.c.kind)
    )
    return [plain_row(row) for row in connection.execute(_scoped(query, "service_offers", reader)).mappings()]


def contracted(connection: Connection, reader: Actor, season: int) -> Row:
    """The contracts signed, their places, those taken by journeys and those free."""
    view = _view("contracts")
    places, used, free = _sums(view.c.places, view.c.used, view.c.free)
    query = sa.select(
        sa.func.count().label("contracts"), places.label("places"), used.label("used"), free.label("free")
    ).where(view.c.season == season, view.c.status == str(ContractStage.SIGNED))
    return plain_row(connection.execute(_scoped(query, "contracts", reader)).mappings().one())


def beds(connection: Connection, reader: Actor) -> Row:
    """The licensed buildings (suspended or not), their beds, those occupied and those free (of no season)."""
    view = _view("building_occupancy")
    beds, occupied, free = _sums(view.c.beds, view.c.occupied, view.c.free)
    query = sa.select(
        sa.func.count().label("buildings"), beds.label("beds"), occupied.label("occupied"), free.label("free")
    )
    return plain_row(connection.execute(_scoped(query, "building_occupancy", reader)).mappings().one())


def road(connection: Connection, reader: Actor, now: datetime) -> Row:
    """The trips on the road, and those overdue as the view's own rows have it when read (of no season)."""
    model = projection("trips_on_road").models[0]
    view = model.view()
    assert model.at_read is not None
    overdue = model.at_read(view)["overdue"]
    query = sa.select(sa.func.count().label("on_the_road"), _count(overdue).label("overdue")).where(
        view.c.status == "on_road"
    )
    found = connection.execute(_scoped(query, "trips_on_road", reader), {"now": now}).mappings().one()
    return plain_row(found)
