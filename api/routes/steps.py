"""One endpoint per journey step and trip action, generated from the command catalogue: a new step gets its
endpoint, its body schema and its permissions without anything written here."""

import functools
import inspect
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from hajj_ledger.api.deps import Caller, IdempotencyKey, LedgerDep, allow, caller
from hajj_ledger.api.recording import record
from hajj_ledger.api.schemas import OutcomePublic, create_model_for, slug
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.commands import (
    COMMANDS,
    BuildingCommand,
    CommandBase,
    ContractCommand,
    JourneyCommand,
    OfferCommand,
    SeasonCommand,
    TripCommand,
)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": OutcomePublic, "description": "recorded before: the first outcome, nothing stored"},
}


def add_step(router: APIRouter, command: type[CommandBase], path: str) -> None:
    event = command.model_fields["event"].default
    body_model = create_model_for(command)
    target = command.target

    async def handler(agency: Any, ledger: Any, body: Any, idempotency_key: Any, **path: Any) -> Response:
        data = {**body.model_dump(exclude_unset=False), "event": event, **path}
        return await record(ledger, agency, data, idempotency_key)

    parameters = [
        inspect.Parameter("agency", inspect.Parameter.KEYWORD_ONLY, annotation=Caller),
        inspect.Parameter("ledger", inspect.Parameter.KEYWORD_ONLY, annotation=LedgerDep),
        inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[body_model, Body()]),
        inspect.Parameter("idempotency_key", inspect.Parameter.KEYWORD_ONLY, annotation=IdempotencyKey, default=None),
    ]
    if target:
        kind = int if target == "season" else UUID  # a season is named by its number
        parameters.append(inspect.Parameter(target, inspect.Parameter.KEYWORD_ONLY, annotation=kind))
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = f"record_{slug(event).replace('-', '_')}"
    router.add_api_route(
        path, handler, methods=["POST"], status_code=201, response_model=OutcomePublic, responses=RESPONSES,
        summary=f"Record {event}", description=(command.__doc__ or "").strip() or None,
        openapi_extra=allow(STEPS[event].roles), tags=["recording"],
    )  # fmt: skip


# Each kind of target: its collection's path, the event creating one (posted to the collection itself), and the
# other events' path segments where they are not the event's own slug.
COLLECTIONS: dict[type[CommandBase], tuple[str, str]] = {
    JourneyCommand: ("/v1/journeys", "Registered"),  # with its identity, in one request
    TripCommand: ("/v1/trips", "TripScheduled"),
    OfferCommand: ("/v1/offers", "OfferPublished"),
    ContractCommand: ("/v1/contracts", "ContractProposed"),
    BuildingCommand: ("/v1/buildings", "BuildingLicensed"),
    SeasonCommand: ("/v1/seasons", "SeasonOpened"),
}
VERBS = {
    "SeasonClosing": "begin-closing",
    "SeasonClosed": "close",
    "SeasonArchived": "archive",
    "SeasonRestored": "restore",
    "SeasonIdentitiesErased": "erase-identities",
    "OfferAmended": "amend",
    "OfferWithdrawn": "withdraw",
    "ContractSigned": "sign",
    "ContractAmended": "amend",
    "ContractTerminated": "terminate",
}


def endpoints() -> Iterator[tuple[str, type[CommandBase]]]:
    """Each recording endpoint's path and the command it takes."""
    created = {event: path for path, event in COLLECTIONS.values()}
    for command in COMMANDS.values():
        event = command.model_fields["event"].default
        kind = next((base for base in COLLECTIONS if issubclass(command, base)), None)
        if kind is not None:
            yield f"{COLLECTIONS[kind][0]}/{{{command.target}}}/{VERBS.get(event) or slug(event)}", command
        elif event in created:
            yield created[event], command
        else:  # pragma: no cover
            raise AssertionError(f"no endpoint for {event}")


@functools.cache  # built once a process: each app takes its routes from it
def router() -> APIRouter:
    steps = APIRouter(dependencies=[Depends(caller)])
    for path, command in endpoints():
        add_step(steps, command, path)
    return steps
