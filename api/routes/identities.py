"""Finding journeys by who the pilgrim is: by passport (blind index), or by name within a mission's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from hajj_ledger.api.deps import Caller, LedgerDep, Limit, Text, allow, caller
from hajj_ledger.api.examples import IDENTITY
from hajj_ledger.api.schemas import FoundPublic
from hajj_ledger.domain.access import IDENTITY_READERS, NAME_SEARCHERS
from hajj_ledger.identities import find_by_name, find_by_passport

router = APIRouter(prefix="/v1/identities", tags=["identities"], dependencies=[Depends(caller)])


@router.get("/by-passport", openapi_extra=allow(IDENTITY_READERS), summary="Journeys of a passport")
def by_passport(
    agency: Caller,
    ledger: LedgerDep,
    number: Annotated[
        str, Query(pattern=r"^[A-Za-z0-9 ]{5,24}$", openapi_examples={"story": {"value": IDENTITY["passport_number"]}})
    ],
    country: Annotated[
        str,
        Query(
            pattern=r"^[A-Za-z]{3}$",
            description="issuing country, ISO 3166-1 alpha-3",
            openapi_examples={"story": {"value": IDENTITY["passport_country"]}},
        ),
    ],
) -> FoundPublic:
    return FoundPublic(journey_ids=find_by_passport(ledger, number, country, agency.actor))


@router.get("/by-name", openapi_extra=allow(NAME_SEARCHERS), summary="A mission's pilgrims by name, any spelling")
def by_name(
    agency: Caller,
    ledger: LedgerDep,
    name: Annotated[
        Text,
        Query(
            min_length=1,
            max_length=200,
            description="Arabic script or any Latin spelling",
            openapi_examples={"story": {"value": IDENTITY["name_latin"]}},
        ),
    ],
    limit: Limit = 100,
) -> FoundPublic:
    return FoundPublic(journey_ids=find_by_name(ledger, name, agency.actor, limit))
