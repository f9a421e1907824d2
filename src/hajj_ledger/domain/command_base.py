"""What every command carries (its envelope: its id, when it happened, a late correction's reason; the aggregate it
is about), and the types of the commands' fields: codes, labels, places, a pilgrim's identity, each with its bounds
and the reason a bad value is refused (names and documents checked as domain/documents.py checks them)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from hajj_ledger.domain.catalogue import LATE_TOLERANCE
from hajj_ledger.domain.documents import (
    COUNTRIES,
    MAX_AGE_YEARS,
    checked_country,
    checked_date_of_birth,
    checked_passport_number,
)
from hajj_ledger.domain.vocabulary import SEASONS, Day, Moment, Port, Site

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="a short snake_case code")]
AgencyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,63}$")]
FlightNumber = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}[0-9]{1,4}[A-Z]?$")]
PlaceCode = Annotated[str, Field(json_schema_extra={"enum": [*Site, *Port]}, description="a site or a port")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Checked as documents are (domain/documents.py); the schema shows the forms, the checks give the reasons.
Country = Annotated[
    str,
    AfterValidator(checked_country),
    Field(json_schema_extra={"enum": sorted(COUNTRIES)}, description="ISO 3166-1 alpha-3"),
]
PassportNumber = Annotated[
    str,
    AfterValidator(checked_passport_number),
    Field(
        json_schema_extra={"pattern": r"^[A-Z0-9]{5,9}$"},
        description="as the passport's machine-readable zone prints it (ICAO 9303): 5 to 9 letters A-Z and digits, "
        "at least one a digit; spaces are dropped and letters upper-cased",
    ),
]


class Identity(BaseModel):
    """Who a pilgrim is, as a registration carries it and the identity vault keeps it, never in an event: names as
    written (Arabic script, and the passport's Latin form, verbatim); the passport's number, countries and the date
    of birth checked as documents are."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use: starts faster

    name_arabic: Name
    name_latin: Name
    passport_number: PassportNumber
    passport_country: Country
    nationality: Country
    date_of_birth: Annotated[
        Day, AfterValidator(checked_date_of_birth), Field(description=f"in the past, at most {MAX_AGE_YEARS} years ago")
    ]
    gender: Literal["female", "male"]


SeasonNumber = Annotated[
    StrictInt, Field(ge=SEASONS.start, le=SEASONS.stop - 1, description="the Hijri year of the season")
]

Places = Annotated[StrictInt, Field(gt=0, le=1_000_000)]
PriceSar = Annotated[StrictInt, Field(ge=0, le=10_000_000, description="whole riyals per pilgrim")]
BuildingIds = Annotated[tuple[UUID, ...], Field(max_length=500)]


class CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    command_id: UUID = Field(description="chosen by the caller; repeating it repeats the first outcome")
    correlation_id: UUID | None = None
    occurred_at: Moment = Field(description="when it happened, by the recording agency's account")
    late_correction: Code | None = Field(
        default=None,
        description=f"why a step is reported more than {LATE_TOLERANCE} (h:mm:ss) before the journey's latest one "
        "(e.g. device_offline): recorded in the event; for the agencies in the field",
    )

    target: ClassVar[str] = ""  # the field naming the aggregate it is about

    def arguments(self) -> dict[str, Any]:
        """The event's own fields: everything but the envelope and the target."""
        return {
            name: _utc(getattr(self, name))
            for name in type(self).model_fields
            if name not in _ENVELOPE and name != self.target
        }

    def fingerprint(self) -> str:
        """A digest of the command, to tell a retry from a different command reusing an id. Identity is left
        out: receipts must not hold a hash of who the pilgrim is."""
        # Excluding costs pydantic half as much again as the dump: asked only of the commands that carry one.
        exclude = _IDENTITY if "identity" in type(self).model_fields else None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


_ENVELOPE = {"event", "command_id", "correlation_id", "occurred_at", "late_correction"}
_IDENTITY = {"identity"}


class JourneyCommand(CommandBase):
    target = "journey_id"
    journey_id: UUID


class TripCommand(CommandBase):
    target = "trip_id"
    trip_id: UUID


class OfferCommand(CommandBase):
    target = "offer_id"
    offer_id: UUID


class ContractCommand(CommandBase):
    target = "contract_id"
    contract_id: UUID


class BuildingCommand(CommandBase):
    target = "building_id"
    building_id: UUID


class SeasonCommand(CommandBase):
    """A step of a season opened before: its target is the season's number (the aggregate's id follows from it)."""

    target = "season"
    season: SeasonNumber
