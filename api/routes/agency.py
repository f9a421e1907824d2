"""`GET /v1/agency`: who the caller is, as its key says: its agency, its role and its scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from hajj_ledger.api.deps import Caller, allow, caller
from hajj_ledger.api.schemas import AgencyPublic
from hajj_ledger.domain.access import EVERY_AGENCY
from hajj_ledger.domain.catalogue import SCOPE

router = APIRouter(prefix="/v1", tags=["overview"], dependencies=[Depends(caller)])


@router.get(
    "/agency", openapi_extra=allow(EVERY_AGENCY), summary="The caller's agency",
    description="The agency the key belongs to: its id, its name, its role, and for a role that sees only its own "
    "journeys, contracts, offers and buildings, the column its rows are found by (SCOPE in the catalogue).",
)  # fmt: skip
def agency(caller: Caller) -> AgencyPublic:
    scope = SCOPE.get(caller.role)
    return AgencyPublic(
        agency_id=caller.agency_id, name=caller.name, role=caller.role, scope=scope[0] if scope else None
    )
