"""A journey's status (its `journey_status` row), its history from the log, and its identity from the vault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.deps import ArchivesDep, Caller, JourneyId, LedgerDep, MinPosition, ReadsDep, allow, caller
from hajj_ledger.api.problems import ProblemError, not_found
from hajj_ledger.api.reads import answer
from hajj_ledger.api.schemas import EventPublic, HistoryPublic, IdentityPublic, utc
from hajj_ledger.audit.reads import event_json
from hajj_ledger.domain.access import HISTORY_READERS, IDENTITY_READERS, VIEW_READERS
from hajj_ledger.domain.catalogue import SCOPE
from hajj_ledger.domain.errors import NotFoundError
from hajj_ledger.identities import identity_of
from hajj_ledger.ledger import JourneyLedger

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(caller)])


def journey_not_found(journey_id: UUID) -> ProblemError:
    return not_found(f"journey {journey_id} not found")


def check_scope(agency: Agency, owners: Mapping[str, Any], journey_id: UUID) -> None:
    """A scoped role sees only its own journeys; others' are, for it, not there at all."""
    if agency.role in SCOPE and owners.get(SCOPE[agency.role][0]) != agency.agency_id:
        raise journey_not_found(journey_id)


@router.get(
    "/{journey_id}", openapi_extra=allow(VIEW_READERS["journey_status"]), summary="A journey's status",
    response_model=dict[str, Any],
)  # fmt: skip
async def status(
    journey_id: JourneyId, agency: Caller, reads: ReadsDep, archives: ArchivesDep, min_position: MinPosition = None
) -> Response:
    row = await reads.journey(journey_id, min_position, agency)
    if row is None:  # a journey of a closed season, or none
        archived = await run_in_threadpool(archives.holding, journey_id)
        row = None if archived is None else await run_in_threadpool(archived.journey, journey_id)
    if row is None:
        raise journey_not_found(journey_id)
    check_scope(agency, row, journey_id)
    return answer(utc(row))


@router.get("/{journey_id}/history", openapi_extra=allow(HISTORY_READERS), summary="Every event of a journey")
def history(journey_id: JourneyId, agency: Caller, reads: ReadsDep, archives: ArchivesDep) -> HistoryPublic:
    def read(ledger: JourneyLedger) -> list[Any]:
        check_scope(agency, vars(ledger.journey(journey_id)), journey_id)
        return ledger.history(journey_id)

    try:
        events = reads.from_log(read)  # a standby's log, when there is one
    except NotFoundError:
        archived = archives.holding(journey_id)  # a journey of a closed season: its archive's log
        if archived is None:
            raise journey_not_found(journey_id) from None
        events = read(archived.ledger)
    return HistoryPublic(journey_id=journey_id, events=[EventPublic(**event_json(e)) for e in events])


@router.get("/{journey_id}/identity", openapi_extra=allow(IDENTITY_READERS), summary="Who the pilgrim is")
def identity(journey_id: JourneyId, agency: Caller, ledger: LedgerDep) -> IdentityPublic:
    try:
        check_scope(agency, vars(ledger.journey(journey_id)), journey_id)
    except NotFoundError:
        raise journey_not_found(journey_id) from None
    person = identity_of(ledger, journey_id, agency.actor)
    return IdentityPublic(journey_id=journey_id, **person.model_dump())
