"""`GET /v1/seasons`: the seasons the ministry opened, their calendars and stages, and which is the current one."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from hajj_ledger.api.deps import ReadModelsDep, allow, caller
from hajj_ledger.api.schemas import SeasonPublic
from hajj_ledger.domain.access import ROUTE_READERS
from hajj_ledger.projections.seasons import season_rows

router = APIRouter(tags=["overview"], dependencies=[Depends(caller)])


@router.get(
    "/v1/seasons", openapi_extra=allow(ROUTE_READERS["GET /v1/seasons"]), summary="The seasons and their calendars",
    description="Every season the ministry opened, oldest first: its calendar (days in Makkah: registration, "
    "arrivals, the days of the Hajj in both calendars, the last day of departures), its stage (open turns running on "
    "its first arrival day), its archive once closed, and whether it is the current season, the one reads default "
    "to: the season whose window (registration opens .. last day of departures) holds today, the earlier of two.",
)  # fmt: skip
def seasons(engine: ReadModelsDep) -> list[SeasonPublic]:
    with engine.connect() as connection:
        return [SeasonPublic.model_validate(row) for row in season_rows(connection)]
