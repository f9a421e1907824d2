"""`POST /v1/commands:batch`: up to a thousand commands in one request, one outcome each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from hajj_ledger.api.deps import Caller, IdempotencyKey, LedgerDep, allow, caller
from hajj_ledger.api.examples import BATCH
from hajj_ledger.api.recording import record_batch_in_time
from hajj_ledger.api.schemas import BatchCreate, BatchPublic
from hajj_ledger.domain.catalogue import RECORDERS

router = APIRouter(prefix="/v1", tags=["recording"], dependencies=[Depends(caller)])


@router.post(
    "/commands:batch", openapi_extra=allow(RECORDERS), summary="Record up to 1,000 commands", response_model=BatchPublic
)
async def batch(
    body: Annotated[BatchCreate, Body(openapi_examples={"story": {"value": BATCH}})],
    agency: Caller,
    ledger: LedgerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Each command as its own endpoint takes it, plus its `event` and its `journey_id` or `trip_id`. They are
    recorded together; a refused or malformed one gets its own problem and never fails the others. Answered
    within a few seconds, as a single command is: past that, 503 (nothing recorded, or the outcome unknown).

    **Who may call it:** any role that records a step; each command is checked as its own endpoint checks it (the
    catalogue's roles, stages and needs), so a command the caller may not record gets its own 403 in `results`.
    **Refused as a whole:** 401 without a valid key; 403 for a role that records nothing; 422 for a body that is not
    a list of 1 to 1,000 objects."""
    return await record_batch_in_time(ledger, agency, body.commands, idempotency_key)
