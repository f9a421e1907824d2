"""`/v1/audit`: the trail of events with both clocks and who recorded them; a journey as of a past moment; the
`journey_status` and `season_funnel` views as of a past position. For the roles in AUDIT_READERS."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from hajj_ledger.api.deps import Caller, PastViewsDep, ReadsDep, allow, caller
from hajj_ledger.api.problems import ProblemError, invalid
from hajj_ledger.api.routes.views import keyed_page, page
from hajj_ledger.api.schemas import EntryPublic, PagePublic, PastJourneyPublic, QueryInt, RefusedPublic, TrailPublic
from hajj_ledger.audit import reads as audit
from hajj_ledger.audit.reads import MAX_LIMIT, AsOf, Entry, TrailQuery
from hajj_ledger.domain.access import AUDIT_READERS
from hajj_ledger.domain.errors import ValidationError
from hajj_ledger.domain.vocabulary import Moment
from hajj_ledger.projections import projection
from hajj_ledger.projections.replay import PastViews

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(caller)])
Position = Annotated[QueryInt | None, Query(ge=0)]
Limit = Annotated[QueryInt, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=20, description="a page's `next_cursor`")]


def _invalid(error: ValidationError) -> ProblemError:
    """The ledger names the field; here it is a query parameter."""
    errors = [{"path": f"query.{field}", "reason": reason} for field, reason in error.problems]
    return invalid(error.message, errors)


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise invalid("cursor: not one this trail gave", [{"path": "query.cursor"}])
    return int(cursor)


def _entry(entry: Entry) -> dict[str, Any]:
    return dataclasses.asdict(entry)


@router.get(
    "/events", openapi_extra=allow(AUDIT_READERS), summary="The audit trail: events with both clocks, in log order"
)
def events(
    reads: ReadsDep,
    aggregate_id: Annotated[UUID | None, Query(description="a journey's or a trip's events only")] = None,
    agency_id: Annotated[str | None, Query(max_length=64, description="recorded by this agency")] = None,
    event: Annotated[str | None, Query(max_length=64, description="of this type, e.g. VisaIssued")] = None,
    recorded_from: Annotated[Moment | None, Query(description="recorded at or after")] = None,
    recorded_until: Annotated[Moment | None, Query(description="recorded at or before")] = None,
    from_position: Position = None,
    until_position: Position = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> TrailPublic:
    try:
        query = TrailQuery(aggregate_id, agency_id, event, recorded_from, recorded_until, from_position, until_position)
        start = _after(cursor)
        # a standby's log, if any
        trail = reads.from_log(lambda ledger: audit.trail(ledger, query, start, limit))
    except ValidationError as error:
        raise _invalid(error) from None
    after = trail.next_after
    items = [EntryPublic(**_entry(e)) for e in trail.entries]
    return TrailPublic(items=items, next_cursor=None if after is None else str(after))


@router.get(
    "/journeys/{journey_id}",
    openapi_extra=allow(AUDIT_READERS),
    summary="A journey as of a position or a recorded time (what the ledger knew), or a business time (what had "
    "happened); give exactly one",
)
def journey_as_of(
    journey_id: UUID,
    reads: ReadsDep,
    position: Position = None,
    recorded_at: Annotated[Moment | None, Query(description="what the ledger had recorded by then")] = None,
    occurred_at: Annotated[Moment | None, Query(description="what had happened by then, by agencies' clocks")] = None,
) -> PastJourneyPublic:
    try:
        at = AsOf(position, recorded_at, occurred_at)
        past = reads.from_log(lambda ledger: audit.journey_as_of(ledger, journey_id, at))  # a standby's, if any
    except ValidationError as error:
        raise _invalid(error) from None
    refused = [RefusedPublic(**_entry(e), reason=reason) for e, reason in past.refused]
    return PastJourneyPublic(journey=past.state(), position=past.position, events=past.events, refused=refused)


def _add_view(name: str) -> None:
    model = projection(name).models[0]

    def view_as_of(
        agency: Caller,
        past: PastViewsDep,
        position: Annotated[QueryInt, Query(ge=0, description="as of this position (at most the head)")],
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Limit = 100,
    ) -> PagePublic:
        try:
            if name == "journey_status":  # a page from its journeys' own events

                def read(after: list[Any] | None, count: int) -> list[dict[str, Any]]:
                    return past.journey_status(position, after[0] if after else None, count)

                rows, next_cursor = keyed_page(model, cursor, limit, read)
            else:
                with past.at(position) as connection:
                    rows, next_cursor = page(connection, model, agency, {}, cursor, limit)
        except ValidationError as error:
            raise _invalid(error) from None
        return PagePublic(items=rows, next_cursor=next_cursor, position=position)

    view_as_of.__name__ = f"{name}_as_of"
    router.add_api_route(
        f"/views/{name}", view_as_of, methods=["GET"], response_model=PagePublic, openapi_extra=allow(AUDIT_READERS),
        summary=f"The {name} view as of a past position, made apart from the serving one",
    )  # fmt: skip


for _name in PastViews.NAMES:
    _add_view(_name)
