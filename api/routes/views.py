"""`GET /v1/views/<name>`: every read model, filtered, in pages, scoped to the caller; one endpoint per projection,
generated from the projection list and its columns.

Pages follow the view's key (a keyset cursor): a page never skips nor repeats a row that exists throughout,
however many writes land between pages. A view whose rows are each of one season (a `season` column) gives one
season's rows only: the `season` asked for, else the current one, named in the answer."""

import base64
import functools
import inspect
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.archives import ARCHIVED_VIEWS
from hajj_ledger.api.deps import (
    ArchivesDep,
    Caller,
    Limit,
    MinPosition,
    PageCursor,
    ReadsDep,
    SeasonQuery,
    allow,
    caller,
    column_type,
    season_or_current,
)
from hajj_ledger.api.problems import invalid
from hajj_ledger.api.reads import answer
from hajj_ledger.api.schemas import PagePublic, utc
from hajj_ledger.domain.access import VIEW_READERS
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.framework import AT_LEAST, Model
from hajj_ledger.projections.queries import page_parameters
from hajj_ledger.projections.read_season import SEASON, by_season

FILTERABLE = (str, int, bool, UUID, date, datetime)
Cursor = Annotated[PageCursor | None, Query(description="a page's `next_cursor`")]


def _cursor(row: dict[str, Any], key: tuple[str, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(row[k]) for k in key])).decode().rstrip("=")


def _after(cursor: str, view: sa.Table, key: tuple[str, ...]) -> list[Any]:
    try:
        texts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(texts, list) or len(texts) != len(key):
            raise ValueError("wrong shape")
        return [_value(view.c[k]).validate_python(t) for k, t in zip(key, texts, strict=True)]
    except (ValueError, TypeError, orjson.JSONDecodeError):  # pydantic's ValidationError is a ValueError
        raise invalid("cursor: not one this view gave", [{"path": "query.cursor"}]) from None


@functools.cache
def _value(column: sa.Column[Any]) -> TypeAdapter[Any]:
    """A cursor's value for a key column, held to what the column holds, as a filter on it is."""
    return TypeAdapter(column_type(column))


def page(
    connection: Any, model: Model, agency: Agency, filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a view on a SQLAlchemy connection (the auditors' past views)."""

    def read(after: list[Any] | None, count: int) -> list[dict[str, Any]]:
        query, parameters = page_parameters(model, agency.actor, filters, after, count - 1)
        return [dict(r) for r in connection.execute(query, parameters).mappings()]

    return keyed_page(model, cursor, limit, read)


def keyed_page(
    model: Model, cursor: str | None, limit: int, read: Callable[[list[Any] | None, int], list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the rows `read` gives (after a key, at most a count), in the view's key order, and the next page's
    cursor, if there is one."""
    after = None if cursor is None else _after(cursor, model.view(), model.key)
    return _cut(read(after, limit + 1), model, limit)


def _cut(rows: list[dict[str, Any]], model: Model, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The page (the query read one row more than asked for) and the next page's cursor, if there is one."""
    more = len(rows) > limit
    rows = [utc(r) for r in rows[:limit]]
    return rows, _cursor(rows[-1], model.key) if more else None


def filters(model: Model) -> list[inspect.Parameter]:
    """A view's filters, as a route's keyword parameters: a row's column equal to a value, a column worked out when
    read, a column at least a value; each checked as its column is."""
    view = model.view()
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        *(
            inspect.Parameter(
                c.name, keyword, default=None,
                annotation=SeasonQuery if c.name == SEASON else Annotated[
                    column_type(c) | None, Query(description=f"only rows with this {c.name}")
                ],
            )
            for c in view.c
            if c.type.python_type in FILTERABLE and c.name != "position"
        ),
        *(
            inspect.Parameter(
                name, keyword, default=None,
                annotation=Annotated[bool | None, Query(description=f"only rows {name} (or not) as of this moment")],
            )
            for name in model.read_columns()
        ),
        *(
            inspect.Parameter(
                f"{AT_LEAST}{name}", keyword, default=None,
                annotation=Annotated[
                    column_type(view.c[name]) | None, Query(description=f"only rows with at least this {name}")
                ],
            )
            for name in model.at_least
        ),
    ]  # fmt: skip


def add_view(router: APIRouter, name: str, model: Model) -> None:
    view = model.view()
    seasonal = by_season(model)

    async def handler(
        agency: Any, reads: Any, archives: Any, cursor: Any, limit: Any, min_position: Any, **filters: Any
    ) -> Response:
        after = None if cursor is None else _after(cursor, view, model.key)
        if seasonal:  # one season's rows, never two
            filters[SEASON] = await season_or_current(reads.engine, filters.get(SEASON))
        archived = await archives.of_season(filters[SEASON]) if seasonal and model.name in ARCHIVED_VIEWS else None
        if archived is not None:  # a closed season's rows left the hot store with it: its archive's
            rows, reached = await run_in_threadpool(archived.page, model, agency, filters, after, limit)
        else:
            rows, reached = await reads.page(name, model, agency, filters, after, limit, min_position)
        items, next_cursor = _cut(rows, model, limit)
        body = {"items": items, "next_cursor": next_cursor, "position": reached}
        return answer({**body, SEASON: filters[SEASON]} if seasonal else body)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("agency", keyword, annotation=Caller),
        inspect.Parameter("reads", keyword, annotation=ReadsDep),
        inspect.Parameter("archives", keyword, annotation=ArchivesDep),
        inspect.Parameter("cursor", keyword, default=None, annotation=Cursor),
        inspect.Parameter("limit", keyword, default=100, annotation=Limit),
        inspect.Parameter("min_position", keyword, default=None, annotation=MinPosition),
        *filters(model),
    ]
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = f"list_{name}"
    router.add_api_route(
        f"/views/{name}", handler, methods=["GET"], response_model=PagePublic, summary=f"The {name} view",
        openapi_extra=allow(VIEW_READERS[name]), tags=["views"],
    )  # fmt: skip


@functools.cache  # built once a process: each app takes its routes from it
def router() -> APIRouter:
    views = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    for projection in PROJECTIONS:
        add_view(views, projection.name, projection.models[0])
    return views
