"""Recording through the API: one command, or many; retries made safe by the command id or an Idempotency-Key.

Answers are built as plain data and encoded once with orjson: the routes declare their response models for the
OpenAPI document, and a thousand outcomes need not be validated again on their way out."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import anyio
import orjson
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hajj_ledger.api import metrics
from hajj_ledger.api.agencies import Agency
from hajj_ledger.api.problems import ProblemError, for_store_error, from_ledger, outcome_unknown, unavailable
from hajj_ledger.domain.access import check_role
from hajj_ledger.domain.catalogue import EVENT_SCOPES, STEPS
from hajj_ledger.domain.commands import Command
from hajj_ledger.domain.errors import IdempotencyKeyReusedError, LedgerError, PermissionDeniedError
from hajj_ledger.domain.events import RecordedEvent
from hajj_ledger.domain.parsing import parse_command
from hajj_ledger.domain.vocabulary import Actor
from hajj_ledger.ledger import JourneyLedger, Outcome, Result
from hajj_ledger.store.connections import StoreUnavailableError

IDEMPOTENCY = uuid5(NAMESPACE_URL, "https://hajj-ledger.org/idempotency-key")
# The longest a single command's request waits for its outcome: the store's patience (writing.WRITE_PATIENCE, 2.5 s)
# and the last attempt's wait for a connection fit in it, and it ends well within the server's shutdown grace (5 s).
WRITE_ANSWER_SECONDS = 4.0


def command_id(agency: Agency, key: str | None, index: int | None = None) -> UUID:
    """The command id a request stands for: from the caller's Idempotency-Key (per agency), else a new one."""
    if key is None:
        return uuid4()
    return uuid5(IDEMPOTENCY, f"{agency.agency_id}\x00{key}\x00{'' if index is None else index}")


def new_command_ids(count: int) -> list[UUID]:
    """`count` random (version 4) command ids from one read of the system's random source: a read per id was 5% of
    a batch request's CPU under load."""
    random = os.urandom(16 * count)
    return [UUID(bytes=random[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


async def record(ledger: JourneyLedger, agency: Agency, data: dict[str, Any], key: str | None) -> Response:
    """One command, awaited on the event loop while the ledger's writer records it with its neighbours' (group
    commit): no worker thread waits for it."""
    if data.get("command_id") is None:
        data["command_id"] = command_id(agency, key)
    return await record_parsed(ledger, agency, parse_command(data))


async def record_parsed(ledger: JourneyLedger, agency: Agency, command: Command) -> Response:
    """The command's outcome within WRITE_ANSWER_SECONDS. Past that, or when the store is away: 503, saying whether
    it was recorded (no: it had not left the queue, and never will) or may have been (the same command id settles
    it). A caller cancelled meanwhile takes its command out of the queue if it is still there; the writer never
    hears of it."""
    future = ledger.submit(command, agency.actor)
    try:
        outcome = await asyncio.wait_for(asyncio.wrap_future(future), WRITE_ANSWER_SECONDS)
    except TimeoutError:
        if future.cancelled():  # taken out of the queue before its batch began: it is never recorded
            raise unavailable("the database did not answer in time; nothing was recorded: retry shortly") from None
        raise outcome_unknown([str(command.command_id)]) from None
    except StoreUnavailableError as error:
        raise cast(ProblemError, for_store_error(error, [str(command.command_id)])) from error
    if _about_a_receipt(outcome):
        outcome = await run_in_threadpool(only_its_recorder, ledger, agency, command, outcome)
    if isinstance(outcome, LedgerError):
        raise outcome
    metrics.EVENTS_APPENDED.inc(0 if outcome.repeated else len(outcome.events))
    return _json(_public(outcome), 200 if outcome.repeated else 201)


class BatchStart:
    """Which comes first: the batch handed to the ledger in its thread, or its caller giving up on it. Decided under a
    lock, so that a caller that gave up first knows nothing was recorded, and one that gave up after knows the
    command ids whose outcome is unknown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = False
        self.abandoned = False
        self.command_ids: list[str] = []

    def start(self, command_ids: list[str]) -> bool:
        with self._lock:
            self.started = not self.abandoned
            self.command_ids = command_ids
            return self.started

    def abandon(self) -> bool:
        """Gives the batch up; whether it had started (its outcome then unknown)."""
        with self._lock:
            self.abandoned = not self.started
            return self.started


async def record_batch_in_time(
    ledger: JourneyLedger, agency: Agency, items: list[dict[str, Any]], key: str | None
) -> Response:
    """The batch's outcomes within WRITE_ANSWER_SECONDS, as a single command's: a batch waiting on a database away
    (its patience, then a connection, behind other writers) could run past the server's shutdown grace, which cut
    it off with a bare 500. Past the bound: 503, nothing recorded if it never reached the ledger, else the outcome
    unknown with its command ids (its thread is left to end by itself: a batch under way cannot be called back)."""
    start = BatchStart()
    try:
        with anyio.fail_after(WRITE_ANSWER_SECONDS):
            return await anyio.to_thread.run_sync(
                record_batch, ledger, agency, items, key, start, abandon_on_cancel=True
            )
    except TimeoutError:
        if start.abandon():
            raise outcome_unknown(start.command_ids) from None
        raise unavailable("the database did not answer in time; nothing was recorded: retry shortly") from None


def record_batch(
    ledger: JourneyLedger,
    agency: Agency,
    items: list[dict[str, Any]],
    key: str | None,
    start: BatchStart | None = None,
) -> Response:
    """Every command gets its own outcome; a bad one (malformed, refused) never fails its neighbours. Given `start`,
    the ledger is asked only if the caller has not given up meanwhile."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    parsed: list[tuple[int, Command]] = []
    fresh = iter(new_command_ids(len(items)) if key is None else ())
    for index, item in enumerate(items):
        data = dict(item)
        if data.get("command_id") is None:
            data["command_id"] = next(fresh) if key is None else command_id(agency, key, index)
        try:
            command = parse_command(data)
            check_role(agency.role, STEPS[command.event].roles, command.event)  # first, as its own endpoint does
            parsed.append((index, command))
        except LedgerError as error:
            results[index] = _refused(index, error)
    actor = Actor(agency.agency_id, agency.role)
    appended = 0
    if parsed and start is not None and not start.start([str(c.command_id) for _, c in parsed]):
        return Response(status_code=503)  # nobody hears it: the caller has been answered that nothing was recorded
    if parsed:
        try:
            outcomes: list[Result] = ledger.record_batch([(c, actor) for _, c in parsed])
        except StoreUnavailableError as error:  # the whole batch: recorded or not, all together
            raise cast(ProblemError, for_store_error(error, [str(c.command_id) for _, c in parsed])) from error
        for (index, command), first in zip(parsed, outcomes, strict=True):
            result = only_its_recorder(ledger, agency, command, first) if _about_a_receipt(first) else first
            if isinstance(result, Outcome):
                appended += 0 if result.repeated else len(result.events)
                status = 200 if result.repeated else 201
                results[index] = {"index": index, "status": status, "outcome": _public(result), "problem": None}
            else:
                results[index] = _refused(index, result)
    metrics.EVENTS_APPENDED.inc(appended)  # once a batch
    return _json({"results": results}, 200)


def _about_a_receipt(result: Result) -> bool:
    return (isinstance(result, Outcome) and result.repeated) or isinstance(result, IdempotencyKeyReusedError)


def only_its_recorder(ledger: JourneyLedger, agency: Agency, command: Command, result: Result) -> Result:
    """A receipt answers only the agency that recorded it: to any other, the command is refused as it would be
    without a receipt (role, then scope), and otherwise as a command id already used. Asked only of a repeat (or a
    command id reused), so a new command costs nothing more; the ledger itself checks only what it records."""
    if isinstance(result, Outcome):
        position = result.position
    else:
        receipt = ledger.store.select_receipts([command.command_id]).get(command.command_id)
        if receipt is None:
            return result
        position = max(ledger.store.select_positions(receipt.events))
    # The receipt's events carry the stamp of the command that made them: who recorded it.
    stored = ledger.recorder.select_notifications(start=position, limit=1)
    recorder = cast(RecordedEvent, ledger.mapper.to_domain_event(stored[0])).stamp.agency_id
    if recorder == agency.agency_id:
        return result
    try:
        check_role(agency.role, STEPS[command.event].roles, command.event)
    except PermissionDeniedError as refusal:
        return refusal
    scope = EVENT_SCOPES[command.event].get(agency.role)  # the scope of the command's kind of aggregate
    if scope is not None:
        return PermissionDeniedError(agency.role, command.event, scope[1])
    return IdempotencyKeyReusedError(f"command_id {command.command_id} was used by another agency")


def _refused(index: int, error: LedgerError) -> dict[str, Any]:
    problem = from_ledger(error)
    return {"index": index, "status": problem.status, "outcome": None, "problem": problem.body()}


def _public(outcome: Outcome) -> dict[str, Any]:
    """As `OutcomePublic` gives it."""
    return {
        "command_id": outcome.command_id,
        "event": outcome.event,
        "aggregate_id": outcome.aggregate_id,
        "position": outcome.position,
        "events": outcome.events,
        "repeated": outcome.repeated,
    }


def _json(content: Any, status: int) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")
