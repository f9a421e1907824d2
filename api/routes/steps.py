"""One endpoint per journey step and trip action, generated from the command catalogue: a new step gets its
endpoint, its body schema and its permissions without anything written here."""

import functools
import inspect
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path
from fastapi.openapi.models import Example
from fastapi.responses import Response

from hajj_ledger.api.deps import Caller, IdempotencyKey, LedgerDep, allow, caller
from hajj_ledger.api.examples import EXAMPLES, PATH_EXAMPLES
from hajj_ledger.api.recording import record
from hajj_ledger.api.schemas import OutcomePublic, create_model_for, slug
from hajj_ledger.domain.catalogue import EVENT_SCOPES, LATE_REPORTERS, LATE_TOLERANCE, STEPS, TIMED
from hajj_ledger.domain.command_base import (
    BuildingCommand,
    CommandBase,
    ContractCommand,
    JourneyCommand,
    OfferCommand,
    SeasonCommand,
    TripCommand,
)
from hajj_ledger.domain.commands import COMMANDS
from hajj_ledger.domain.vocabulary import Role

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

    # An explicit example: the one Swagger UI would make up carries a random late_correction, refused (403).
    example: dict[str, Example] = {
        "story": {"summary": "the story of season 1446 (api/examples.py)", "value": EXAMPLES[event]}
    }
    parameters = [
        inspect.Parameter("agency", inspect.Parameter.KEYWORD_ONLY, annotation=Caller),
        inspect.Parameter("ledger", inspect.Parameter.KEYWORD_ONLY, annotation=LedgerDep),
        inspect.Parameter(
            "body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[body_model, Body(openapi_examples=example)]
        ),
        inspect.Parameter("idempotency_key", inspect.Parameter.KEYWORD_ONLY, annotation=IdempotencyKey, default=None),
    ]
    if target:
        kind = int if target == "season" else UUID  # a season is named by its number
        named = Path(openapi_examples={"story": {"summary": "of the same story", "value": PATH_EXAMPLES[target]}})
        parameters.append(inspect.Parameter(target, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, named]))
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = f"record_{slug(event).replace('-', '_')}"
    router.add_api_route(
        path, handler, methods=["POST"], status_code=201, response_model=OutcomePublic, responses=RESPONSES,
        summary=f"Record {event}", description=describe(command),
        openapi_extra=allow(STEPS[event].roles), tags=["recording"],
    )  # fmt: skip


def _declared_order(member: StrEnum) -> int:
    return list(type(member)).index(member)


def _listed(values: Iterable[StrEnum]) -> str:
    """Roles or stages in their declared order, as code."""
    return ", ".join(f"`{value}`" for value in sorted(values, key=_declared_order))


def describe(command: type[CommandBase]) -> str:
    """An endpoint's description, from the catalogue: who may record the step, what it changes, what it refuses."""
    event = command.model_fields["event"].default
    step = STEPS[event]
    path = next(p for base, (p, created) in COLLECTIONS.items() if issubclass(command, base) or created == event)
    kind = path.removeprefix("/v1/").removesuffix("s")  # "/v1/journeys": a journey
    scopes = EVENT_SCOPES[event] if step.from_ else {}  # a new one is nobody's yet
    who = ", ".join(
        f"`{role}`" + (f" (refused where {scopes[role][1]})" if role in scopes else "")
        for role in sorted(step.roles, key=list(Role).index)
    )
    lines = [(command.__doc__ or "").strip(), f"**Who may record it:** {who}."]
    if step.from_:
        lead = f"; it leaves the {kind} at `{step.to}`" if step.to is not None else "; the stage stays as it was"
        lines.append(f"**What it changes:** from a {kind} at {_listed(step.from_)}{lead}.")
    else:
        lines.append(f"**What it changes:** records a new {kind}" + (f", at `{step.to}`." if step.to else "."))
    needs = [c.text for c in step.conditions] + ([step.note] if step.note else [])
    if needs:
        lines.append(f"**Also needs:** {'; '.join(needs)}.")
    refusals = [
        "403 for any other role" + (" or another agency's " + kind if scopes else ""),
        f"409 naming the {kind}'s current stage and the steps allowed from it, when the stage or a need above does not "
        "allow it",
        "422 naming each field that is wrong",
    ]
    if step.from_ and kind in {name.lower() for name in TIMED}:
        hours = f"{LATE_TOLERANCE.total_seconds() / 3600:g} hours"
        late = ", ".join(f"`{role}`" for role in sorted(LATE_REPORTERS))
        refusals.append(
            f"409 when it happened more than {hours} before the {kind}'s latest step, unless sent with "
            f"`late_correction` (its reason), which only {late} may give (others: 403)"
        )
    lines.append(f"**Refused, changing nothing:** {'; '.join(refusals)}.")
    return "\n\n".join(line for line in lines if line)


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
