"""`GET /v1/views/<name>`: every read model, filtered, in pages, scoped to the caller; one endpoint per projection,
generated from the projection list and its columns.

Pages follow the view's key (a keyset cursor): a page never skips nor repeats a row that exists throughout,
however many writes land between pages."""

import base64
import functools
import inspect
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, Field, TypeAdapter
from pydantic.config import JsonDict

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import Caller, ReadsDep, allow, caller
from hajj_ledger.api.problems import invalid
from hajj_ledger.api.reads import answer, page_parameters
from hajj_ledger.api.routes.journeys import MinPosition
from hajj_ledger.api.schemas import PagePublic, QueryInt, utc
from hajj_ledger.domain.access import VIEW_READERS
from hajj_ledger.domain.vocabulary import Day, Moment
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.framework import AT_LEAST, ONE_OF, Model

FILTERABLE = (str, int, bool, UUID, date, datetime)


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
    return TypeAdapter(query_type(column))


def page(
    connection: Any, model: Model, agency: Agency, filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a view on a SQLAlchemy connection (the auditors' past views)."""

    def read(after: list[Any] | None, count: int) -> list[dict[str, Any]]:
        query, parameters = page_parameters(model, agency, filters, after, count - 1)
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


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


_NO_NUL: JsonDict = {"pattern": r"^[^\x00]*$"}  # for the OpenAPI document; `_no_nul` says why a value is refused
# The range of each integer column type: the database refuses a value beyond it ("integer out of range").
_INTEGER_BITS = ((sa.BigInteger, 64), (sa.SmallInteger, 16), (sa.Integer, 32))


def query_type(column: sa.Column[Any]) -> Any:
    """What a query value compared with the column may be: of its type and within what the column holds, so that no
    value reaches the database to be refused there (as a 500). Integers within the column's range (a 32-bit INTEGER
    is not a BIGINT), text within its length and without NUL (PostgreSQL refuses it), or one of the only values it
    holds (a stage, a status: any other is a mistake, not a filter that finds nothing), times and dates written out
    (never a number read as seconds since 1970)."""
    kind = column.type
    if isinstance(kind, sa.Integer):
        bits = next(b for t, b in _INTEGER_BITS if isinstance(kind, t))
        return Annotated[QueryInt, Field(ge=-(2 ** (bits - 1)), le=2 ** (bits - 1) - 1)]
    if values := column.info.get(ONE_OF):
        return Literal[values]
    if isinstance(kind, sa.String):
        return Annotated[str, Field(max_length=kind.length, json_schema_extra=_NO_NUL), AfterValidator(_no_nul)]
    return {datetime: Moment, date: Day}.get(kind.python_type, kind.python_type)


def add_view(router: APIRouter, name: str, model: Model) -> None:
    view = model.view()
    filterable = [c for c in view.c if c.type.python_type in FILTERABLE and c.name != "position"]
    bounded = [view.c[name] for name in model.at_least]

    async def handler(agency: Any, reads: Any, cursor: Any, limit: Any, min_position: Any, **filters: Any) -> Response:
        after = None if cursor is None else _after(cursor, view, model.key)
        rows, reached = await reads.page(name, model, agency, filters, after, limit, min_position)
        items, next_cursor = _cut(rows, model, limit)
        return answer({"items": items, "next_cursor": next_cursor, "position": reached})

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("agency", keyword, annotation=Caller),
        inspect.Parameter("reads", keyword, annotation=ReadsDep),
        inspect.Parameter(
            "cursor", keyword, default=None, annotation=Annotated[str | None, Query(max_length=2000)]
        ),
        inspect.Parameter("limit", keyword, default=100, annotation=Annotated[QueryInt, Query(ge=1, le=1000)]),
        inspect.Parameter("min_position", keyword, default=None, annotation=MinPosition),
        *(
            inspect.Parameter(
                c.name, keyword, default=None,
                annotation=Annotated[query_type(c) | None, Query(description=f"only rows with this {c.name}")],
            )
            for c in filterable
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
                f"{AT_LEAST}{c.name}", keyword, default=None,
                annotation=Annotated[query_type(c) | None, Query(description=f"only rows with at least this {c.name}")],
            )
            for c in bounded
        ),
    ]  # fmt: skip
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
