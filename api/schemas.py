"""What the API takes and gives: `XCreate` in, `XPublic` out."""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from hajj_ledger.domain.command_base import CommandBase
from hajj_ledger.domain.vocabulary import USUAL_CODES, Role, SeasonStage

MAX_BATCH = 1000


def _whole_number(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError("expected a whole number")
    return value


# "0.0" or "1e3" is refused, not rounded; and a value no database integer holds is refused, not a 500.
QueryInt = Annotated[int, BeforeValidator(_whole_number), Field(ge=-(2**63), le=2**63 - 1)]
HIJRI_YEAR = Field(ge=1, le=9999)  # what a season is, asked for in a query (`deps.Season`) or a body


class OutcomePublic(BaseModel):
    command_id: UUID
    event: str
    aggregate_id: UUID = Field(description="the journey or trip")
    position: int = Field(description="the ledger position of the command's last event: pass it as min_position")
    events: list[str]
    repeated: bool = Field(description="true when this command was recorded before: nothing new was stored")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    commands: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="commands as `POST /v1/journeys/...` takes them, each "
        "with its `event` and its journey_id or trip_id",
    )


class BatchResultPublic(BaseModel):
    index: int
    status: int = Field(description="what the command alone would have answered: 201, 200 (repeated), 4xx")
    outcome: OutcomePublic | None = None
    problem: dict[str, Any] | None = None


class BatchPublic(BaseModel):
    results: list[BatchResultPublic]


class PagePublic(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
    position: int = Field(description="the lowest position the views served here had reached")
    season: int | None = Field(
        default=None, description="the season the rows are of, for a view by season (null: none in the views yet)"
    )


class EventPublic(BaseModel):
    version: int
    event: str
    occurred_at: datetime = Field(description="when it happened, by the recording agency's account")
    recorded_at: datetime = Field(description="when the ledger recorded it")
    agency_id: str
    role: Role
    command_id: UUID
    correlation_id: UUID | None
    late_correction: str | None = Field(None, description="why it was reported late, when a late correction")
    details: dict[str, Any]


class HistoryPublic(BaseModel):
    journey_id: UUID
    events: list[EventPublic]


class EntryPublic(BaseModel):
    """One event of the audit trail."""

    position: int = Field(description="its place in the ledger's log (notification id)")
    aggregate: str = Field(description="journey or trip")
    aggregate_id: UUID
    version: int
    event: str
    occurred_at: datetime = Field(description="when it happened, by the recording agency's account")
    recorded_at: datetime = Field(description="when the ledger recorded it")
    agency_id: str
    role: Role
    command_id: UUID
    correlation_id: UUID | None
    fields: dict[str, Any] = Field(description="the event's own fields (events carry no personal data)")
    late_correction: str | None = Field(None, description="why it was reported late, when a late correction")


class TrailPublic(BaseModel):
    items: list[EntryPublic]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null when nothing more matches. A page reads a bounded "
        "stretch of the log, so it may hold fewer items than `limit`, even none, and still have a next one"
    )


class RefusedPublic(EntryPublic):
    reason: str = Field(description="why the journey's rules refuse it on the state the earlier events built")


class PastJourneyPublic(BaseModel):
    journey: dict[str, Any] = Field(description="the journey's state then")
    position: int = Field(description="the position of the last event taken into account")
    events: int = Field(description="how many of its events were taken into account")
    refused: list[RefusedPublic] = Field(
        description="as of a business time only: events that had happened by then, left out because the journey's "
        "rules refuse them on the state the others built (an agency's clock puts them before an event they need)"
    )


class IdentityPublic(BaseModel):
    journey_id: UUID
    name_arabic: str
    name_latin: str
    passport_number: str
    passport_country: str
    nationality: str
    date_of_birth: date
    gender: str


class FoundPublic(BaseModel):
    journey_ids: list[UUID]


def slug(event: str) -> str:
    """`VisaIssued` → `visa-issued`: the path segment of a step."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", event).lower()


def create_model_for(command: type[CommandBase]) -> type[BaseModel]:
    """The body of one step's endpoint: the command's fields without its event and target (those are in the path),
    its command_id optional (an Idempotency-Key header, or a fresh id, stands in)."""
    fields: dict[str, Any] = {}
    event = command.model_fields["event"].default
    for name, info in command.model_fields.items():
        if name in ("event", command.target):
            continue
        if name == "command_id":
            fields[name] = (
                UUID | None,
                Field(default=None, description="repeating it repeats the first outcome (or use Idempotency-Key)"),
            )
        else:
            fields[name] = (info.annotation, _with_usual_codes(event, name, info))
    return create_model(f"{event}Create", __config__=ConfigDict(extra="forbid"), __doc__=command.__doc__, **fields)


def _with_usual_codes(event: str, name: str, info: FieldInfo) -> FieldInfo:
    """A field taking a snake_case code, with the codes agencies usually give listed (vocabulary.USUAL_CODES)."""
    usual = USUAL_CODES.get((event, name)) or USUAL_CODES.get(("*", name))
    if usual is None:
        return info
    listed = copy.copy(info)
    listed.description = f"{info.description}; usually one of: {', '.join(usual)} (another code is recorded as given)"
    listed.examples = [usual[0]]
    return listed


def utc(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite gives back the UTC times it stores without their zone: every time the API answers has one."""
    for name, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            row[name] = value.replace(tzinfo=UTC)
    return row


class CheckpointPublic(BaseModel):
    position: int = Field(description="the last position the checkpoint covers")
    head: str = Field(description="the chain's link at that position, hex")
    signed_at: str = Field(description="when it was signed, ISO 8601 UTC, exactly as signed")
    key_id: str
    signature: str = Field(
        description="Ed25519, base64, over the lines 'hajj-ledger checkpoint v1', position, head, signed_at and "
        "key_id, each ended by a newline"
    )


class CheckpointsPublic(BaseModel):
    items: list[CheckpointPublic]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class SigningKeysPublic(BaseModel):
    keys: dict[str, str] = Field(description="key id: Ed25519 public key, raw 32 bytes in base64")


class StoredEventPublic(BaseModel):
    topic: str
    originator_id: str = Field(description="hex")
    originator_version: int
    state: str = Field(description="the stored bytes, base64")


class ProofPublic(BaseModel):
    position: int
    event: StoredEventPublic = Field(description="the event exactly as stored")
    previous_link: str = Field(description="the chain's link before the event, hex")
    following: list[tuple[int, str]] = Field(description="(position, digest hex) of each event up to the checkpoint")
    checkpoint: CheckpointPublic


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: int | None = Field(None, ge=1, le=2**63 - 1, description="the log position; default: the head")
    format: Literal["parquet", "csv"] = "parquet"
    season: Annotated[int, HIJRI_YEAR] | None = Field(
        None, description="the season of the read models' rows (trips and buildings: whole); default: the current one"
    )


class ExportFilePublic(BaseModel):
    name: str
    url: str


class ExportPublic(BaseModel):
    export_id: UUID
    state: Literal["running", "done", "failed"]
    done: int = Field(description="log positions exported so far")
    total: int = Field(description="log positions to export (0 until known)")
    position: int | None = Field(description="the position the export is as of, once done")
    season: int | None = Field(default=None, description="the season the export's read models are of, once done")
    error: str | None
    files: list[ExportFilePublic] = Field(description="once done: the manifest and every file, to download")


class AgencyPublic(BaseModel):
    agency_id: str
    name: str
    role: Role
    scope: str | None = Field(
        description="for a role that reads and records only its own (a mission, a company): the column its rows are "
        "found by (`mission_id`, `company_id`), which holds its agency id; null: the role reads every agency's"
    )


def _stored_utc(value: Any) -> Any:
    """SQLite gives back stored times without their zone: they were stored in UTC."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


class SeasonPublic(BaseModel):
    """A season the ministry opened, with its calendar: days in Makkah, each window's first and last day included."""

    season: int = Field(description="the Hijri year")
    stage: SeasonStage = Field(description="open, running (from its first arrival day), closing, closed, archived")
    current: bool = Field(description="the season reads default to: the one whose window holds today")
    registration_from: date
    registration_until: date
    arrivals_from: date
    arrivals_until: date
    hajj_from: date = Field(description="8 Dhu al-Hijjah")
    hajj_until: date = Field(description="13 Dhu al-Hijjah")
    hajj_days: str = Field(description="the days of the Hajj in the Hijri calendar (Umm al-Qura)")
    departures_until: date = Field(description="the last day of departures")
    opened_at: Annotated[datetime, BeforeValidator(_stored_utc)]
    archive_url: str | None = Field(description="once closed: where its events were archived")
    manifest_digest: str | None = Field(description="once closed: hex SHA-256 of the archive's manifest")
    first_position: int | None
    last_position: int | None
    event_count: int | None


# The views' index and the season at a glance (api/routes/overview.py).


class ColumnPublic(BaseModel):
    name: str
    type: str = Field(description="integer, text, boolean, date, timestamp or uuid")
    filter: bool = Field(description="whether `GET /v1/views/<name>` filters by it")
    at_least: bool = Field(
        default=False, description="whether it also takes `min_<column>`: rows with at least that value (free places)"
    )
    one_of: list[str] | None = Field(
        default=None, description="the only values it holds (a stage, a status); a filter by any other is refused"
    )


class ViewPublic(BaseModel):
    name: str
    description: str
    path: str = Field(description="where it is served")
    key: list[str] = Field(description="the columns that identify a row, in the order pages follow")
    columns: list[ColumnPublic]
    readers: list[str] = Field(description="the roles that may read it (scoped roles see their own rows only)")
    readable: bool = Field(description="whether the caller's role may read it")


class ViewsPublic(BaseModel):
    items: list[ViewPublic]


class StagePublic(BaseModel):
    stage: str
    reached: int = Field(description="journeys of the season that have reached it")
    today: int = Field(description="of those, journeys that reached it on the day")


class StageNowPublic(BaseModel):
    stage: str
    journeys: int = Field(description="journeys of the season at that stage now")


class ArrivalsPublic(BaseModel):
    day: date = Field(description="in Makkah")
    port: str
    mode: str
    arrived: int


class PlacePublic(BaseModel):
    place: str | None = Field(description="a port, a city or a holy site")
    pilgrims: int


class CasesPublic(BaseModel):
    in_hospital: int
    missing: int
    deceased: int


class OfferPlacesPublic(BaseModel):
    kind: str
    offers: int = Field(description="offers of the season published and not withdrawn")
    places: int
    free: int = Field(description="places not contracted")


class ContractPlacesPublic(BaseModel):
    contracts: int = Field(description="contracts of the season signed")
    places: int
    used: int = Field(description="places taken by journeys")
    free: int


class BedsPublic(BaseModel):
    buildings: int = Field(description="licensed buildings, suspended or not")
    beds: int
    occupied: int
    free: int


class RoadPublic(BaseModel):
    on_the_road: int = Field(description="trips departed and not arrived")
    overdue: int = Field(description="of those, trips past their expected arrival")


class SummaryPublic(BaseModel):
    season: int | None = Field(
        description="the one season every figure of journeys, offers and contracts counts: the one asked for, else "
        "the current one (null: no season in the views yet)"
    )
    seasons: list[int] = Field(description="the seasons the views hold, newest first: those there is a page of")
    day: date = Field(description="the day 'today' means, in Makkah")
    funnel: list[StagePublic] | None = Field(description="season_funnel; null when the role may not read it")
    stages: list[StageNowPublic] | None = Field(description="journey_status: the season's journeys by stage now")
    arrivals: list[ArrivalsPublic] | None = Field(description="port_arrivals, per day, port and mode")
    in_kingdom: list[PlacePublic] | None = Field(description="journey_status: pilgrims in the Kingdom now, by place")
    trips_on_the_road: int | None = Field(description="trip_manifest: trips departed and not yet arrived")
    cases: CasesPublic | None = Field(description="journey_status: pilgrims in hospital, missing, deceased")
    overstays: int | None = Field(description="overstay_watch: in the Kingdom with their visa run out")
    offers: list[OfferPlacesPublic] | None = Field(description="service_offers: the market's places, by kind")
    contracts: ContractPlacesPublic | None = Field(description="contracts: places contracted, used and free")
    beds: BedsPublic | None = Field(description="building_occupancy: beds occupied and free")
    road: RoadPublic | None = Field(description="trips_on_road: trips on the road, and those overdue")
