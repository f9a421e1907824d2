"""The ministry's commands for a season: opening it with its calendar, closing it once its journeys are over,
archiving and restoring it, and erasing its archived journeys' identities."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StrictInt, StringConstraints, model_validator

from hajj_ledger.domain.command_base import Code, CommandBase, SeasonCommand, SeasonNumber
from hajj_ledger.domain.vocabulary import Day


class OpenSeason(CommandBase):
    """A season opened by the ministry with its calendar, days in Makkah: each day not given is worked out from the
    Hijri year by the Umm al-Qura calendar (docs/seasons.md says how)."""

    event: Literal["SeasonOpened"] = "SeasonOpened"
    season: SeasonNumber
    registration_from: Day | None = Field(default=None, description="default: 8 Dhu al-Hijjah of the year before")
    registration_until: Day | None = Field(default=None, description="default: the last day of Dhu al-Qadah")
    arrivals_from: Day | None = Field(default=None, description="default: 33 days before 6 Dhu al-Hijjah")
    arrivals_until: Day | None = Field(default=None, description="default: 7 Dhu al-Hijjah")
    hajj_from: Day | None = Field(default=None, description="8 Dhu al-Hijjah, the first of the six days of the Hajj")
    departures_until: Day | None = Field(default=None, description="default: 15 Muharram of the next year")


class BeginSeasonClosing(SeasonCommand):
    """Closing begun: from then on no step of the season's journeys is accepted."""

    event: Literal["SeasonClosing"] = "SeasonClosing"


class CloseSeason(SeasonCommand):
    """The season's archive written and verified."""

    event: Literal["SeasonClosed"] = "SeasonClosed"
    archive_url: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]
    manifest_digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the manifest")]
    first_position: StrictInt = Field(ge=1, description="of the season's first event in the log")
    last_position: StrictInt = Field(ge=1, description="of its last")
    event_count: StrictInt = Field(ge=0)

    @model_validator(mode="after")
    def _positions_in_order(self) -> CloseSeason:
        if self.last_position < self.first_position:
            raise ValueError("last_position: must not be before first_position")
        if self.event_count > self.last_position - self.first_position + 1:
            raise ValueError("event_count: more events than positions from first_position to last_position")
        return self


class ArchiveSeason(SeasonCommand):
    """Taken out of the hot store."""

    event: Literal["SeasonArchived"] = "SeasonArchived"


class RestoreSeason(SeasonCommand):
    """Brought back from the archive into the hot store."""

    event: Literal["SeasonRestored"] = "SeasonRestored"


class EraseSeasonIdentities(SeasonCommand):
    """The identities of journeys of an archived season erased from the vault (retention, or a pilgrim's right):
    their journeys' histories are in the season's archive, so the erasure is recorded on the season."""

    event: Literal["SeasonIdentitiesErased"] = "SeasonIdentitiesErased"
    journey_ids: list[UUID] = Field(min_length=1, max_length=1000, description="journeys of the archived season")
    reason: Code
