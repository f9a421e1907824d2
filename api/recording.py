"""Recording through the API: one command, or many; retries made safe by the command id or an Idempotency-Key."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from fastapi.responses import JSONResponse

from hajj_ledger.api import metrics
from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.problems import from_ledger
from hajj_ledger.api.schemas import BatchPublic, BatchResultPublic, OutcomePublic
from hajj_ledger.commands import Command, parse_command
from hajj_ledger.errors import LedgerError
from hajj_ledger.ledger import JourneyLedger, Outcome
from hajj_ledger.vocabulary import Actor

IDEMPOTENCY = uuid5(NAMESPACE_URL, "https://hajj-ledger.org/idempotency-key")


def command_id(agency: Agency, key: str | None, index: int | None = None) -> UUID:
    """The command id a request stands for: from the caller's Idempotency-Key (per agency), else a new one."""
    if key is None:
        return uuid4()
    return uuid5(IDEMPOTENCY, f"{agency.agency_id}\x00{key}\x00{'' if index is None else index}")


def record(ledger: JourneyLedger, agency: Agency, data: dict[str, Any], key: str | None) -> JSONResponse:
    if data.get("command_id") is None:
        data["command_id"] = command_id(agency, key)
    outcome = ledger.record(parse_command(data), agency.actor)
    return JSONResponse(_public(outcome).model_dump(mode="json"), status_code=200 if outcome.repeated else 201)


def record_batch(ledger: JourneyLedger, agency: Agency, items: list[dict[str, Any]], key: str | None) -> BatchPublic:
    """Every command gets its own outcome; a bad one (malformed, refused) never fails its neighbours."""
    results: list[BatchResultPublic | None] = [None] * len(items)
    parsed: list[tuple[int, Command]] = []
    for index, item in enumerate(items):
        data = dict(item)
        if data.get("command_id") is None:
            data["command_id"] = command_id(agency, key, index)
        try:
            parsed.append((index, parse_command(data)))
        except LedgerError as error:
            results[index] = _refused(index, error)
    actor = Actor(agency.agency_id, agency.role)
    if parsed:
        for (index, _), result in zip(parsed, ledger.record_batch([(c, actor) for _, c in parsed]), strict=True):
            if isinstance(result, Outcome):
                results[index] = BatchResultPublic(
                    index=index, status=200 if result.repeated else 201, outcome=_public(result)
                )
            else:
                results[index] = _refused(index, result)
    return BatchPublic(results=[r for r in results if r is not None])


def _refused(index: int, error: LedgerError) -> BatchResultPublic:
    problem = from_ledger(error)
    return BatchResultPublic(index=index, status=problem.status, problem=problem.body())


def _public(outcome: Outcome) -> OutcomePublic:
    if not outcome.repeated:
        metrics.EVENTS_APPENDED.inc(len(outcome.events))
    return OutcomePublic(
        command_id=outcome.command_id, event=outcome.event, aggregate_id=outcome.aggregate_id,
        position=outcome.position, events=list(outcome.events), repeated=outcome.repeated,
    )  # fmt: skip
