"""`GET /v1/views/<name>`: every read model, filtered, in pages, scoped to the caller; one endpoint per projection,
generated from the projection list and its columns.

Pages follow the view's key (a keyset cursor): a page never skips nor repeats a row that exists throughout,
however many writes land between pages."""

import base64
import inspect
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import Caller, ServicesDep, allow, caller
from hajj_ledger.api.problems import ProblemError
from hajj_ledger.api.reads import answer, page_parameters
from hajj_ledger.api.routes.journeys import MinPosition
from hajj_ledger.api.schemas import PagePublic, QueryInt, utc
from hajj_ledger.catalogue import VIEW_READERS
from hajj_ledger.projections import PROJECTIONS
from hajj_ledger.projections.framework import Model
from hajj_ledger.vocabulary import Day, Moment

FILTERABLE = (str, int, bool, UUID, date, datetime)


def _cursor(row: dict[str, Any], key: tuple[str, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(row[k]) for k in key])).decode().rstrip("=")


def _after(cursor: str, view: sa.Table, key: tuple[str, ...]) -> list[Any]:
    try:
        texts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(texts, list) or len(texts) != len(key):
            raise ValueError("wrong shape")
        return [_typed(view.c[k].type.python_type, t) for k, t in zip(key, texts, strict=True)]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ProblemError(
            422, "invalid", "Invalid input", "cursor: not one this view gave", errors=[{"path": "query.cursor"}]
        ) from None


def _typed(kind: type, text: str) -> Any:
    if kind is UUID:
        return UUID(text)
    if kind is date:
        return date.fromisoformat(text)
    if kind is datetime:
        return datetime.fromisoformat(text)
    return kind(text)


def page(
    connection: Any, model: Model, agency: Agency, filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a view on a SQLAlchemy connection (the auditors' past views)."""
    after = None if cursor is None else _after(cursor, model.view(), model.key)
    query, parameters = page_parameters(model, agency, filters, after, limit)
    return _cut([dict(r) for r in connection.execute(query, parameters).mappings()], model, limit)


def _cut(rows: list[dict[str, Any]], model: Model, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The page (the query read one row more than asked for) and the next page's cursor, if there is one."""
    more = len(rows) > limit
    rows = [utc(r) for r in rows[:limit]]
    return rows, _cursor(rows[-1], model.key) if more else None


def _query_type(column: sa.Column[Any]) -> Any:
    """A filter's type; times and dates written out, never a number read as seconds since 1970."""
    kind = column.type.python_type
    return {datetime: Moment, date: Day, int: QueryInt}.get(kind, kind)


def add_view(router: APIRouter, name: str, model: Model) -> None:
    view = model.view()
    filterable = [c for c in view.c if c.type.python_type in FILTERABLE and c.name != "position"]

    async def handler(agency: Any, found: Any, cursor: Any, limit: Any, min_position: Any, **filters: Any) -> Response:
        after = None if cursor is None else _after(cursor, view, model.key)
        rows, reached = await found.reads.page(name, model, agency, filters, after, limit, min_position)
        items, next_cursor = _cut(rows, model, limit)
        return answer({"items": items, "next_cursor": next_cursor, "position": reached})

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("agency", keyword, annotation=Caller),
        inspect.Parameter("found", keyword, annotation=ServicesDep),
        inspect.Parameter(
            "cursor", keyword, default=None, annotation=Annotated[str | None, Query(max_length=2000)]
        ),
        inspect.Parameter("limit", keyword, default=100, annotation=Annotated[QueryInt, Query(ge=1, le=1000)]),
        inspect.Parameter("min_position", keyword, default=None, annotation=MinPosition),
        *(
            inspect.Parameter(
                c.name, keyword, default=None,
                annotation=Annotated[_query_type(c) | None, Query(description=f"only rows with this {c.name}")],
            )
            for c in filterable
        ),
    ]  # fmt: skip
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = f"list_{name}"
    router.add_api_route(
        f"/views/{name}", handler, methods=["GET"], response_model=PagePublic, summary=f"The {name} view",
        openapi_extra=allow(VIEW_READERS[name]), tags=["views"],
    )  # fmt: skip


def router() -> APIRouter:
    views = APIRouter(prefix="/v1", dependencies=[Depends(caller)])
    for projection in PROJECTIONS:
        add_view(views, projection.name, projection.models[0])
    return views
