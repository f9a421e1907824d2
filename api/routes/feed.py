"""`GET /v1/feed`: the change feed, as Server-Sent Events; each agency is told of the events FEED_EVENTS gives its
role, a scoped role of its own journeys only (the hub: api/feed.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from sqlalchemy.engine import Engine
from sse_starlette import EventSourceResponse

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import (
    Caller,
    FeedDep,
    Position,
    ReadModelsDep,
    SeasonQuery,
    allow,
    caller,
    season_or_current,
)
from hajj_ledger.api.problems import invalid
from hajj_ledger.api.reads import beyond_head
from hajj_ledger.domain.access import FEED_EVENTS, FEED_READERS
from hajj_ledger.domain.catalogue import SCOPE, STEPS
from hajj_ledger.projections.journey_status import latest_position
from hajj_ledger.projections.trail_index import latest_positions

router = APIRouter(prefix="/v1", tags=["feed"], dependencies=[Depends(caller)])

DESCRIPTION = """Each event the caller may be told of, as it is recorded, in log order: a mission of its own
journeys' events, a company of those contracted to it (from the contract on), the car syndicate of trips and the
transport steps, the Ministry of Health of health events, the ministry and auditors of everything (`FEED_EVENTS` in
the catalogue). Each message has the event's log position as its `id`, its name as its `event` and, as `data`, the
event as the audit trail gives it (both clocks, who recorded it, its fields; no personal data).

Resume after a disconnect with the `Last-Event-ID` header (a browser's EventSource sends it by itself) or `after`:
the events after that position, none missed and none repeated; a position past the ledger's head is refused (422).
Without either, the stream starts at the present, or with `backlog`, with the caller's latest events, that many (as
many as the last 20,000 positions of the log hold): what a page opened now lists. `event` takes only events the
caller's role is told of (422 names them). The stream is of one season: the events of the journeys, offers and
contracts of `season` (by default the season current when the stream opens), and those of trips and buildings,
which are of no season. The stream opens with a comment line, sent at once, and a comment line is sent while
nothing happens (every 15 s by default).
A client that falls behind by more than its buffer (2,000 events by default) has its stream ended after the last
event it was sent: resume from that id. Once the caller's key is revoked, the stream ends
within seconds with a `revoked` event (its `data`: `{"reason": ...}`)."""


def _position(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) < 2**63):
        reason = "an event's id (a log position): a whole number from 0 to 9223372036854775807"
        raise invalid(f"{name}: {reason}", [{"path": f"header.{name}", "reason": reason}])
    return int(text)


@router.get(
    "/feed", openapi_extra=allow(FEED_READERS), summary="The change feed: the caller's events as they are recorded",
    description=DESCRIPTION, response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "a stream of events, without end"}},
)  # fmt: skip
async def feed(
    agency: Caller,
    hub: FeedDep,
    engine: ReadModelsDep,
    after: Annotated[Position | None, Query(description="start after this position (an event's id)")] = None,
    season: SeasonQuery = None,
    backlog: Annotated[
        int | None, Query(ge=1, le=1000, description="without `after`: open with the caller's latest events, this many")
    ] = None,
    event: Annotated[
        list[str] | None, Query(max_length=64, description="only events of these types; repeat for several")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=20, description="the id of the last event received: resume after it")
    ] = None,
) -> EventSourceResponse:
    unknown = sorted(set(event or ()) - set(STEPS))
    if unknown:
        raise invalid(
            f"event: no event {', '.join(unknown)}; known: {', '.join(STEPS)}",
            [{"path": "query.event", "reason": f"unknown event {name}"} for name in unknown],
        )
    told = FEED_EVENTS[agency.role]
    untold = sorted(set(event or ()) - told)
    if untold:
        raise invalid(
            f"event: role {agency.role} is never told of {', '.join(untold)}; it may follow: {', '.join(sorted(told))}",
            [{"path": "query.event", "reason": f"role {agency.role} is never told of {name}"} for name in untold],
        )
    start = _position("last-event-id", last_event_id) if last_event_id is not None else after
    if start is not None and start > (head := await asyncio.to_thread(hub.ledger.head)):
        raise beyond_head(start, head, "header.last-event-id" if last_event_id is not None else "query.after")
    season = await season_or_current(engine, season)
    events = frozenset(event) if event else None
    if start is None and backlog is not None:
        latest = await asyncio.to_thread(_latest_of_own_journeys, engine, agency, season)
        start = await asyncio.to_thread(hub.recent, agency, events, season, backlog, latest)
        if agency.role not in SCOPE:  # told of every event of its types: where the last `backlog` of them begin
            indexed = await asyncio.to_thread(_latest_of_types, engine, events or told, backlog)
            start = min(start, indexed[-1] - 1) if indexed else start
    stream = hub.stream(agency, start, events, season)
    return EventSourceResponse(stream, ping=hub.heartbeat, sep="\r\n")


def _latest_of_own_journeys(engine: Engine, agency: Agency, season: int | None) -> int | None:
    """For an agency scoped to its journeys (a mission, a company), the position of their last event."""
    if agency.role not in SCOPE:
        return None
    with engine.connect() as connection:
        return latest_position(connection, SCOPE[agency.role][0], agency.agency_id, season)


def _latest_of_types(engine: Engine, events: frozenset[str], count: int) -> list[int]:
    """The positions of the last `count` events of these types (trail_index), newest first: for a role told of
    every one of them, whose few (a hospital's admissions) may be spread over much more than the pages read."""
    with engine.connect() as connection:
        return latest_positions(connection, events, count)
