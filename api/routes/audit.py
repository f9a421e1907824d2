"""`/v1/audit`: the trail of events with both clocks and who recorded them; a journey as of a past moment; the
`journey_status` and `season_funnel` views as of a past position. For the roles in AUDIT_READERS.

A closed season answers from its archive (api/archives.py) exactly as it did from the hot store: the trail of a
season named, or of one of its journeys or trips; one of its journeys as of a moment; its views as of a position
(a position after its last event is, for the season, its last)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from hajj_ledger.api.archives import ClosedSeasons
from hajj_ledger.api.deps import (
    AgencyId,
    ArchivesDep,
    Caller,
    EventName,
    JourneyId,
    Limit,
    PastViewsDep,
    Position,
    ReadModelsDep,
    ReadsDep,
    Season,
    allow,
    caller,
    current_season_of,
)
from hajj_ledger.api.problems import ProblemError, invalid
from hajj_ledger.api.routes.views import Cursor, filters, keyed_page, page
from hajj_ledger.api.schemas import EntryPublic, PagePublic, PastJourneyPublic, RefusedPublic, TrailPublic
from hajj_ledger.audit import as_of
from hajj_ledger.audit import reads as audit
from hajj_ledger.audit.as_of import AsOf
from hajj_ledger.audit.reads import Entry, TrailPage, TrailQuery, within_head
from hajj_ledger.domain.access import AUDIT_READERS
from hajj_ledger.domain.errors import NotFoundError, ValidationError
from hajj_ledger.domain.vocabulary import Moment
from hajj_ledger.ledger import JourneyLedger
from hajj_ledger.projections import projection
from hajj_ledger.projections.read_season import SEASON
from hajj_ledger.projections.replay import PastViews

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(caller)])
# The trail's cursor is the position to carry on after: at most 18 digits, so that the one after it is a BIGINT too.
TrailCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="a page's `next_cursor`")]


def _invalid(error: ValidationError) -> ProblemError:
    """The ledger names the field; here it is a query parameter."""
    errors = [{"path": f"query.{field}", "reason": reason} for field, reason in error.problems]
    return invalid(error.message, errors)


def _entry(entry: Entry) -> dict[str, Any]:
    return dataclasses.asdict(entry)


@router.get(
    "/events", openapi_extra=allow(AUDIT_READERS), summary="The audit trail: events with both clocks, in log order"
)
def events(
    reads: ReadsDep,
    archives: ArchivesDep,
    aggregate_id: Annotated[UUID | None, Query(description="a journey's or a trip's events only")] = None,
    agency_id: Annotated[AgencyId | None, Query(description="recorded by this agency")] = None,
    event: Annotated[EventName | None, Query(description="of this type, e.g. VisaIssued")] = None,
    recorded_from: Annotated[Moment | None, Query(description="recorded at or after")] = None,
    recorded_until: Annotated[Moment | None, Query(description="recorded at or before")] = None,
    from_position: Annotated[Position | None, Query(description="at or after this position")] = None,
    until_position: Annotated[Position | None, Query(description="at or before this position")] = None,
    season: Annotated[
        Season | None, Query(description="of this season's journeys, trips, offers and contracts (a closed one's too)")
    ] = None,
    cursor: TrailCursor = None,
    limit: Limit = 100,
) -> TrailPublic:
    try:
        query = TrailQuery(
            aggregate_id, agency_id, event, recorded_from, recorded_until, from_position, until_position, season
        )
        start = 0 if cursor is None else int(cursor)

        def read(ledger: JourneyLedger) -> TrailPage:
            return audit.trail(ledger, query, start, limit)

        archived = archives.of(season)
        if archived is not None:  # a closed season's log is its archive's
            trail = read(archived.ledger)
        else:
            try:
                trail = reads.from_log(read)  # a standby's log, if any
            except NotFoundError:
                archived = None if aggregate_id is None else archives.holding(aggregate_id)
                if archived is None:
                    raise
                trail = read(archived.ledger)
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
    journey_id: JourneyId,
    reads: ReadsDep,
    archives: ArchivesDep,
    position: Annotated[Position | None, Query(description="what the ledger knew at this position")] = None,
    recorded_at: Annotated[Moment | None, Query(description="what the ledger had recorded by then")] = None,
    occurred_at: Annotated[
        Moment | None,
        Query(
            description="what had happened by then, by agencies' clocks",
            openapi_examples={"story": {"summary": "the story's pilgrim, housed", "value": "2025-05-11T00:00:00Z"}},
        ),
    ] = None,
) -> PastJourneyPublic:
    try:
        at = AsOf(position, recorded_at, occurred_at)
        try:
            past = reads.from_log(lambda ledger: as_of.journey_as_of(ledger, journey_id, at))  # a standby's, if any
        except NotFoundError:
            archived = archives.holding(journey_id)  # a journey of a closed season: its archive's log
            if archived is None:
                raise
            if at.position is not None:  # of the whole log, whose head the archive's last position is not
                within_head(reads.ledger, at.position, "position")
            past = as_of.journey_as_of(archived.ledger, journey_id, archived.as_of(at))
    except ValidationError as error:
        raise _invalid(error) from None
    refused = [RefusedPublic(**_entry(e), reason=reason) for e, reason in past.refused]
    return PastJourneyPublic(journey=past.state(), position=past.position, events=past.events, refused=refused)


def _add_view(name: str) -> None:
    model = projection(name).models[0]

    def view_as_of(
        agency: Any,
        past: PastViews,
        archives: ClosedSeasons,
        engine: Any,
        position: int,
        cursor: str | None,
        limit: int,
        **filtered: Any,
    ) -> PagePublic:
        if filtered.get(SEASON) is None:  # one season's rows, as the serving view gives them
            filtered[SEASON] = current_season_of(engine).read()
        asked = position
        try:
            archived = archives.of(filtered[SEASON])
            if archived is not None:  # a closed season's views as of a position: from its archive's log
                within_head(past.ledger, position, "position")
                past, position = archived.past, archived.within(position)
            if name == "journey_status":  # a page from its journeys' own events

                def read(after: list[Any] | None, count: int) -> list[dict[str, Any]]:
                    return past.journey_status(position, after[0] if after else None, count, filtered)

                rows, next_cursor = keyed_page(model, cursor, limit, read)
            else:
                with past.at(position) as connection:
                    rows, next_cursor = page(connection, model, agency, filtered, cursor, limit)
        except ValidationError as error:
            raise _invalid(error) from None
        return PagePublic(items=rows, next_cursor=next_cursor, position=asked, season=filtered[SEASON])

    keyword = inspect.Parameter.KEYWORD_ONLY
    as_of = Annotated[
        Position, Query(description="as of this position (at most the head)", openapi_examples={"first": {"value": 1}})
    ]
    view_as_of.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("agency", keyword, annotation=Caller),
            inspect.Parameter("past", keyword, annotation=PastViewsDep),
            inspect.Parameter("archives", keyword, annotation=ArchivesDep),
            inspect.Parameter("engine", keyword, annotation=ReadModelsDep),
            inspect.Parameter("position", keyword, annotation=as_of),
            inspect.Parameter("cursor", keyword, default=None, annotation=Cursor),
            inspect.Parameter("limit", keyword, default=100, annotation=Limit),
            *filters(model),  # those of the serving view, with the same checks
        ]
    )
    view_as_of.__name__ = f"{name}_as_of"
    router.add_api_route(
        f"/views/{name}", view_as_of, methods=["GET"], response_model=PagePublic, openapi_extra=allow(AUDIT_READERS),
        summary=f"The {name} view as of a past position, made apart from the serving one; filtered and paged as "
        f"`/v1/views/{name}` is",
    )  # fmt: skip


for _name in PastViews.NAMES:
    _add_view(_name)
